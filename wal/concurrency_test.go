package wal

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"runtime"
	"sync"
	"testing"
	"unsafe"

	twal "github.com/tidwall/wal"
)

// tidwallField returns a pointer to an unexported field of tidwall's Log,
// for fault injection. It fails the test if tidwall's struct has changed.
func tidwallField[T any](t *testing.T, tw *twal.Log, name string) *T {
	t.Helper()
	v := reflect.ValueOf(tw).Elem().FieldByName(name)
	if !v.IsValid() || v.Type() != reflect.TypeFor[T]() {
		t.Fatalf("tidwall Log has no field %s of type %v", name, reflect.TypeFor[T]())
	}
	return (*T)(unsafe.Pointer(v.UnsafeAddr()))
}

// TestReadsDoNotTakeTidwallsLock holds tidwall's mutex, as WriteBatch does
// through its write and fsync, with an Append stuck behind it, and checks
// that every read method still completes.
func TestReadsDoNotTakeTidwallsLock(t *testing.T) {
	l := openLog(t, t.TempDir(), smallOpts(t))
	r := rand.New(rand.NewPCG(1, 1))
	var m model
	for range 30 {
		es := m.gen(r, 2, 300, 0)
		must(t, l.Append(es...))
		m.appended(es)
	}
	mu := tidwallField[sync.RWMutex](t, l.tw, "mu")
	mu.Lock()
	appended := make(chan error, 1)
	es := m.gen(r, 1, 10, 0)
	go func() { appended <- l.Append(es...) }()
	// Wait until the Append holds the writer lock: it is then in or about
	// to enter tidwall's WriteBatch, where it blocks on mu.
	for l.wmu.TryLock() {
		l.wmu.Unlock()
		runtime.Gosched()
	}

	sameEntries(t, readAll(t, l, 0), m.entries)
	if _, _, err := l.Read(nil, 5, 100, 1<<62); err != nil {
		t.Fatal(err)
	}
	if _, err := l.OffsetForTimestamp(1_700_000_050_000); err != nil {
		t.Fatal(err)
	}
	if l.NextOffset() != m.next() || l.StartOffset() != 0 || l.Size() == 0 || len(l.Segments()) == 0 {
		t.Fatal("accessors")
	}
	must(t, l.Verify())
	select {
	case err := <-appended:
		t.Fatalf("Append finished while tidwall's lock was held: %v", err)
	default:
	}

	mu.Unlock()
	must(t, <-appended)
	m.appended(es)
	checkAgainst(t, l, &m)
}

// TestWriteFailureBreaksLog makes tidwall's write fail (its tail file
// handle is swapped for a read-only one) and checks that the Log refuses
// everything afterwards, and that reopening recovers what was acknowledged.
func TestWriteFailureBreaksLog(t *testing.T) {
	dir := t.TempDir()
	opts := smallOpts(t)
	l := openLog(t, dir, opts)
	r := rand.New(rand.NewPCG(2, 2))
	var m model
	for range 10 {
		es := m.gen(r, 2, 100, 0)
		must(t, l.Append(es...))
		m.appended(es)
	}
	sfile := tidwallField[*os.File](t, l.tw, "sfile")
	ro, err := os.Open((*sfile).Name())
	must(t, err)
	good := *sfile
	*sfile = ro
	defer good.Close()

	err = l.Append(m.gen(r, 3, 100, 0)...)
	if err == nil || !errors.Is(err, ErrBroken) {
		t.Fatalf("Append with a failing write: %v", err)
	}
	if l.NextOffset() != m.next() {
		t.Fatalf("failed append published: next %d, want %d", l.NextOffset(), m.next())
	}
	calls := map[string]error{
		"Append": l.Append(Entry{BaseOffset: m.next(), LastOffset: m.next()}),
		"ReadEntries": func() error {
			_, err := l.ReadEntries(0, 1, 1<<62, func(Entry) error { return nil })
			return err
		}(),
		"OffsetForTimestamp": func() error { _, err := l.OffsetForTimestamp(0); return err }(),
		"TruncateTo":         func() error { _, err := l.TruncateTo(1); return err }(),
		"Reset":              l.Reset(0),
		"DeleteSegmentsBefore": func() error {
			_, err := l.DeleteSegmentsBefore(1 << 40)
			return err
		}(),
		"Verify": l.Verify(),
	}
	for name, err := range calls {
		if !errors.Is(err, ErrBroken) {
			t.Errorf("%s on a broken log: %v", name, err)
		}
	}
	_ = l.Close() // tidwall may report the failed state; the handles are closed either way
	l = openLog(t, dir, opts)
	checkAgainst(t, l, &m)
	es := m.gen(r, 3, 100, 0)
	must(t, l.Append(es...))
	m.appended(es)
	checkAgainst(t, l, &m)
}

// stamped payloads carry their own base offset and generation, so a
// concurrent reader can check every entry it gets without knowing what the
// writer did.
func stamped(base int64, gen, size int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(base))
	b = binary.LittleEndian.AppendUint64(b, uint64(gen))
	return append(b, payload(base, gen, size)...)
}

func checkStamped(e Entry) error {
	if len(e.Data) < 16 {
		return fmt.Errorf("entry %d: %d bytes", e.BaseOffset, len(e.Data))
	}
	base := int64(binary.LittleEndian.Uint64(e.Data))
	gen := int(binary.LittleEndian.Uint64(e.Data[8:]))
	if base != e.BaseOffset || !bytes.Equal(e.Data[16:], payload(base, gen, len(e.Data)-16)) {
		return fmt.Errorf("entry [%d,%d]: payload of %d (gen %d) does not match", e.BaseOffset, e.LastOffset, base, gen)
	}
	return nil
}

// TestConcurrentReadsDuringWrites runs readers in parallel with appends,
// segment rolls, truncations and retention (run it with -race). Readers
// check that every entry they get is intact and that entries are
// contiguous; the only error they may see is a read below a start offset
// that retention just moved.
func TestConcurrentReadsDuringWrites(t *testing.T) {
	opts := smallOpts(t)
	opts.SegmentBytes = 8192
	l := openLog(t, t.TempDir(), opts)
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(i), 3))
			reads := 0
			for {
				select {
				case <-done:
					if reads == 0 {
						errs <- errors.New("reader did no reads")
					}
					return
				default:
				}
				start, end := l.StartOffset(), l.NextOffset()
				if end == start {
					runtime.Gosched()
					continue
				}
				off := start + r.Int64N(end-start)
				expect := int64(-1)
				_, err := l.ReadEntries(off, r.IntN(20000), 1<<62, func(e Entry) error {
					if expect >= 0 && e.BaseOffset != expect || expect < 0 && (e.BaseOffset > off || e.LastOffset < off) {
						return fmt.Errorf("read from %d: got [%d,%d], expected start %d", off, e.BaseOffset, e.LastOffset, expect)
					}
					expect = e.LastOffset + 1
					return checkStamped(e)
				})
				if err != nil && !errors.Is(err, ErrOffsetOutOfRange) {
					errs <- err
					return
				}
				if _, err := l.OffsetForTimestamp(r.Int64N(1000)); err != nil {
					errs <- err
					return
				}
				_ = l.Segments()
				_ = l.Size()
				reads++
			}
		})
	}

	r := rand.New(rand.NewPCG(9, 9))
	next := int64(0)
	for gen := range 600 {
		switch op := r.IntN(40); {
		case op == 0 && next > 0:
			off := max(0, next-r.Int64N(50))
			n, err := l.TruncateTo(off)
			if err != nil {
				t.Fatal(err)
			}
			next = n
		case op == 1:
			segs := l.Segments()
			if _, err := l.DeleteSegmentsBefore(segs[len(segs)/2].BaseOffset); err != nil {
				t.Fatal(err)
			}
		default:
			var es []Entry
			for range 1 + r.IntN(6) {
				cnt := 1 + r.Int64N(4)
				es = append(es, Entry{BaseOffset: next, LastOffset: next + cnt - 1, MaxTimestamp: r.Int64N(1000), Data: stamped(next, gen, r.IntN(400))})
				next += cnt
			}
			if err := l.Append(es...); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(done)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if err := l.Verify(); err != nil {
		t.Fatal(err)
	}
}

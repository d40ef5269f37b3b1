package segment

import (
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestReadsDuringWrites: readers running alongside writes, flushes and
// retention see only whole, correct entries (each payload is a function of
// its offset) and never an error other than reading below a start that
// retention moved.
func TestReadsDuringWrites(t *testing.T) {
	l := openLog(t, t.TempDir(), smallOpts(t))
	var stop atomic.Bool
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	for r := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 0))
			for !stop.Load() {
				start, end := l.StartOffset(), l.NextOffset()
				at := start + rng.Int64N(end-start+1)
				_, err := l.ReadEntries(at, 4096, math.MaxInt64, func(e Entry) error {
					if !bytes.Equal(e.Data, payload(e.BaseOffset, 0, len(e.Data))) || e.LastOffset != e.BaseOffset {
						return errors.New("torn or wrong entry")
					}
					return nil
				})
				if err != nil && !errors.Is(err, ErrOffsetOutOfRange) {
					errc <- err
					return
				}
			}
		})
	}
	deadline := time.Now().Add(2 * time.Second)
	var next int64
	for i := 0; time.Now().Before(deadline) && i < 20000; i++ {
		e := Entry{BaseOffset: next, LastOffset: next, Data: payload(next, 0, 50+int(next%200))}
		must(t, l.Write(e))
		next++
		switch i % 97 {
		case 0:
			_, err := l.Flush()
			must(t, err)
		case 50:
			_, err := l.DeleteSegmentsBefore(next - 200)
			must(t, err)
		}
	}
	stop.Store(true)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Fatal(err)
	}
}

// TestFlushDoesNotBlockWrites: a Flush waiting on the disk does not hold
// the writer's lock (the ack path never waits for a segment fsync).
func TestFlushDoesNotBlockWrites(t *testing.T) {
	l := openLog(t, t.TempDir(), smallOpts(t))
	must(t, l.Write(Entry{BaseOffset: 0, LastOffset: 0, Data: []byte("x")}))
	l.fmu.Lock() // a Flush in its fsyncs holds only fmu
	done := make(chan error, 1)
	go func() { done <- l.Write(Entry{BaseOffset: 1, LastOffset: 1, Data: []byte("y")}) }()
	select {
	case err := <-done:
		must(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("Write waited for a Flush in progress")
	}
	l.fmu.Unlock()
}

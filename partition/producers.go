package partition

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/skeinlog/skein/proto/batch"
	"github.com/skeinlog/skein/wal"
)

// ---- the pure state ---------------------------------------------------------

// maxProducerBatches is how many of a producer's latest batches a partition
// remembers for deduplication: the client's limit of requests in flight per
// partition. A retry is always of one of the last 5 batches sent, and so of
// one of the last 5 appended.
const maxProducerBatches = 5

// batchMeta is one remembered batch of a producer.
type batchMeta struct {
	FirstSeq, LastSeq      int32
	BaseOffset, LastOffset int64
}

// producerEntry is what a partition knows of one producer id: its epoch and
// its latest batches in that epoch, oldest first. A value type: updates
// copy it (see apply), so a group commit can stage changes and drop them if
// the write fails.
type producerEntry struct {
	epoch    int16
	n        uint8 // batches[:n] are valid
	batches  [maxProducerBatches]batchMeta
	lastSeen int64 // unix ms of the last append (wall clock of the replica)
}

func (e *producerEntry) last() batchMeta { return e.batches[e.n-1] }

// producerBatch is what the checks need of a batch.
type producerBatch struct {
	ID       int64
	Epoch    int16
	FirstSeq int32
	LastSeq  int32
}

func producerOf(v batch.View) producerBatch {
	return producerBatch{ID: v.ProducerID(), Epoch: v.ProducerEpoch(), FirstSeq: v.BaseSequence(), LastSeq: v.LastSequence()}
}

// nextSequence is the sequence after seq; sequences wrap from MaxInt32 to 0.
func nextSequence(seq int32) int32 {
	if seq == math.MaxInt32 {
		return 0
	}
	return seq + 1
}

// checkSequence decides whether batch b may be appended given what the
// partition knows of its producer (e, present when known). Pure.
//   - a batch equal (same epoch, same first and last sequence) to one of the
//     remembered batches is a duplicate: dup is that batch, isDup true;
//   - an older epoch than known: *FencedError;
//   - a newer epoch, or an unknown producer id: it must start at sequence 0;
//   - the same epoch: it must start right after the latest batch.
//
// Anything else is a *SequenceError. Nothing is changed: apply records an
// accepted batch.
func checkSequence(e producerEntry, known bool, b producerBatch) (dup batchMeta, isDup bool, err error) {
	if !known {
		if b.FirstSeq != 0 {
			return batchMeta{}, false, &SequenceError{ProducerID: b.ID, Epoch: b.Epoch, Got: b.FirstSeq, Expected: 0, Unknown: true}
		}
		return batchMeta{}, false, nil
	}
	switch {
	case b.Epoch < e.epoch:
		return batchMeta{}, false, &FencedError{ProducerID: b.ID, Epoch: b.Epoch, Current: e.epoch}
	case b.Epoch > e.epoch:
		if b.FirstSeq != 0 {
			return batchMeta{}, false, &SequenceError{ProducerID: b.ID, Epoch: b.Epoch, Got: b.FirstSeq, Expected: 0, NewEpoch: true}
		}
		return batchMeta{}, false, nil
	}
	for _, m := range e.batches[:e.n] {
		if m.FirstSeq == b.FirstSeq && m.LastSeq == b.LastSeq {
			return m, true, nil
		}
	}
	want := int32(0)
	if e.n > 0 {
		want = nextSequence(e.last().LastSeq)
	}
	if b.FirstSeq != want {
		return batchMeta{}, false, &SequenceError{ProducerID: b.ID, Epoch: b.Epoch, Got: b.FirstSeq, Expected: want}
	}
	return batchMeta{}, false, nil
}

// apply returns e (known or not) updated with batch b appended at
// [base, last] at time now. A new epoch starts a fresh entry. Pure.
func apply(e producerEntry, known bool, b producerBatch, base, last, now int64) producerEntry {
	if !known || b.Epoch != e.epoch {
		e = producerEntry{epoch: b.Epoch}
	}
	m := batchMeta{FirstSeq: b.FirstSeq, LastSeq: b.LastSeq, BaseOffset: base, LastOffset: last}
	if int(e.n) == maxProducerBatches {
		copy(e.batches[:], e.batches[1:])
		e.n--
	}
	e.batches[e.n] = m
	e.n++
	e.lastSeen = max(e.lastSeen, now)
	return e
}

// producerState is a partition's producer table. It is owned by the
// partition's loop (and by Open and Close around it): no lock.
type producerState struct {
	entries map[int64]producerEntry
}

func newProducerState() producerState {
	return producerState{entries: make(map[int64]producerEntry)}
}

// get returns a producer's entry, first from staged (the changes of the
// group being committed) when it is there.
func (s *producerState) get(staged map[int64]producerEntry, id int64) (producerEntry, bool) {
	if e, ok := staged[id]; ok {
		return e, true
	}
	e, ok := s.entries[id]
	return e, ok
}

// replay records a batch read from the log or replicated from the leader:
// the leader checked it, so it is recorded without checks, except that a
// batch of an older epoch than known changes nothing.
func (s *producerState) replay(v batch.View, now int64) {
	b := producerOf(v)
	if b.ID < 0 {
		return
	}
	e, ok := s.entries[b.ID]
	if ok && b.Epoch < e.epoch {
		return
	}
	s.entries[b.ID] = apply(e, ok, b, v.BaseOffset(), v.LastOffset(), now)
}

// expire forgets producers not seen since now-ttl and returns how many.
func (s *producerState) expire(now int64, ttl time.Duration) int {
	if ttl <= 0 {
		return 0
	}
	cut := now - ttl.Milliseconds()
	n := 0
	for id, e := range s.entries {
		if e.lastSeen < cut {
			delete(s.entries, id)
			n++
		}
	}
	return n
}

// ---- snapshots -----------------------------------------------------------------

// A producer snapshot is the producer table as of a log offset, written
// temp file + fsync + rename as producer-snapshot-%020d (the offset) in the
// partition directory. Little-endian:
//
//	magic "SKPS", version 1
//	offset   int64   the log end offset the table is the state of
//	count    uint32  producers, then per producer:
//	  id int64, epoch int16, lastSeen int64, n uint8,
//	  n × (firstSeq int32, lastSeq int32, baseOffset int64, lastOffset int64)
//	CRC-32C of everything before it, uint32
const (
	snapPrefix       = "producer-snapshot-"
	snapMagic        = "SKPS"
	snapVersion      = 1
	snapHeaderSize   = 4 + 1 + 8 + 4
	snapEntryFixed   = 8 + 2 + 8 + 1
	snapBatchSize    = 4 + 4 + 8 + 8
	keepProducerSnap = 3
)

func encodeProducerSnapshot(offset int64, s *producerState) []byte {
	ids := make([]int64, 0, len(s.entries))
	for id := range s.entries {
		ids = append(ids, id)
	}
	slices.Sort(ids) // deterministic files
	b := make([]byte, 0, snapHeaderSize+len(ids)*(snapEntryFixed+2*snapBatchSize)+4)
	le := binary.LittleEndian
	b = append(b, snapMagic...)
	b = append(b, snapVersion)
	b = le.AppendUint64(b, uint64(offset))
	b = le.AppendUint32(b, uint32(len(ids)))
	for _, id := range ids {
		e := s.entries[id]
		b = le.AppendUint64(b, uint64(id))
		b = le.AppendUint16(b, uint16(e.epoch))
		b = le.AppendUint64(b, uint64(e.lastSeen))
		b = append(b, e.n)
		for _, m := range e.batches[:e.n] {
			b = le.AppendUint32(b, uint32(m.FirstSeq))
			b = le.AppendUint32(b, uint32(m.LastSeq))
			b = le.AppendUint64(b, uint64(m.BaseOffset))
			b = le.AppendUint64(b, uint64(m.LastOffset))
		}
	}
	return le.AppendUint32(b, batch.CRC32C(b))
}

// decodeProducerSnapshot parses a snapshot; it never panics on any input.
func decodeProducerSnapshot(b []byte) (int64, producerState, error) {
	le := binary.LittleEndian
	bad := func(why string) (int64, producerState, error) {
		return 0, producerState{}, fmt.Errorf("producer snapshot: %s", why)
	}
	if len(b) < snapHeaderSize+4 || string(b[:4]) != snapMagic {
		return bad("not a snapshot")
	}
	if b[4] != snapVersion {
		return bad(fmt.Sprintf("version %d", b[4]))
	}
	body, sum := b[:len(b)-4], le.Uint32(b[len(b)-4:])
	if batch.CRC32C(body) != sum {
		return bad("checksum mismatch")
	}
	offset := int64(le.Uint64(b[5:]))
	count := le.Uint32(b[13:])
	if offset < 0 {
		return bad("negative offset")
	}
	rest := body[snapHeaderSize:]
	if uint64(count)*snapEntryFixed > uint64(len(rest)) {
		return bad("count larger than the file")
	}
	s := producerState{entries: make(map[int64]producerEntry, count)}
	for range count {
		if len(rest) < snapEntryFixed {
			return bad("truncated entry")
		}
		id := int64(le.Uint64(rest))
		e := producerEntry{epoch: int16(le.Uint16(rest[8:])), lastSeen: int64(le.Uint64(rest[10:])), n: rest[18]}
		rest = rest[snapEntryFixed:]
		if id < 0 || e.epoch < 0 || e.n < 1 || e.n > maxProducerBatches || len(rest) < int(e.n)*snapBatchSize {
			return bad(fmt.Sprintf("bad entry for producer %d", id))
		}
		if _, dup := s.entries[id]; dup {
			return bad(fmt.Sprintf("producer %d twice", id))
		}
		for i := range int(e.n) {
			m := batchMeta{
				FirstSeq:   int32(le.Uint32(rest)),
				LastSeq:    int32(le.Uint32(rest[4:])),
				BaseOffset: int64(le.Uint64(rest[8:])),
				LastOffset: int64(le.Uint64(rest[16:])),
			}
			rest = rest[snapBatchSize:]
			if m.FirstSeq < 0 || m.LastSeq < 0 || m.BaseOffset < 0 || m.LastOffset < m.BaseOffset || m.LastOffset >= offset {
				return bad(fmt.Sprintf("bad batch of producer %d", id))
			}
			e.batches[i] = m
		}
		s.entries[id] = e
	}
	if len(rest) != 0 {
		return bad(fmt.Sprintf("%d stray bytes", len(rest)))
	}
	return offset, s, nil
}

func snapshotName(offset int64) string { return fmt.Sprintf("%s%020d", snapPrefix, offset) }

// listProducerSnapshots returns the offsets of the snapshots in dir, oldest
// first. Temp files of an interrupted write are not snapshots.
func listProducerSnapshots(dir string) ([]int64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var offs []int64
	for _, e := range ents {
		name, ok := strings.CutPrefix(e.Name(), snapPrefix)
		if !ok || len(name) != 20 {
			continue
		}
		o, err := strconv.ParseInt(name, 10, 64)
		if err != nil || o < 0 {
			continue
		}
		offs = append(offs, o)
	}
	slices.Sort(offs)
	return offs, nil
}

// ---- the partition's use of it --------------------------------------------------

// saveProducers writes a snapshot of the table as of the LEO and deletes
// all but the newest few. Loop only (or Open/Close). A failure is logged,
// not fatal: recovery then replays more of the log from an older snapshot.
func (p *Partition) saveProducers(leo int64) {
	p.snapBytes = 0
	data := encodeProducerSnapshot(leo, &p.producers)
	if err := writeFileAtomic(p.cfg.Dir, snapshotName(leo), data); err != nil {
		p.log2.Warn("producer state snapshot failed; a restart will replay more of the log", "offset", leo, "err", err)
		return
	}
	offs, err := listProducerSnapshots(p.cfg.Dir)
	if err != nil {
		return
	}
	for len(offs) > keepProducerSnap {
		os.Remove(filepath.Join(p.cfg.Dir, snapshotName(offs[0])))
		offs = offs[1:]
	}
}

// loadProducers rebuilds the producer table as of end (the LEO, or the
// new end of a truncation): from the newest snapshot at or below end, then
// by replaying the batch headers of the log from the snapshot's offset (or
// from the log start if there is none) to end. Snapshots past end describe
// a log suffix that no longer exists and are deleted. Loop only (or Open).
func (p *Partition) loadProducers(end int64) error {
	began := time.Now()
	now := p.cfg.Now().UnixMilli()
	offs, err := listProducerSnapshots(p.cfg.Dir)
	if err != nil {
		return fmt.Errorf("producer snapshots: %w", err)
	}
	p.producers = newProducerState()
	from := int64(-1)
	for i := len(offs) - 1; i >= 0; i-- {
		path := filepath.Join(p.cfg.Dir, snapshotName(offs[i]))
		if offs[i] > end {
			os.Remove(path)
			continue
		}
		data, err := os.ReadFile(path)
		if err == nil {
			var off int64
			var st producerState
			if off, st, err = decodeProducerSnapshot(data); err == nil && off == offs[i] {
				p.producers, from = st, off
				break
			}
			if err == nil {
				err = fmt.Errorf("names offset %d, holds %d", offs[i], off)
			}
		}
		p.log2.Warn("producer state snapshot unreadable; using an older one", "file", path, "err", err)
		os.Remove(path)
	}
	p.mu.Lock()
	lg, start := p.log, p.logStart
	p.mu.Unlock()
	snapAt := from
	from = max(from, start)
	replayed := 0
	if from < end {
		_, err := lg.ReadEntries(from, math.MaxInt, end, func(e wal.Entry) error {
			v, _, err := batch.Next(e.Data)
			if err != nil || v == nil {
				return fmt.Errorf("batch at offset %d: %v", e.BaseOffset, err)
			}
			p.producers.replay(v, now)
			replayed++
			return nil
		})
		if err != nil {
			return fmt.Errorf("rebuild producer state: %w", err)
		}
	}
	p.producers.expire(now, p.cfg.ProducerExpiry)
	if replayed > 0 || snapAt < 0 {
		p.log2.Debug("producer state loaded", "snapshot_offset", snapAt, "replayed_batches", replayed,
			"producers", len(p.producers.entries), "took", time.Since(began).Round(time.Microsecond))
	}
	return nil
}

// afterAppend is the loop's bookkeeping after bytes were appended up to
// leo: a snapshot every ProducerSnapshotBytes, and expiry once a minute.
func (p *Partition) afterAppend(bytes int, leo int64) {
	p.snapBytes += int64(bytes)
	now := p.cfg.Now()
	if now.Sub(p.lastExpiry) >= time.Minute {
		p.lastExpiry = now
		p.producers.expire(now.UnixMilli(), p.cfg.ProducerExpiry)
	}
	if p.snapBytes >= p.cfg.ProducerSnapshotBytes {
		p.saveProducers(leo)
	}
}

// clearProducers forgets every producer and deletes the snapshots (a
// follower whose log was emptied).
func (p *Partition) clearProducers() {
	p.producers = newProducerState()
	offs, _ := listProducerSnapshots(p.cfg.Dir)
	for _, o := range offs {
		os.Remove(filepath.Join(p.cfg.Dir, snapshotName(o)))
	}
}

// ProducerState describes what the partition remembers of one producer id,
// for tests and tools.
type ProducerState struct {
	ID       int64
	Epoch    int16
	LastSeen time.Time
	// Batches are the remembered batches, oldest first.
	Batches []ProducerBatch
}

// ProducerBatch is one remembered batch.
type ProducerBatch struct {
	FirstSequence, LastSequence int32
	BaseOffset, LastOffset      int64
}

// Producers returns the producer table, sorted by id. It runs on the
// partition's loop, after everything queued before it.
func (p *Partition) Producers() ([]ProducerState, error) {
	var out []ProducerState
	err := p.do(func() error {
		for id, e := range p.producers.entries {
			ps := ProducerState{ID: id, Epoch: e.epoch, LastSeen: time.UnixMilli(e.lastSeen)}
			for _, m := range e.batches[:e.n] {
				ps.Batches = append(ps.Batches, ProducerBatch{FirstSequence: m.FirstSeq, LastSequence: m.LastSeq, BaseOffset: m.BaseOffset, LastOffset: m.LastOffset})
			}
			out = append(out, ps)
		}
		return nil
	})
	slices.SortFunc(out, func(a, b ProducerState) int { return cmp.Compare(a.ID, b.ID) })
	return out, err
}

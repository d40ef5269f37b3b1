package journal

import (
	"fmt"
	"maps"
	"math"
	"slices"

	"github.com/skeinlog/skein/segment"
)

// ReplayReport says what Replay did.
type ReplayReport struct {
	Records    int // records applied or found already in the segments
	Partitions int // partitions touched
	// Damaged names the partitions whose segments lost records that the
	// checkpoint said were durable, whose records did not follow their
	// log, or whose log could not be opened, with why. Their logs hold a
	// valid prefix; they must not lead and should re-fetch from peers: the
	// next checkpoint drops their records from the journal.
	Damaged map[string]string
	// Dropped names the partitions whose last record deletes them: the
	// caller removes their files if a crash left them.
	Dropped []string
	// Cut describes journal damage below the tail (a record failing its
	// checksum): the journal was cut there, and the records after it were
	// dropped. Lost names the partitions those records belonged to, as far
	// as they could be decoded; they are in Damaged too.
	Cut  string
	Lost []string
}

// Opener opens a partition's segment log for Replay, which closes it when
// done.
type Opener func(name string) (*segment.Log, error)

// Replay applies the records after the checkpoint to the partitions'
// segment logs: for each partition it first cuts the log back to the
// offset the checkpoint says is durable (dropping anything a crash may have
// torn past it), then applies the records in order (appends, truncations,
// resets, start moves), skipping the records of a partition before its
// last drop. Then it flushes and closes those logs and checkpoints. It runs
// once, after Open and before Attach. A clean shutdown leaves nothing to
// replay: then it opens no partition and reads nothing.
func (j *Journal) Replay(open Opener) (*ReplayReport, error) {
	rep := &ReplayReport{Damaged: map[string]string{}}
	j.twMu.Lock()
	first, err := j.tw.FirstIndex()
	j.twMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	cp, err := readCheckpoint(j.dir)
	if err != nil {
		return nil, err
	}
	from, last := max(cp.ReplayFrom, first), j.next-1
	if cp.ReplayFrom > j.next {
		return nil, fmt.Errorf("journal: %s: the checkpoint replays from record %d but the journal ends at %d: records are missing", j.dir, cp.ReplayFrom, last)
	}
	plans, good, err := j.scanNames(from, last, rep)
	if err != nil {
		return nil, err
	}
	r := &replayer{j: j, open: open, cp: cp, rep: rep, plans: plans, logs: map[string]*segment.Log{}}
	defer r.closeAll()
	seq := 0 // the records' order in the replay, which plans refer to
	var recs []record
	for i := from; i <= good; i++ {
		b, err := j.tw.Read(i)
		if err != nil {
			return nil, fmt.Errorf("journal: read entry %d: %w", i, err)
		}
		recs = recs[:0]
		if err := decodeEntry(b, func(rec record) { recs = append(recs, rec) }); err != nil {
			return nil, fmt.Errorf("journal: entry %d changed while replaying: %w", i, err)
		}
		for _, rec := range recs {
			at := seq
			seq++
			rep.Records++
			pl := plans[rec.name]
			if at < pl.from {
				continue
			}
			if rec.kind == KindAppend && at < pl.cutAt && rec.entry.LastOffset >= pl.minCut {
				continue // cut by the lowest truncation, further on
			}
			if err := r.apply(rec); err != nil {
				return nil, err
			}
		}
	}
	for _, name := range rep.Lost { // their records before the damage are applied
		if _, ok := rep.Damaged[name]; !ok {
			rep.Damaged[name] = "records after a damaged journal record were dropped"
		}
	}
	for name, pl := range plans {
		if _, again := r.logs[name]; !again && pl.dropped {
			rep.Dropped = append(rep.Dropped, name)
			delete(j.durable, name)
		}
	}
	slices.Sort(rep.Dropped)
	rep.Partitions = len(r.logs)
	if err := r.closeAll(); err != nil {
		return nil, err
	}
	j.mu.Lock()
	j.replayed = true
	j.mu.Unlock()
	if rep.Records > 0 || len(rep.Dropped) > 0 {
		j.log.Warn("journal: replayed records after the last checkpoint", "records", rep.Records,
			"partitions", rep.Partitions, "damaged", len(rep.Damaged), "dropped", len(rep.Dropped))
		if err := j.Checkpoint(); err != nil {
			return nil, err
		}
	}
	if j.opts.CheckpointInterval > 0 {
		j.done.Add(1)
		go j.checkpointLoop()
	}
	return rep, nil
}

// plan is what replay does with one partition, from a first pass over the
// records' headers. Records are numbered in replay order from 0.
type plan struct {
	// from is the first record to apply: after the last drop, or at the
	// last reset (which empties the log: what came before does not
	// matter).
	from    int
	reset   bool // records[from] is a reset
	dropped bool // the last drop comes after every other record
	// afterDrop: the records applied follow a drop, so they belong to a
	// partition created again under the name: what the checkpoint says
	// of the name was of the deleted one.
	afterDrop bool
	// minCut is the lowest truncation offset among the records applied
	// (-1 if none), and cutAt the first record that truncates there.
	// Appends before cutAt that reach minCut are skipped: it cuts them.
	minCut int64
	cutAt  int
}

// scanNames reads the records' headers and plans each partition's replay
// (see plan). At the first entry holding a record that fails its checksum
// it cuts the journal (that entry and the ones after it cannot be
// trusted) and reports which partitions lost records; good is the last
// entry kept.
func (j *Journal) scanNames(from, last uint64, rep *ReplayReport) (plans map[string]*plan, good uint64, err error) {
	plans = map[string]*plan{}
	seq := 0
	var recs []record
	for i := from; i <= last; i++ {
		b, err := j.tw.Read(i)
		if err != nil {
			return nil, 0, fmt.Errorf("journal: read entry %d: %w", i, err)
		}
		recs = recs[:0]
		if derr := decodeEntry(b, func(rec record) { recs = append(recs, rec) }); derr != nil {
			return plans, i - 1, j.cutAt(i, last, derr, rep)
		}
		for _, rec := range recs {
			at := seq
			seq++
			pl := plans[rec.name]
			if pl == nil {
				pl = &plan{minCut: -1}
				plans[rec.name] = pl
			}
			pl.dropped = false
			switch rec.kind {
			case KindDrop:
				*pl = plan{from: at + 1, minCut: -1, dropped: true, afterDrop: true}
			case KindReset:
				*pl = plan{from: at, reset: true, minCut: -1}
			case KindTruncate:
				if pl.minCut < 0 || rec.offset < pl.minCut {
					pl.minCut, pl.cutAt = rec.offset, at
				}
			}
		}
	}
	return plans, last, nil
}

// cutAt drops entries [i, last] after entry i failed to decode.
func (j *Journal) cutAt(i, last uint64, why error, rep *ReplayReport) error {
	lost := map[string]bool{}
	for k := i; k <= last; k++ {
		if b, err := j.tw.Read(k); err == nil {
			_ = decodeEntry(b, func(rec record) {
				if rec.kind != KindDrop {
					lost[rec.name] = true
				}
			})
		}
	}
	rep.Cut = fmt.Sprintf("entry %d of %d: %v; %d entries dropped", i, last, why, last-i+1)
	rep.Lost = slices.Sorted(maps.Keys(lost))
	j.log.Error("journal: damaged record: journal cut before it", "cut", rep.Cut, "partitions", rep.Lost)
	j.twMu.Lock()
	defer j.twMu.Unlock()
	if err := j.tw.TruncateBack(i - 1); err != nil {
		return fmt.Errorf("journal: cut at entry %d: %w", i, err)
	}
	if err := j.tw.Sync(); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j.mu.Lock()
	j.next = i
	j.mu.Unlock()
	return j.followTail()
}

// replayer applies records to the partitions' logs.
type replayer struct {
	j     *Journal
	open  Opener
	cp    checkpoint
	rep   *ReplayReport
	plans map[string]*plan
	logs  map[string]*segment.Log // opened and cut back to the checkpoint
}

func (r *replayer) apply(rec record) error {
	if _, bad := r.rep.Damaged[rec.name]; bad {
		return nil
	}
	if rec.kind == KindDrop {
		return nil // a drop before a re-creation: nothing to apply
	}
	l, err := r.log(rec)
	if err != nil || l == nil {
		return err
	}
	switch rec.kind {
	case KindAppend:
		e := rec.entry
		switch next := l.NextOffset(); {
		case e.LastOffset < next:
			return nil // already in the segments
		case e.BaseOffset != next:
			r.damaged(rec.name, fmt.Sprintf("journal entry [%d, %d] does not follow the log end %d", e.BaseOffset, e.LastOffset, next))
			return nil
		}
		err = l.Write(e)
	case KindTruncate:
		_, err = l.TruncateTo(rec.offset)
	case KindReset:
		err = l.Reset(rec.offset)
	case KindStart:
		if rec.offset > l.NextOffset() {
			err = l.Reset(rec.offset)
		} else {
			_, err = l.DeleteSegmentsBefore(rec.offset)
		}
	}
	if err != nil {
		r.damaged(rec.name, fmt.Sprintf("replaying a %s record: %v", rec.kind, err))
	}
	return nil
}

// log opens rec's partition on first use and brings it back to a state
// the records can be applied to. Its segments hold the checkpoint's state
// up to its durable offset, plus some of the later operations (a process
// crash keeps them all, a power loss any part of them; the segment's own
// tail repair drops a torn frame). A truncation among the records may have
// been lost with the rest, so the log is cut at the lowest one: nothing it
// held past that from before it may survive. Past that the segments keep
// what they hold if it reads back intact (else they are cut back to what
// the checkpoint says was durable and rewritten from the journal): the appends the journal also holds are skipped when
// applied, and entries written but not yet journaled when the process
// died stay, as a log per partition keeps what reached the page cache (a
// follower may have copied them already; cutting them here would leave
// the leader without records its followers have). What the checkpoint says
// was durable (below the lowest truncation) must be there; for a partition
// the checkpoint does not know, everything before its first append. A reset
// needs no cut: it empties the log.
func (r *replayer) log(rec record) (*segment.Log, error) {
	if l, ok := r.logs[rec.name]; ok {
		return l, nil
	}
	l, err := r.open(rec.name)
	if err != nil {
		r.damaged(rec.name, fmt.Sprintf("cannot open its log: %v", err))
		return nil, nil
	}
	r.logs[rec.name] = l
	pl := r.plans[rec.name]
	if pl.reset {
		return l, nil
	}
	if pl.minCut >= 0 && l.NextOffset() > pl.minCut {
		if _, err := l.TruncateTo(pl.minCut); err != nil {
			r.damaged(rec.name, fmt.Sprintf("cutting back to offset %d: %v", pl.minCut, err))
			return nil, nil
		}
	}
	c, known := r.cp.Partitions[rec.name]
	switch known = known && !pl.afterDrop; {
	case known && pl.minCut >= 0:
		c = min(c, pl.minCut)
	case !known && rec.kind == KindAppend:
		c = rec.entry.BaseOffset
	case !known && pl.minCut >= 0:
		c = pl.minCut
	case !known:
		return l, nil // the first record sets the log's shape
	}
	if next := l.NextOffset(); next < c {
		r.damaged(rec.name, fmt.Sprintf("segments end at %d but offsets below %d were durable", next, c))
		return nil, nil
	}
	if l.NextOffset() > c && readsBadFrom(l, c) {
		// A power loss tore what was written past c: rewrite it from the
		// journal (what it lacks was never acknowledged).
		if _, err := l.TruncateTo(c); err != nil {
			r.damaged(rec.name, fmt.Sprintf("cutting back to offset %d: %v", c, err))
			return nil, nil
		}
	}
	return l, nil
}

// readsBadFrom reports whether reading l from offset c to its end fails
// (a damaged frame: pages a power loss left as zeros, say).
func readsBadFrom(l *segment.Log, c int64) bool {
	for at := max(c, l.StartOffset()); at < l.NextOffset(); {
		next, err := l.ReadEntries(at, 1<<20, math.MaxInt64, func(segment.Entry) error { return nil })
		if err != nil || next <= at {
			return true
		}
		at = next
	}
	return false
}

func (r *replayer) damaged(name, why string) {
	r.rep.Damaged[name] = why
	r.j.log.Error("journal: partition damaged in replay", "partition", name, "reason", why)
}

// closeAll flushes and closes the logs Replay opened.
func (r *replayer) closeAll() error {
	var first error
	for name, l := range r.logs {
		if err := l.Close(); err != nil && first == nil {
			first = fmt.Errorf("journal: replay: close %q: %w", name, err)
		}
		if d := l.NextOffset(); first == nil {
			r.j.mu.Lock()
			r.j.durable[name] = d
			r.j.mu.Unlock()
		}
		delete(r.logs, name)
	}
	return first
}

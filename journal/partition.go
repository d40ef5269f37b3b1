package journal

import (
	"errors"
	"fmt"

	"github.com/skeinlog/skein/segment"
)

// Partition is one partition's segment log attached to the journal: its
// writes go to the segments (readable at once) and to the journal (durable
// at the group commit). One writer per Partition, like the segment log.
type Partition struct {
	j    *Journal
	name string
	seg  *segment.Log
}

// Attach registers a partition's segment log under name (unique, at most
// 65535 bytes). The journal flushes it at checkpoints until Detach; the
// caller keeps reading it directly and closes it after Detach.
func (j *Journal) Attach(name string, seg *segment.Log) (*Partition, error) {
	if name == "" || len(name) > maxNameLen {
		return nil, fmt.Errorf("journal: partition name of %d bytes: 1 to %d", len(name), maxNameLen)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if err := j.usable(); err != nil {
		return nil, err
	}
	if !j.replayed {
		return nil, ErrNotReplayed
	}
	if _, ok := j.parts[name]; ok {
		return nil, fmt.Errorf("journal: partition %q is already attached", name)
	}
	p := &Partition{j: j, name: name, seg: seg}
	j.parts[name] = p
	// Its segments hold what it wrote before it was detached unflushed:
	// the next checkpoint flushes them.
	delete(j.cpBlocked, name)
	return p, nil
}

// Log is the partition's segment log, for reads.
func (p *Partition) Log() *segment.Log { return p.seg }

// Write writes entries to the segment log and to the journal, and returns
// the ticket of the group commit that makes them durable: Wait on it before
// acknowledging them. Entries are readable as soon as Write returns.
func (p *Partition) Write(entries ...segment.Entry) (Ticket, error) {
	if err := p.seg.Write(entries...); err != nil {
		return Ticket{}, err
	}
	recs := make([]record, len(entries))
	for i, e := range entries {
		recs[i] = record{kind: KindAppend, name: p.name, entry: e}
	}
	return p.j.enqueue(recs...)
}

// Append is Write then Wait: the entries are durable when it returns nil.
func (p *Partition) Append(entries ...segment.Entry) error {
	t, err := p.Write(entries...)
	if err != nil {
		return err
	}
	return t.Wait()
}

// TruncateTo cuts the log (segment.Log.TruncateTo) and records the cut, so
// that a replay never brings a cut record back; it returns once the record
// is durable.
func (p *Partition) TruncateTo(offset int64) (int64, error) {
	next, err := p.seg.TruncateTo(offset)
	if err != nil {
		return next, err
	}
	return next, p.record(KindTruncate, offset)
}

// Reset empties the log to start at next and records it.
func (p *Partition) Reset(next int64) error {
	if err := p.seg.Reset(next); err != nil {
		return err
	}
	return p.record(KindReset, next)
}

// DeleteSegmentsBefore applies retention (segment.Log.DeleteSegmentsBefore)
// and records the new start, so a replay does not bring deleted records
// back.
func (p *Partition) DeleteSegmentsBefore(offset int64) (int64, error) {
	removed, err := p.seg.DeleteSegmentsBefore(offset)
	if err != nil || removed == 0 {
		return removed, err
	}
	return removed, p.record(KindStart, p.seg.StartOffset())
}

// Drop records that the partition is deleted and detaches it; a replay
// then ignores its records. The caller removes its files afterwards.
func (p *Partition) Drop() error {
	if err := p.record(KindDrop, 0); err != nil {
		return err
	}
	p.j.mu.Lock()
	defer p.j.mu.Unlock()
	delete(p.j.parts, p.name)
	delete(p.j.durable, p.name)
	delete(p.j.cpBlocked, p.name)
	return nil
}

// Forget records that the partition named name, not attached, is deleted:
// a replay then ignores its records before this one, and a partition
// created again under the name starts afresh. It returns once the record is
// durable; the caller removes the partition's files afterwards.
func (j *Journal) Forget(name string) error {
	j.mu.Lock()
	_, attached := j.parts[name]
	replayed := j.replayed
	j.mu.Unlock()
	switch {
	case attached:
		return fmt.Errorf("journal: partition %q is attached: close it first", name)
	case !replayed:
		return ErrNotReplayed
	}
	t, err := j.enqueue(record{kind: KindDrop, name: name})
	if err != nil {
		return err
	}
	if err := t.Wait(); err != nil {
		return err
	}
	j.mu.Lock()
	delete(j.durable, name)
	delete(j.cpBlocked, name)
	j.mu.Unlock()
	return nil
}

// Detach flushes the segment log and stops the journal's checkpoints of
// it, remembering how far it is durable. Close the log afterwards.
// Detaching a Partition that is no longer attached (detached before, or
// dropped, or replaced by a later Attach of its name) does nothing.
func (p *Partition) Detach() error {
	durable, err := p.seg.Flush()
	p.j.mu.Lock()
	defer p.j.mu.Unlock()
	if p.j.parts[p.name] != p {
		return nil
	}
	delete(p.j.parts, p.name)
	if err != nil {
		// Its records must stay in the journal: no checkpoint may pass them.
		p.j.cpBlocked[p.name] = fmt.Errorf("journal: partition %q could not be flushed when detached: %w", p.name, err)
		return err
	}
	p.j.durable[p.name] = durable
	return nil
}

// record journals an operation already applied to the segments (or a
// drop) and waits until it is durable. If its group is refused for want of
// space, the record of a truncation, reset or start move is owed
// (Journal.owe): written first in the next group, before anything the
// partition writes next, and the error is returned.
func (p *Partition) record(kind Kind, offset int64) error {
	rec := record{kind: kind, name: p.name, offset: offset}
	t, err := p.j.enqueue(rec)
	if err == nil {
		err = t.Wait()
	}
	if errors.Is(err, ErrNoSpace) && kind != KindDrop {
		p.j.owe(rec)
	}
	return err
}

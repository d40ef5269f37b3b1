package chaos

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"time"
)

// CheckOptions tunes the checker.
type CheckOptions struct {
	// HealAt is when the last fault was healed (since run start); 0 if no faults. Used for recovery time.
	HealAt time.Duration
	// MaxExamples per anomaly kept in Result.Examples (default 5).
	MaxExamples int
}

// Anomalies: every count must be 0 for a run to pass.
type Anomalies struct {
	Lost             int `json:"lost"`              // G1: acked value not in the final read of its partition
	LostAtOffset     int `json:"lost_at_offset"`    // G1: acked value read, but at another offset than acked
	Inconsistent     int `json:"inconsistent"`      // G2: an offset observed with two different values (acks, consumer reads, final read, replicas)
	Duplicate        int `json:"duplicate"`         // G3: a value at more than one offset (final read or replicas or consumer reads)
	Unexpected       int `json:"unexpected"`        // G4: a value read that was never attempted, or Corrupt (checksum failed)
	Aborted          int `json:"aborted"`           // G5: a value whose send definitely failed (Fail) was read
	ProducerReorder  int `json:"producer_reorder"`  // G6: within a partition, one producer's acked sends not in invoke order by offset
	ConsumerSkip     int `json:"consumer_skip"`     // G7: a consumer process's consecutive reads of a partition jumped over an offset (not dense)
	ConsumerBackward int `json:"consumer_backward"` // G7: a consumer process read an offset <= one it read before on that partition
	ReplicaLoss      int `json:"replica_loss"`      // G8: a replica's log lacks an offset below the HW, or holds a different value than the final read there
	ReplicaDiverge   int `json:"replica_diverge"`   // G8: replicas' Raw bytes below HW not byte-identical (one per replica differing from the majority's)
	HWRegression     int `json:"hw_regression"`     // G9: an FHW process saw the HW go down (or the final HW is below one polled)
	EpochOrder       int `json:"epoch_order"`       // G10: along a log (final read, a replica, a consumer's reads), an epoch lower than that of the offset before
	AckEpoch         int `json:"ack_epoch"`         // G10: an ack named another leader epoch than the one stamped on its record in the final read
	CommitRegression int `json:"commit_regression"` // G13: a group commit acknowledged below one acknowledged before it, or a member starting a partition below the acknowledged commit
	GroupUndelivered int `json:"group_undelivered"` // G13: a record of the final read never delivered to the consumer group
	// The key topic (G14, checker_keys.go).
	KeyLostUpdate   int `json:"key_lost_update"`  // an acknowledged per-key update not in its key's final chain
	KeyFork         int `json:"key_fork"`         // two acked updates of a key on one predecessor, or a record not based on the key's record before it
	KeyAborted      int `json:"key_aborted"`      // a definitely refused key update in the log
	KeyUnexpected   int `json:"key_unexpected"`   // a key topic record that does not decode or that no writer attempted
	KeyInconsistent int `json:"key_inconsistent"` // GetKey answered a record the final read does not hold there
	KeyLatest       int `json:"key_latest"`       // after the run, GetKey's answer for a key is not its last record
	// A compacted key topic: a key whose latest acknowledged update is
	// neither in the read from the beginning nor superseded there.
	KeyCompactedLatest int `json:"key_compacted_latest"`
}

// Total is the sum of all anomaly counts.
func (a Anomalies) Total() int {
	return a.Lost + a.LostAtOffset + a.Inconsistent + a.Duplicate + a.Unexpected + a.Aborted +
		a.ProducerReorder + a.ConsumerSkip + a.ConsumerBackward + a.ReplicaLoss + a.ReplicaDiverge +
		a.HWRegression + a.EpochOrder + a.AckEpoch + a.CommitRegression + a.GroupUndelivered +
		a.KeyLostUpdate + a.KeyFork + a.KeyAborted + a.KeyUnexpected + a.KeyInconsistent + a.KeyLatest +
		a.KeyCompactedLatest
}

// Result of judging one run.
type Result struct {
	Attempted, Acked, Failed, Indeterminate int // sends by outcome (an invoke with no completion counts as Indeterminate)
	Read                                    int // records in the final read, all partitions
	// The consumer group: records delivered (with repeats), offsets
	// delivered more than once, and acknowledged commits.
	GroupReads, GroupRedelivered, GroupCommits int
	// Keys: the per-key conditional writers' figures, per key topic.
	Keys      []KeyStats `json:"keys"`
	Anomalies Anomalies
	Examples  map[string][]string `json:"examples,omitempty"` // anomaly json name -> human-readable examples (partition, offset, value in hex, producer, times)
	// Liveness: per partition, the longest window with no successful send while sends were being attempted (G12 figure), and the time from HealAt to the first ok send after it (max over partitions; -1 if none).
	Unavailable        map[int32]time.Duration `json:"unavailable"`
	MaxUnavailable     time.Duration           `json:"max_unavailable"`
	RecoveredAfterHeal time.Duration           `json:"recovered_after_heal"`
}

// Valid reports whether the run showed no anomaly.
func (r Result) Valid() bool { return r.Anomalies.Total() == 0 }

// Check judges a history and what was read back after the run against the
// guarantees of RELIABILITY.md. h is in the order it was recorded (the
// slice order is the history order; Op.Index is not consulted).
//
// How the observations are counted:
//   - Sends: an invoke's completion is the next send op of the same
//     Process. An invoke with no completion (or followed by another invoke
//     of the same Process) is indeterminate, like info. A completion with no
//     invoke before it counts as its own send, invoked when it completed.
//   - The final read is the reference: every other observation of an offset
//     (an ack, a consumer read, a replica record below its HW) is compared to
//     it. Inconsistent counts offsets (once each), Duplicate and Unexpected
//     (never attempted) and Aborted count values (once each), Unexpected
//     (corrupt) counts offsets, Lost and LostAtOffset count ok sends,
//     ReplicaLoss counts (replica, offset) pairs, ReplicaDiverge replicas,
//     ProducerReorder neighbouring pairs, EpochOrder places where the epoch
//     goes down, and the consumer and HW anomalies each offending op.
//   - A consumer read at an offset the final read lacks is Inconsistent
//     (whatever the final HW: a record returned to a client was truncated).
//   - The final read is read forward too: a gap between two of its offsets
//     is a ConsumerSkip.
//   - Replica records above the replica's HW may differ (an uncommitted
//     tail); they are checked only for Unexpected, Aborted and EpochOrder.
//
// Check allocates memory proportional to the number of values and
// offsets in h and f, and runs in O(n log n).
func Check(h []Op, f Final, opt CheckOptions) Result {
	if opt.MaxExamples <= 0 {
		opt.MaxExamples = 5
	}
	c := &chkState{
		opt:     opt,
		f:       f,
		logs:    make(map[int32]*chkLog, len(f.Reads)),
		idx:     make(map[uint64]int32, len(h)/2),
		missing: map[chkPO]uint64{},
		incons:  map[chkPO]struct{}{},
		corrupt: map[chkPO]struct{}{},
	}
	c.res.Unavailable = map[int32]time.Duration{}
	c.pairSends(h)
	c.checkFinalReads()
	// Acks before consumer reads and replicas: at this point a value's
	// location can only come from the final read.
	c.checkAcks()
	c.checkOps(h)
	c.checkGroup(h)
	c.checkKeys(h)
	c.checkReplicas()
	c.checkProducerOrder()
	c.liveness()
	return c.res
}

// chkPO is a (partition, offset).
type chkPO struct {
	p int32
	o int64
}

// chkProcPart is a (process, partition).
type chkProcPart struct {
	proc int
	p    int32
}

// Send outcomes and value flags in chkVal.
const (
	chkSent      uint8 = 1 << iota // some send invoked this value
	chkOK                          // ... and one was acked
	chkFailed                      // ... and one failed definitely
	chkUnknown                     // ... and one is indeterminate
	chkHasLoc                      // loc holds where the value was first read
	chkDupSeen                     // counted as Duplicate
	chkUnexpSeen                   // counted as Unexpected
	chkAbortSeen                   // counted as Aborted
)

// chkVal is what the checker knows about one value.
type chkVal struct {
	flags uint8
	loc   chkPO
}

// chkSend is one send: its invoke and completion.
type chkSend struct {
	inv, done time.Duration
	value     uint64
	offset    int64
	part      int32
	producer  int32
	proc      int
	outcome   OpType // OK, Fail, Info; "" when it never completed
	epoch     int32  // the ack's leader epoch; -1 when unknown
}

// chkLog is a log sorted by offset, for lookups.
type chkLog struct {
	recs  []Rec
	dense bool // strictly ascending, no gaps: recs[i].Offset == recs[0].Offset+i
}

func chkNewLog(recs []Rec) *chkLog {
	sorted := slices.IsSortedFunc(recs, func(a, b Rec) int { return cmp.Compare(a.Offset, b.Offset) })
	if !sorted {
		recs = slices.Clone(recs)
		slices.SortStableFunc(recs, func(a, b Rec) int { return cmp.Compare(a.Offset, b.Offset) })
	}
	n := len(recs)
	return &chkLog{recs: recs, dense: n > 0 && recs[n-1].Offset-recs[0].Offset == int64(n-1)}
}

// at returns the (first) record at offset o.
func (l *chkLog) at(o int64) (Rec, bool) {
	if l == nil || len(l.recs) == 0 {
		return Rec{}, false
	}
	if l.dense {
		i := o - l.recs[0].Offset
		if i < 0 || i >= int64(len(l.recs)) {
			return Rec{}, false
		}
		return l.recs[i], true
	}
	i, ok := slices.BinarySearchFunc(l.recs, o, func(r Rec, o int64) int { return cmp.Compare(r.Offset, o) })
	if !ok {
		return Rec{}, false
	}
	return l.recs[i], true
}

type chkState struct {
	opt   CheckOptions
	res   Result
	f     Final
	logs  map[int32]*chkLog // the final read per partition
	vals  []chkVal
	idx   map[uint64]int32 // value -> vals index
	sends []chkSend        // in invoke order
	// missing holds the first value observed at an offset the final read
	// lacks; incons and corrupt hold offsets already counted.
	missing map[chkPO]uint64
	incons  map[chkPO]struct{}
	corrupt map[chkPO]struct{}
}

// val returns v's entry, adding it. The pointer is valid until the next call.
func (c *chkState) val(v uint64) *chkVal {
	i, ok := c.idx[v]
	if !ok {
		i = int32(len(c.vals))
		c.vals = append(c.vals, chkVal{})
		c.idx[v] = i
	}
	return &c.vals[i]
}

func (c *chkState) example(kind, format string, args ...any) {
	if len(c.res.Examples[kind]) >= c.opt.MaxExamples {
		return
	}
	if c.res.Examples == nil {
		c.res.Examples = map[string][]string{}
	}
	c.res.Examples[kind] = append(c.res.Examples[kind], fmt.Sprintf(format, args...))
}

// chkValue formats a value with the producer and sequence it encodes.
func chkValue(v uint64) string {
	return fmt.Sprintf("%#x (producer %d seq %d)", v, v>>32, uint32(v))
}

// pairSends pairs each send invoke with its completion and counts outcomes.
func (c *chkState) pairSends(h []Op) {
	n := 0
	for i := range h {
		if h[i].F == FSend && h[i].Type == Invoke {
			n++
		}
	}
	c.sends = make([]chkSend, 0, n)
	pending := map[int]int{} // process -> index in c.sends
	for i := range h {
		op := &h[i]
		if op.F != FSend {
			continue
		}
		if op.Type == Invoke {
			// A process runs one op at a time: an earlier invoke still
			// pending never completed (indeterminate).
			c.sends = append(c.sends, chkSend{
				inv: op.Time, value: op.Value, part: op.Partition,
				producer: int32(op.Producer), proc: op.Process,
			})
			pending[op.Process] = len(c.sends) - 1
			continue
		}
		j, ok := pending[op.Process]
		if ok {
			delete(pending, op.Process)
		} else {
			c.sends = append(c.sends, chkSend{
				inv: op.Time, value: op.Value, part: op.Partition,
				producer: int32(op.Producer), proc: op.Process,
			})
			j = len(c.sends) - 1
		}
		s := &c.sends[j]
		s.done, s.outcome, s.epoch = op.Time, op.Type, -1
		if op.Type == OK {
			s.offset = op.Offset
			if op.AckEpoch != nil {
				s.epoch = *op.AckEpoch
			}
		}
	}
	c.res.Attempted = len(c.sends)
	for i := range c.sends {
		s := &c.sends[i]
		v := c.val(s.value)
		v.flags |= chkSent
		switch s.outcome {
		case OK:
			c.res.Acked++
			v.flags |= chkOK
		case Fail:
			c.res.Failed++
			v.flags |= chkFailed
		default: // Info, or no completion
			c.res.Indeterminate++
			v.flags |= chkUnknown
		}
	}
}

// checkValue runs the checks every record read (final, consumer, replica)
// gets: corrupt, never attempted, aborted, and (when locate) at more than
// one offset. It reports whether the record's value is usable for offset
// comparisons.
func (c *chkState) checkValue(src chkSrc, p int32, o int64, value uint64, corrupt, locate bool) bool {
	po := chkPO{p, o}
	if corrupt {
		if _, seen := c.corrupt[po]; !seen {
			c.corrupt[po] = struct{}{}
			c.res.Anomalies.Unexpected++
			c.example("unexpected", "p=%d off=%d: %s read a corrupt record (checksum failed)", p, o, src)
		}
		return false
	}
	v := c.val(value)
	switch {
	case v.flags&chkSent == 0:
		if v.flags&chkUnexpSeen == 0 {
			v.flags |= chkUnexpSeen
			c.res.Anomalies.Unexpected++
			c.example("unexpected", "p=%d off=%d: %s read value %s that no send attempted", p, o, src, chkValue(value))
		}
	case v.flags&(chkOK|chkUnknown) == 0: // sent, and every send failed definitely
		if v.flags&chkAbortSeen == 0 {
			v.flags |= chkAbortSeen
			c.res.Anomalies.Aborted++
			c.example("aborted", "p=%d off=%d: %s read value %s whose send failed", p, o, src, chkValue(value))
		}
	}
	switch {
	case !locate:
	case v.flags&chkHasLoc == 0:
		v.flags |= chkHasLoc
		v.loc = po
	case v.loc != po && v.flags&chkDupSeen == 0:
		v.flags |= chkDupSeen
		c.res.Anomalies.Duplicate++
		c.example("duplicate", "value %s at p=%d off=%d and (%s) at p=%d off=%d", chkValue(value), v.loc.p, v.loc.o, src, p, o)
	}
	return true
}

// chkSrc names where an observation came from; formatted only for examples.
type chkSrc struct {
	kind  uint8
	id    int           // producer, consumer process or broker
	t, t2 time.Duration // ack: invoke and completion; consumer: read time
}

// Kinds of chkSrc.
const (
	chkSrcFinal uint8 = iota
	chkSrcAck
	chkSrcConsumer
	chkSrcReplica
	chkSrcGroup
)

func (s chkSrc) String() string {
	switch s.kind {
	case chkSrcAck:
		return fmt.Sprintf("the ack (producer %d, invoked %v, acked %v)", s.id, s.t, s.t2)
	case chkSrcConsumer:
		return fmt.Sprintf("consumer %d (at %v)", s.id, s.t)
	case chkSrcReplica:
		return fmt.Sprintf("replica on broker %d", s.id)
	case chkSrcGroup:
		return fmt.Sprintf("group member %d (at %v)", s.id, s.t)
	}
	return "the final read"
}

// flagInconsistent counts offset po as inconsistent once.
func (c *chkState) flagInconsistent(po chkPO, format string, args ...any) {
	if _, seen := c.incons[po]; seen {
		return
	}
	c.incons[po] = struct{}{}
	c.res.Anomalies.Inconsistent++
	c.example("inconsistent", "p=%d off=%d: "+format, append([]any{po.p, po.o}, args...)...)
}

// observe compares an observation of value at (p, o) with the final read
// there, or with the first observation of an offset the final read lacks.
// It reports whether the final read has the offset.
func (c *chkState) observe(src chkSrc, p int32, o int64, value uint64) bool {
	po := chkPO{p, o}
	if r, ok := c.logs[p].at(o); ok {
		if !r.Corrupt && r.Value != value {
			c.flagInconsistent(po, "%s saw %s, the final read has %s", src, chkValue(value), chkValue(r.Value))
		}
		return true
	}
	if first, ok := c.missing[po]; !ok {
		c.missing[po] = value
	} else if first != value {
		c.flagInconsistent(po, "%s saw %s, an earlier observation %s (the final read lacks the offset)", src, chkValue(value), chkValue(first))
	}
	return false
}

// checkEpochs counts the places along a log where the epoch goes down.
func (c *chkState) checkEpochs(src chkSrc, p int32, recs []Rec) {
	have := false
	var prev Rec
	for _, r := range recs {
		if r.Corrupt {
			continue
		}
		if have && r.Epoch < prev.Epoch {
			c.res.Anomalies.EpochOrder++
			c.example("epoch_order", "p=%d: %s has epoch %d at off=%d after epoch %d at off=%d", p, src, r.Epoch, r.Offset, prev.Epoch, prev.Offset)
		}
		prev, have = r, true
	}
}

// checkFinalReads indexes the final read and checks it on its own.
func (c *chkState) checkFinalReads() {
	for _, p := range chkSortedKeys(c.f.Reads) {
		l := chkNewLog(c.f.Reads[p])
		c.logs[p] = l
		c.res.Read += len(l.recs)
		for i, r := range l.recs {
			if i > 0 {
				prev := l.recs[i-1]
				switch {
				case r.Offset == prev.Offset:
					if !r.Corrupt && !prev.Corrupt && r.Value != prev.Value {
						c.flagInconsistent(chkPO{p, r.Offset}, "the final read has %s and %s", chkValue(prev.Value), chkValue(r.Value))
					}
					continue
				case r.Offset > prev.Offset+1:
					c.res.Anomalies.ConsumerSkip++
					c.example("consumer_skip", "p=%d: the final read jumped from off=%d to off=%d", p, prev.Offset, r.Offset)
				}
			}
			c.checkValue(chkSrc{}, p, r.Offset, r.Value, r.Corrupt, true)
		}
		c.checkEpochs(chkSrc{}, p, l.recs)
	}
}

// checkAcks checks every ok send against the final read (G1, G2).
func (c *chkState) checkAcks() {
	for i := range c.sends {
		s := &c.sends[i]
		if s.outcome != OK {
			continue
		}
		src := chkSrc{kind: chkSrcAck, id: int(s.producer), t: s.inv, t2: s.done}
		c.observe(src, s.part, s.offset, s.value)
		if r, ok := c.logs[s.part].at(s.offset); ok && !r.Corrupt && r.Value == s.value {
			if s.epoch >= 0 && r.Epoch != s.epoch {
				c.res.Anomalies.AckEpoch++
				c.example("ack_epoch", "value %s acked at p=%d off=%d in epoch %d (acked %v) is stamped with epoch %d in the log",
					chkValue(s.value), s.part, s.offset, s.epoch, s.done, r.Epoch)
			}
			continue
		}
		v := c.val(s.value)
		if v.flags&chkHasLoc != 0 {
			c.res.Anomalies.LostAtOffset++
			c.example("lost_at_offset", "value %s acked at p=%d off=%d (invoked %v, acked %v) is read at p=%d off=%d",
				chkValue(s.value), s.part, s.offset, s.inv, s.done, v.loc.p, v.loc.o)
			continue
		}
		c.res.Anomalies.Lost++
		c.example("lost", "value %s acked at p=%d off=%d (invoked %v, acked %v) is not in the final read",
			chkValue(s.value), s.part, s.offset, s.inv, s.done)
	}
}

// checkOps checks consumer reads (G2, G4, G5, G7, G10) and HW polls (G9).
func (c *chkState) checkOps(h []Op) {
	type lastRead struct {
		offset int64
		epoch  int32
		epochs bool // epoch is of a verified record
	}
	reads := map[chkProcPart]lastRead{}
	hws := map[chkProcPart]int64{}
	maxHW := map[int32]Op{}
	for i := range h {
		op := &h[i]
		if op.Type != OK {
			continue
		}
		switch op.F {
		case FRead:
			p, o := op.Partition, op.Offset
			src := chkSrc{kind: chkSrcConsumer, id: op.Process, t: op.Time}
			key := chkProcPart{op.Process, p}
			last, seen := reads[key]
			if seen {
				switch {
				case o <= last.offset:
					c.res.Anomalies.ConsumerBackward++
					c.example("consumer_backward", "p=%d: %s read off=%d after off=%d", p, src, o, last.offset)
				case o > last.offset+1:
					c.res.Anomalies.ConsumerSkip++
					c.example("consumer_skip", "p=%d: %s read off=%d after off=%d", p, src, o, last.offset)
				}
				if o > last.offset && !op.Corrupt && last.epochs && op.Epoch < last.epoch {
					c.res.Anomalies.EpochOrder++
					c.example("epoch_order", "p=%d: %s read epoch %d at off=%d after epoch %d at off=%d", p, src, op.Epoch, o, last.epoch, last.offset)
				}
			}
			next := lastRead{offset: o, epoch: last.epoch, epochs: last.epochs}
			if !op.Corrupt {
				next.epoch, next.epochs = op.Epoch, true
			}
			reads[key] = next
			if !c.checkValue(src, p, o, op.Value, op.Corrupt, true) {
				continue
			}
			if !c.observe(src, p, o, op.Value) {
				c.flagInconsistent(chkPO{p, o}, "%s read %s; the final read (HW %d) lacks the offset", src, chkValue(op.Value), c.f.HW[p])
			}
		case FHW:
			key := chkProcPart{op.Process, op.Partition}
			if last, seen := hws[key]; seen && op.Offset < last {
				c.res.Anomalies.HWRegression++
				c.example("hw_regression", "p=%d: process %d saw HW %d at %v after HW %d", op.Partition, op.Process, op.Offset, op.Time, last)
			}
			hws[key] = op.Offset
			if m, seen := maxHW[op.Partition]; !seen || op.Offset > m.Offset {
				maxHW[op.Partition] = *op
			}
		}
	}
	for _, p := range chkSortedKeys(maxHW) {
		m := maxHW[p]
		if hw, ok := c.f.HW[p]; ok && hw < m.Offset {
			c.res.Anomalies.HWRegression++
			c.example("hw_regression", "p=%d: final HW %d is below HW %d that process %d saw at %v", p, hw, m.Offset, m.Process, m.Time)
		}
	}
}

// checkReplicas compares each replica's log below its HW with the final
// read and the replicas' bytes with each other (G8, and G2–G5, G10).
func (c *chkState) checkReplicas() {
	for _, p := range chkSortedKeys(c.f.Replicas) {
		reps := c.f.Replicas[p]
		final := c.logs[p]
		ref := chkMajority(reps)
		for ri, rl := range reps {
			src := chkSrc{kind: chkSrcReplica, id: int(rl.Broker)}
			if ri != ref && !bytes.Equal(rl.Raw, reps[ref].Raw) {
				c.res.Anomalies.ReplicaDiverge++
				c.example("replica_diverge", "p=%d: %s: %d raw bytes below HW %d differ from broker %d's %d (first difference at byte %d)",
					p, src, len(rl.Raw), rl.HW, reps[ref].Broker, len(reps[ref].Raw), chkFirstDiff(rl.Raw, reps[ref].Raw))
			}
			l := chkNewLog(rl.Recs)
			prev := int64(-1 << 63)
			for _, r := range l.recs {
				if r.Offset == prev {
					continue // a second record at one offset: compared below
				}
				prev = r.Offset
				below := r.Offset < rl.HW
				if !c.checkValue(src, p, r.Offset, r.Value, r.Corrupt, below) && below {
					c.res.Anomalies.ReplicaLoss++
					c.example("replica_loss", "p=%d off=%d: %s holds a corrupt record below HW %d", p, r.Offset, src, rl.HW)
					continue
				}
				if !below || r.Corrupt {
					continue
				}
				if !c.observe(src, p, r.Offset, r.Value) {
					c.res.Anomalies.ReplicaLoss++
					c.example("replica_loss", "p=%d off=%d: %s holds %s below HW %d; the final read lacks the offset", p, r.Offset, src, chkValue(r.Value), rl.HW)
				}
			}
			// Other records at an offset already seen (the log is sorted
			// stably, so the first is the one looked up).
			for i := 1; i < len(l.recs); i++ {
				a, b := l.recs[i-1], l.recs[i]
				if a.Offset == b.Offset && a.Offset < rl.HW && !b.Corrupt {
					c.checkValue(src, p, b.Offset, b.Value, false, true)
					if a.Corrupt || a.Value != b.Value {
						c.flagInconsistent(chkPO{p, b.Offset}, "%s holds two records (%s, %s)", src, chkValue(a.Value), chkValue(b.Value))
					}
				}
			}
			c.checkEpochs(src, p, l.recs)
			if final == nil {
				continue
			}
			for _, fr := range final.recs {
				if fr.Offset >= rl.HW {
					break
				}
				r, ok := l.at(fr.Offset)
				switch {
				case !ok:
					c.res.Anomalies.ReplicaLoss++
					c.example("replica_loss", "p=%d off=%d: %s lacks the offset below HW %d (the final read has %s)", p, fr.Offset, src, rl.HW, chkValue(fr.Value))
				case r.Corrupt || fr.Corrupt:
					// counted as Unexpected (and ReplicaLoss above, for the replica's)
				case r.Value != fr.Value:
					c.res.Anomalies.ReplicaLoss++
					c.example("replica_loss", "p=%d off=%d: %s holds %s below HW %d, the final read has %s", p, fr.Offset, src, chkValue(r.Value), rl.HW, chkValue(fr.Value))
				}
			}
		}
	}
}

// chkMajority returns the index of a replica whose bytes most replicas
// share (the first such on a tie), so that one damaged replica counts as
// one divergence even when it comes first.
func chkMajority(reps []ReplicaLog) int {
	best, bestN := 0, 0
	for i := range reps {
		n := 0
		for j := range reps {
			if bytes.Equal(reps[i].Raw, reps[j].Raw) {
				n++
			}
		}
		if n > bestN {
			best, bestN = i, n
		}
	}
	return best
}

func chkFirstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// checkProducerOrder checks G6: for each (partition, producer), the acked
// sends in invoke order have increasing offsets. If that holds for every
// pair of neighbours, a send acked before another was invoked has the
// lower offset too.
func (c *chkState) checkProducerOrder() {
	type key struct {
		p        int32
		producer int32
	}
	last := map[key]int{} // index in c.sends of the last acked send
	for i := range c.sends {
		s := &c.sends[i]
		if s.outcome != OK {
			continue
		}
		k := key{s.part, s.producer}
		if j, ok := last[k]; ok {
			a := &c.sends[j]
			if s.offset <= a.offset {
				c.res.Anomalies.ProducerReorder++
				c.example("producer_reorder", "p=%d producer %d: %s (invoked %v, acked %v) got off=%d, not above off=%d of %s invoked before it (invoked %v, acked %v)",
					s.part, s.producer, chkValue(s.value), s.inv, s.done, s.offset, a.offset, chkValue(a.value), a.inv, a.done)
			}
		}
		last[k] = i
	}
}

// Liveness event kinds, in the order they are applied at equal times.
const (
	chkEvOK int8 = iota
	chkEvDone
	chkEvInvoke
)

type chkEvent struct {
	t    time.Duration
	kind int8
}

// liveness computes the G12 figures. For each partition, an unavailability
// window opens when a send is in flight (or has failed) and no ok has come
// since, and closes at the next ok completion (or at the partition's last
// event).
func (c *chkState) liveness() {
	sizes := map[int32]int{}
	for i := range c.sends {
		sizes[c.sends[i].part] += 2
	}
	events := make(map[int32][]chkEvent, len(sizes))
	for p, n := range sizes {
		events[p] = make([]chkEvent, 0, n)
	}
	for i := range c.sends {
		s := &c.sends[i]
		events[s.part] = append(events[s.part], chkEvent{s.inv, chkEvInvoke})
		switch s.outcome {
		case OK:
			events[s.part] = append(events[s.part], chkEvent{s.done, chkEvOK})
		case Fail, Info:
			events[s.part] = append(events[s.part], chkEvent{s.done, chkEvDone})
		}
	}
	c.res.RecoveredAfterHeal = -1
	never := false
	for _, p := range chkSortedKeys(events) {
		evs := events[p]
		slices.SortStableFunc(evs, func(a, b chkEvent) int {
			if a.t != b.t {
				return cmp.Compare(a.t, b.t)
			}
			return cmp.Compare(a.kind, b.kind)
		})
		var worst, start, last time.Duration
		inflight, open := 0, false
		recovered := time.Duration(-1)
		for _, e := range evs {
			last = e.t
			switch e.kind {
			case chkEvInvoke:
				inflight++
				if !open {
					open, start = true, e.t
				}
			case chkEvOK:
				inflight--
				if open {
					worst = max(worst, e.t-start)
				}
				open, start = inflight > 0, e.t
				if recovered < 0 && e.t >= c.opt.HealAt {
					recovered = e.t - c.opt.HealAt
				}
			case chkEvDone:
				inflight-- // the window stays open: the attempt failed
			}
		}
		if open {
			worst = max(worst, last-start)
		}
		c.res.Unavailable[p] = worst
		c.res.MaxUnavailable = max(c.res.MaxUnavailable, worst)
		if recovered < 0 {
			never = true
		}
		c.res.RecoveredAfterHeal = max(c.res.RecoveredAfterHeal, recovered)
	}
	if never {
		// Some partition written to never had an ok send after the heal.
		c.res.RecoveredAfterHeal = -1
	}
}

func chkSortedKeys[V any](m map[int32]V) []int32 {
	keys := make([]int32, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

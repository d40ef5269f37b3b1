package chaos

import (
	"maps"
	"slices"
	"testing"
	"time"
)

// chkModel is a synthetic run: sends with their outcomes and the logs they
// made. render turns it into a history and a Final that agree with each
// other; test cases plant an anomaly into the model or into the rendered
// history.
type chkModel struct {
	sends []chkMSend
	logs  [][]Rec   // per partition
	hwAt  [][]int64 // per round, per partition: the log length then
	round time.Duration
}

type chkMSend struct {
	proc, producer int
	part           int32
	value          uint64
	inv, done      time.Duration
	outcome        OpType // "": no completion
	offset         int64  // where the record was appended; -1: nowhere
}

// chkNewModel makes a clean run: each round, every producer sends one
// record (all invoked, then all completed, so sends are in flight
// together). Some sends fail, some are indeterminate (appended or not),
// some never complete; a producer continues under a new process after
// an indeterminate send. The last round is all ok.
func chkNewModel(producers, partitions, rounds int) *chkModel {
	m := &chkModel{logs: make([][]Rec, partitions), round: 10 * time.Millisecond}
	procs := make([]int, producers)
	seqs := make([]uint32, producers)
	for k := range procs {
		procs[k] = k
	}
	nextProc := producers
	n := 0
	for r := range rounds {
		t := time.Duration(r) * m.round
		for k := range producers {
			n++
			p := int32((r + k) % partitions)
			s := chkMSend{
				proc: procs[k], producer: k, part: p, value: ValueID(k, seqs[k]),
				inv:  t + time.Duration(k)*100*time.Microsecond,
				done: t + 5*time.Millisecond + time.Duration(k)*100*time.Microsecond,
			}
			seqs[k]++
			appended := true
			switch {
			case r == rounds-1:
				s.outcome = OK
			case n%7 == 0:
				s.outcome, appended = Fail, false
			case n%11 == 0:
				s.outcome = Info
			case n%13 == 0:
				s.outcome, appended = Info, false
			case n%17 == 0:
				s.outcome, appended = "", n%2 == 0
			default:
				s.outcome = OK
			}
			s.offset = -1
			if appended {
				s.offset = int64(len(m.logs[p]))
				m.logs[p] = append(m.logs[p], Rec{Offset: s.offset, Value: s.value, Epoch: chkEpoch(r, rounds)})
			}
			if s.outcome == Info || s.outcome == "" {
				procs[k] = nextProc
				nextProc++
			}
			m.sends = append(m.sends, s)
		}
		hw := make([]int64, partitions)
		for p := range hw {
			hw[p] = int64(len(m.logs[p]))
		}
		m.hwAt = append(m.hwAt, hw)
	}
	return m
}

func chkEpoch(round, rounds int) int32 {
	if round < rounds/2 {
		return 1
	}
	return 2
}

// counts returns the expected Attempted, Acked, Failed, Indeterminate.
func (m *chkModel) counts() (attempted, acked, failed, indeterminate int) {
	for _, s := range m.sends {
		switch s.outcome {
		case OK:
			acked++
		case Fail:
			failed++
		default:
			indeterminate++
		}
	}
	return len(m.sends), acked, failed, indeterminate
}

// chkRaw is a replica's stored bytes for recs.
func chkRaw(recs []Rec) []byte {
	var b []byte
	for _, r := range recs {
		b = append(b, EncodeValue(r.Value, 16)...)
	}
	return b
}

// Process ids of the derived ops.
const (
	chkHWProc     = 1000 // + partition: polls the HW after each round
	chkReaderProc = 2000 // + partition: reads the whole log
	chkTailProc   = 3000 // + partition: reads the second half
)

// render returns the history and the Final of the model: sends, one HW
// poller per partition, two consumers per partition, and three replicas
// per partition with equal bytes.
func (m *chkModel) render() ([]Op, Final) {
	type timed struct {
		t  time.Duration
		op Op
	}
	var ops []timed
	for _, s := range m.sends {
		ops = append(ops, timed{s.inv, Op{Process: s.proc, Type: Invoke, F: FSend, Partition: s.part, Value: s.value, Producer: s.producer}})
		if s.outcome != "" {
			c := Op{Process: s.proc, Type: s.outcome, F: FSend, Partition: s.part, Value: s.value, Producer: s.producer}
			if s.outcome == OK {
				c.Offset = s.offset
				if log := m.logs[s.part]; s.offset >= 0 && s.offset < int64(len(log)) {
					e := log[s.offset].Epoch
					c.AckEpoch = &e
				}
			}
			ops = append(ops, timed{s.done, c})
		}
	}
	for r, hws := range m.hwAt {
		for p, hw := range hws {
			hw = min(hw, int64(len(m.logs[p])))
			ops = append(ops, timed{time.Duration(r)*m.round + 9*time.Millisecond, Op{Process: chkHWProc + p, Type: OK, F: FHW, Partition: int32(p), Offset: hw}})
		}
	}
	end := time.Duration(len(m.hwAt)) * m.round
	for p, log := range m.logs {
		for i, rec := range log {
			read := Op{Type: OK, F: FRead, Partition: int32(p), Offset: rec.Offset, Value: rec.Value, Epoch: rec.Epoch, Corrupt: rec.Corrupt}
			read.Process = chkReaderProc + p
			ops = append(ops, timed{end + time.Duration(i)*time.Microsecond, read})
			if i >= len(log)/2 {
				read.Process = chkTailProc + p
				ops = append(ops, timed{end + time.Duration(i)*time.Microsecond, read})
			}
		}
	}
	slices.SortStableFunc(ops, func(a, b timed) int { return int(a.t - b.t) })
	h := make([]Op, len(ops))
	for i, o := range ops {
		h[i] = o.op
		h[i].Index, h[i].Time = i, o.t
	}
	f := Final{Reads: map[int32][]Rec{}, HW: map[int32]int64{}, Replicas: map[int32][]ReplicaLog{}}
	for p, log := range m.logs {
		f.Reads[int32(p)] = slices.Clone(log)
		f.HW[int32(p)] = int64(len(log))
		for b := range 3 {
			f.Replicas[int32(p)] = append(f.Replicas[int32(p)], ReplicaLog{
				Broker: int32(b + 1), HW: int64(len(log)), Raw: chkRaw(log), Recs: slices.Clone(log),
			})
		}
	}
	return h, f
}

// find returns the index of the first send matching ok.
func (m *chkModel) find(t *testing.T, ok func(chkMSend) bool) int {
	t.Helper()
	for i, s := range m.sends {
		if ok(s) {
			return i
		}
	}
	t.Fatal("the model has no such send")
	return -1
}

// sendAt returns the index of the send whose record is at (p, o).
func (m *chkModel) sendAt(t *testing.T, p int32, o int64) int {
	return m.find(t, func(s chkMSend) bool { return s.part == p && s.offset == o })
}

// appendRec appends a record of value v to partition p's log.
func (m *chkModel) appendRec(p int32, v uint64) {
	log := m.logs[p]
	m.logs[p] = append(log, Rec{Offset: int64(len(log)), Value: v, Epoch: log[len(log)-1].Epoch})
}

// addSend adds a send by a new process of a new producer at the end of
// the run, appended to p's log when inLog.
func (m *chkModel) addSend(p int32, outcome OpType, inLog bool) {
	end := time.Duration(len(m.hwAt)) * m.round
	s := chkMSend{proc: 900, producer: 90, part: p, value: ValueID(90, 1), inv: end - m.round/2, done: end - m.round/4, outcome: outcome, offset: -1}
	if inLog {
		s.offset = int64(len(m.logs[p]))
		m.appendRec(p, s.value)
	}
	m.sends = append(m.sends, s)
}

// chkOpIndex returns the index of the first op matching ok.
func chkOpIndex(t *testing.T, h []Op, ok func(Op) bool) int {
	t.Helper()
	for i, op := range h {
		if ok(op) {
			return i
		}
	}
	t.Fatal("the history has no such op")
	return -1
}

func chkIsRead(proc int, p int32, o int64) func(Op) bool {
	return func(op Op) bool {
		return op.F == FRead && op.Process == proc && op.Partition == p && op.Offset == o
	}
}

const (
	chkProducers  = 4
	chkPartitions = 3
	chkRounds     = 60
)

func TestCheckCleanHistory(t *testing.T) {
	m := chkNewModel(chkProducers, chkPartitions, chkRounds)
	h, f := m.render()
	res := Check(h, f, CheckOptions{})
	if !res.Valid() {
		t.Fatalf("anomalies in a clean history: %+v\nexamples: %v", res.Anomalies, res.Examples)
	}
	attempted, acked, failed, indeterminate := m.counts()
	if res.Attempted != attempted || res.Acked != acked || res.Failed != failed || res.Indeterminate != indeterminate {
		t.Errorf("sends attempted/acked/failed/indeterminate = %d/%d/%d/%d, want %d/%d/%d/%d",
			res.Attempted, res.Acked, res.Failed, res.Indeterminate, attempted, acked, failed, indeterminate)
	}
	if failed == 0 || indeterminate == 0 || acked == 0 {
		t.Fatalf("the synthetic history lacks an outcome: %d/%d/%d", acked, failed, indeterminate)
	}
	read := 0
	for _, log := range m.logs {
		read += len(log)
	}
	if res.Read != read {
		t.Errorf("Read = %d, want %d", res.Read, read)
	}
	if len(res.Examples) != 0 {
		t.Errorf("examples without anomalies: %v", res.Examples)
	}
	if len(res.Unavailable) != chkPartitions {
		t.Errorf("Unavailable has %d partitions, want %d", len(res.Unavailable), chkPartitions)
	}
	// A partition gets one or two sends a round, and some fail: a window
	// spans a few rounds at most.
	if res.MaxUnavailable <= 0 || res.MaxUnavailable > 5*m.round {
		t.Errorf("MaxUnavailable = %v, want within (0, %v]", res.MaxUnavailable, 5*m.round)
	}
	if res.RecoveredAfterHeal < 0 || res.RecoveredAfterHeal > 2*m.round {
		t.Errorf("RecoveredAfterHeal = %v, want within [0, %v]", res.RecoveredAfterHeal, 2*m.round)
	}
}

func TestCheckPlantedAnomalies(t *testing.T) {
	tests := []struct {
		name  string
		model func(t *testing.T, m *chkModel)          // plant into the model (before render)
		hist  func(t *testing.T, h []Op, f Final) []Op // plant into the rendered run
		want  Anomalies
	}{
		{
			name:  "fine: indeterminate send in the log",
			model: func(t *testing.T, m *chkModel) { m.addSend(0, Info, true) },
		},
		{
			name:  "fine: indeterminate send not in the log",
			model: func(t *testing.T, m *chkModel) { m.addSend(0, Info, false) },
		},
		{
			name:  "fine: invoke never completed, record in the log",
			model: func(t *testing.T, m *chkModel) { m.addSend(1, "", true) },
		},
		{
			name:  "fine: invoke never completed, record not in the log",
			model: func(t *testing.T, m *chkModel) { m.addSend(1, "", false) },
		},
		{
			name: "fine: final read out of offset order",
			hist: func(t *testing.T, h []Op, f Final) []Op {
				slices.Reverse(f.Reads[0])
				return h
			},
		},
		{
			name: "lost: the last acked record truncated from the log",
			model: func(t *testing.T, m *chkModel) {
				m.logs[0] = m.logs[0][:len(m.logs[0])-1]
			},
			want: Anomalies{Lost: 1},
		},
		{
			name: "lost_at_offset: the ack names the offset after the record's",
			model: func(t *testing.T, m *chkModel) {
				i := m.sendAt(t, 0, int64(len(m.logs[0])-1))
				m.sends[i].offset++
			},
			want: Anomalies{LostAtOffset: 1},
		},
		{
			name: "inconsistent: a consumer read a value the log does not hold there",
			hist: func(t *testing.T, h []Op, f Final) []Op {
				i := chkOpIndex(t, h, chkIsRead(chkReaderProc+1, 1, 5))
				h[i].Value = ValueID(3, 1<<20) // attempted by nobody: see the next case
				return h
			},
			want: Anomalies{Inconsistent: 1, Unexpected: 1},
		},
		{
			name: "inconsistent: a consumer read an indeterminate value the log does not hold",
			hist: func(t *testing.T, h []Op, f Final) []Op {
				i := chkOpIndex(t, h, chkIsRead(chkReaderProc+1, 1, 5))
				h[i].Value = chkInfoNotInLog(t, h, f)
				return h
			},
			want: Anomalies{Inconsistent: 1},
		},
		{
			name: "inconsistent: a consumer read an offset the final read lacks",
			hist: func(t *testing.T, h []Op, f Final) []Op {
				f.Reads[2] = f.Reads[2][:len(f.Reads[2])-1]
				f.HW[2]--
				for i := range f.Replicas[2] {
					rl := &f.Replicas[2][i]
					rl.HW--
					rl.Recs = rl.Recs[:len(rl.Recs)-1]
					rl.Raw = chkRaw(rl.Recs)
				}
				// The HW poller saw the old HW at the end: drop that poll,
				// so that only the consumer's read is left to notice.
				i := chkOpIndex(t, h, func(op Op) bool { return op.F == FHW && op.Partition == 2 && op.Offset == f.HW[2]+1 })
				return slices.Delete(h, i, i+1)
			},
			// The acked record is gone too.
			want: Anomalies{Inconsistent: 1, Lost: 1},
		},
		{
			name: "inconsistent and lost_at_offset: two acked records swapped in the log",
			model: func(t *testing.T, m *chkModel) {
				log := m.logs[1]
				for i := 1; i+1 < len(log); i++ {
					a, b := m.sendAt(t, 1, int64(i)), m.sendAt(t, 1, int64(i+1))
					if m.sends[a].outcome == OK && m.sends[b].outcome == OK && m.sends[a].producer != m.sends[b].producer {
						log[i].Value, log[i+1].Value = log[i+1].Value, log[i].Value
						return
					}
				}
				t.Fatal("no two neighbouring acked records of different producers")
			},
			want: Anomalies{Inconsistent: 2, LostAtOffset: 2},
		},
		{
			name: "inconsistent and lost: two acks name one offset",
			model: func(t *testing.T, m *chkModel) {
				m.addSend(2, OK, false)
				m.sends[len(m.sends)-1].offset = 4
			},
			want: Anomalies{Inconsistent: 1, Lost: 1},
		},
		{
			name: "fine: a replica's uncommitted tail repeats a value above the HW",
			hist: func(t *testing.T, h []Op, f Final) []Op {
				rl := &f.Replicas[0][2]
				rl.Recs = append(rl.Recs, Rec{Offset: rl.HW, Value: rl.Recs[0].Value, Epoch: 2})
				return h // above the HW: an uncommitted tail may differ
			},
		},
		{
			name:  "duplicate: an acked value appended again",
			model: func(t *testing.T, m *chkModel) { m.appendRec(2, m.logs[2][3].Value) },
			want:  Anomalies{Duplicate: 1},
		},
		{
			name:  "unexpected: a value no send attempted",
			model: func(t *testing.T, m *chkModel) { m.appendRec(2, ValueID(42, 7)) },
			want:  Anomalies{Unexpected: 1},
		},
		{
			name: "unexpected: a corrupt consumer read",
			hist: func(t *testing.T, h []Op, f Final) []Op {
				i := chkOpIndex(t, h, chkIsRead(chkTailProc+0, 0, int64(len(f.Reads[0])-2)))
				h[i].Value, h[i].Corrupt = 0, true
				return h
			},
			want: Anomalies{Unexpected: 1},
		},
		{
			name: "unexpected, replica_loss and replica_diverge: a bit flip in one replica",
			hist: func(t *testing.T, h []Op, f Final) []Op {
				rl := &f.Replicas[0][1]
				rl.Recs[4].Value, rl.Recs[4].Corrupt = 0, true
				rl.Raw[4*16+9] ^= 0x10
				return h
			},
			want: Anomalies{Unexpected: 1, ReplicaLoss: 1, ReplicaDiverge: 1},
		},
		{
			name: "aborted: a failed send's value appended",
			model: func(t *testing.T, m *chkModel) {
				i := m.find(t, func(s chkMSend) bool { return s.outcome == Fail })
				m.appendRec(0, m.sends[i].value)
			},
			want: Anomalies{Aborted: 1},
		},
		{
			name: "producer_reorder: a producer's two neighbouring acked sends at swapped offsets",
			model: func(t *testing.T, m *chkModel) {
				last := map[[2]int]int{}
				for i, s := range m.sends {
					if s.outcome != OK {
						continue
					}
					key := [2]int{int(s.part), s.producer}
					if j, ok := last[key]; ok && m.sends[j].inv > m.round*time.Duration(chkRounds/2) {
						a, b := &m.sends[j], &m.sends[i]
						log := m.logs[s.part]
						log[a.offset].Value, log[b.offset].Value = b.value, a.value
						a.offset, b.offset = b.offset, a.offset
						return
					}
					last[key] = i
				}
				t.Fatal("no producer with two acked sends to one partition")
			},
			want: Anomalies{ProducerReorder: 1},
		},
		{
			name: "consumer_skip: a consumer jumped over an offset",
			hist: func(t *testing.T, h []Op, f Final) []Op {
				i := chkOpIndex(t, h, chkIsRead(chkReaderProc+1, 1, 10))
				return slices.Delete(h, i, i+1)
			},
			want: Anomalies{ConsumerSkip: 1},
		},
		{
			name: "consumer_skip: the final read has a hole where no ack was",
			model: func(t *testing.T, m *chkModel) {
				log := m.logs[0]
				log[len(log)-1].Offset++
				m.sends[m.sendAt(t, 0, int64(len(log)-1))].offset++
			},
			want: Anomalies{ConsumerSkip: 3}, // the final read and both consumers
		},
		{
			name: "consumer_backward: a consumer read an offset again",
			hist: func(t *testing.T, h []Op, f Final) []Op {
				i := chkOpIndex(t, h, chkIsRead(chkTailProc+2, 2, int64(len(f.Reads[2])-3)))
				return slices.Insert(h, i+1, h[i])
			},
			want: Anomalies{ConsumerBackward: 1},
		},
		{
			name: "replica_loss and replica_diverge: a replica lacks an offset below the HW",
			hist: func(t *testing.T, h []Op, f Final) []Op {
				rl := &f.Replicas[1][2]
				rl.Recs = slices.Delete(rl.Recs, 3, 4)
				rl.Raw = chkRaw(rl.Recs)
				return h
			},
			want: Anomalies{ReplicaLoss: 1, ReplicaDiverge: 1},
		},
		{
			name: "replica_loss, replica_diverge and inconsistent: a replica holds another value",
			hist: func(t *testing.T, h []Op, f Final) []Op {
				rl := &f.Replicas[1][0]
				rl.Recs[7].Value = chkInfoNotInLog(t, h, f)
				rl.Raw = chkRaw(rl.Recs)
				return h
			},
			want: Anomalies{ReplicaLoss: 1, ReplicaDiverge: 1, Inconsistent: 1},
		},
		{
			name: "replica_diverge: one replica's bytes differ",
			hist: func(t *testing.T, h []Op, f Final) []Op {
				f.Replicas[2][1].Raw[100] ^= 1
				return h
			},
			want: Anomalies{ReplicaDiverge: 1},
		},
		{
			name: "hw_regression: a poll saw the HW go down",
			hist: func(t *testing.T, h []Op, f Final) []Op {
				i := chkOpIndex(t, h, func(op Op) bool { return op.F == FHW && op.Partition == 1 && op.Offset > 10 })
				low := h[i]
				low.Offset -= 3
				return slices.Insert(h, i+1, low)
			},
			want: Anomalies{HWRegression: 1},
		},
		{
			name: "hw_regression: the final HW is below a polled one",
			hist: func(t *testing.T, h []Op, f Final) []Op {
				f.HW[1]--
				return h
			},
			want: Anomalies{HWRegression: 1},
		},
		{
			name: "epoch_order: the final read's last record has an older epoch",
			hist: func(t *testing.T, h []Op, f Final) []Op {
				f.Reads[0][len(f.Reads[0])-1].Epoch = 1
				return h
			},
			// Its ack named the epoch the log held before the plant.
			want: Anomalies{EpochOrder: 1, AckEpoch: 1},
		},
		{
			name: "epoch_order: a replica's record has an older epoch",
			hist: func(t *testing.T, h []Op, f Final) []Op {
				recs := f.Replicas[2][0].Recs
				recs[len(recs)-5].Epoch = 0
				return h
			},
			want: Anomalies{EpochOrder: 1},
		},
		{
			name: "ack_epoch: an ack names an older epoch than the log's record",
			hist: func(t *testing.T, h []Op, f Final) []Op {
				for i := range h {
					if h[i].F == FSend && h[i].Type == OK && h[i].Partition == 1 && h[i].AckEpoch != nil && *h[i].AckEpoch > 0 {
						old := *h[i].AckEpoch - 1
						h[i].AckEpoch = &old
						return h
					}
				}
				t.Fatal("no ok send with an epoch above 0 in partition 1")
				return h
			},
			want: Anomalies{AckEpoch: 1},
		},
		{
			name: "epoch_order: a consumer read an older epoch",
			hist: func(t *testing.T, h []Op, f Final) []Op {
				i := chkOpIndex(t, h, chkIsRead(chkTailProc+1, 1, int64(len(f.Reads[1])-1)))
				h[i].Epoch = 1
				return h
			},
			want: Anomalies{EpochOrder: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := chkNewModel(chkProducers, chkPartitions, chkRounds)
			if tc.model != nil {
				tc.model(t, m)
			}
			h, f := m.render()
			if tc.hist != nil {
				h = tc.hist(t, h, f)
			}
			res := Check(h, f, CheckOptions{MaxExamples: 3})
			if res.Anomalies != tc.want {
				t.Fatalf("anomalies\n got %+v\nwant %+v\nexamples: %v", res.Anomalies, tc.want, res.Examples)
			}
			if res.Valid() != (tc.want.Total() == 0) {
				t.Errorf("Valid() = %v with %d anomalies", res.Valid(), tc.want.Total())
			}
			for kind, ex := range res.Examples {
				if len(ex) == 0 || len(ex) > 3 {
					t.Errorf("%d examples of %s, want 1..3", len(ex), kind)
				}
			}
			if tc.want.Total() > 0 && len(res.Examples) == 0 {
				t.Errorf("no examples for %+v", res.Anomalies)
			}
			t.Logf("examples: %v", res.Examples)
		})
	}
}

// chkInfoNotInLog returns the value of an indeterminate send that is in no
// final read.
func chkInfoNotInLog(t *testing.T, h []Op, f Final) uint64 {
	t.Helper()
	in := map[uint64]bool{}
	for _, log := range f.Reads {
		for _, r := range log {
			in[r.Value] = true
		}
	}
	for _, op := range h {
		if op.F == FSend && op.Type == Info && !in[op.Value] {
			return op.Value
		}
	}
	t.Fatal("no indeterminate send outside the logs")
	return 0
}

func TestCheckSendPairing(t *testing.T) {
	send := func(proc int, typ OpType, v uint64, off int64) Op {
		return Op{Process: proc, Type: typ, F: FSend, Partition: 0, Value: v, Offset: off}
	}
	final := Final{Reads: map[int32][]Rec{0: {{Offset: 0, Value: 1}, {Offset: 1, Value: 2}}}, HW: map[int32]int64{0: 2}}
	tests := []struct {
		name                                         string
		h                                            []Op
		attempted, acked, failed, indeterminate, bad int
	}{
		{
			name: "completions pair by process, not by order",
			h: []Op{send(1, Invoke, 1, 0), send(2, Invoke, 2, 0), send(2, OK, 0, 1), send(1, OK, 0, 0),
				send(3, Invoke, 3, 0), send(3, Fail, 3, 0)},
			attempted: 3, acked: 2, failed: 1,
		},
		{
			name:      "an invoke followed by another of the same process never completed",
			h:         []Op{send(1, Invoke, 1, 0), send(1, Invoke, 2, 0), send(1, OK, 0, 1), send(4, Invoke, 5, 0)},
			attempted: 3, acked: 1, indeterminate: 2,
		},
		{
			name:      "a process that issues again after info",
			h:         []Op{send(1, Invoke, 1, 0), send(1, Info, 1, 0), send(1, Invoke, 2, 0), send(1, OK, 2, 1)},
			attempted: 2, acked: 1, indeterminate: 1,
		},
		{
			name:      "a completion without an invoke is a send of its own",
			h:         []Op{send(1, OK, 1, 0), send(2, Invoke, 2, 0), send(2, OK, 2, 1)},
			attempted: 2, acked: 2,
		},
		{
			// The orphan ok of value 9 at offset 0: offset 0 holds 1 (inconsistent), 9 is nowhere (lost).
			name:      "an orphan ok is checked like any ack",
			h:         []Op{send(1, Invoke, 1, 0), send(1, Info, 0, 0), send(2, OK, 9, 0), send(3, Invoke, 2, 0), send(3, OK, 2, 1)},
			attempted: 3, acked: 2, indeterminate: 1, bad: 2,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := Check(tc.h, final, CheckOptions{})
			if res.Attempted != tc.attempted || res.Acked != tc.acked || res.Failed != tc.failed || res.Indeterminate != tc.indeterminate {
				t.Errorf("attempted/acked/failed/indeterminate = %d/%d/%d/%d, want %d/%d/%d/%d",
					res.Attempted, res.Acked, res.Failed, res.Indeterminate, tc.attempted, tc.acked, tc.failed, tc.indeterminate)
			}
			if res.Anomalies.Total() != tc.bad {
				t.Errorf("anomalies %+v, want %d in all\nexamples: %v", res.Anomalies, tc.bad, res.Examples)
			}
		})
	}
}

func TestCheckLiveness(t *testing.T) {
	const step, latency = 10 * time.Millisecond, 2 * time.Millisecond
	outage := func(p int32, from, to time.Duration) func(time.Duration) OpType {
		return func(inv time.Duration) OpType {
			if inv >= from && inv < to {
				return Fail
			}
			return OK
		}
	}
	// Partition 0 is down (every send fails) from 1 s to 3 s; partition
	// 1 is healthy, its sends 5 ms after partition 0's; partition 2 fails
	// from 2 s on and never comes back.
	build := func(parts map[int32]func(time.Duration) OpType, offsetOf map[int32]time.Duration) []Op {
		var h []Op
		off := map[int32]int64{}
		for i := range 400 {
			for _, p := range chkSortedKeys(parts) {
				inv := time.Duration(i)*step + offsetOf[p]
				proc := int(p)
				v := ValueID(int(p), uint32(i))
				h = append(h, Op{Time: inv, Process: proc, Type: Invoke, F: FSend, Partition: p, Value: v, Producer: int(p)})
				done := Op{Time: inv + latency, Process: proc, Type: parts[p](inv), F: FSend, Partition: p, Value: v, Producer: int(p)}
				if done.Type == OK {
					done.Offset = off[p]
					off[p]++
				}
				h = append(h, done)
			}
		}
		slices.SortStableFunc(h, func(a, b Op) int { return int(a.Time - b.Time) })
		return h
	}
	tests := []struct {
		name          string
		parts         map[int32]func(time.Duration) OpType
		offsets       map[int32]time.Duration
		healAt        time.Duration
		wantUnavail   map[int32]time.Duration
		wantMax       time.Duration
		wantRecovered time.Duration
	}{
		{
			name:          "healthy",
			parts:         map[int32]func(time.Duration) OpType{0: outage(0, 0, 0)},
			wantUnavail:   map[int32]time.Duration{0: latency},
			wantMax:       latency,
			wantRecovered: latency,
		},
		{
			name:  "a two-second outage on one partition",
			parts: map[int32]func(time.Duration) OpType{0: outage(0, time.Second, 3*time.Second), 1: outage(1, 0, 0)},
			// Partition 1 sends 5 ms later: its first ok after the heal
			// completes at 3.007 s.
			offsets: map[int32]time.Duration{1: 5 * time.Millisecond},
			healAt:  3 * time.Second,
			// From the first failed invoke (1 s) to the first ok (3.002 s).
			wantUnavail:   map[int32]time.Duration{0: 2*time.Second + latency, 1: latency},
			wantMax:       2*time.Second + latency,
			wantRecovered: 7 * time.Millisecond,
		},
		{
			name:  "a partition that never recovers",
			parts: map[int32]func(time.Duration) OpType{0: outage(0, 0, 0), 2: outage(2, 2*time.Second, time.Hour)},
			// Partition 2's last ok completes at 1.992 s; its failures run
			// from 2 s to the last completion at 3.992 s.
			healAt:        3 * time.Second,
			wantUnavail:   map[int32]time.Duration{0: latency, 2: 2*time.Second - step + latency},
			wantMax:       2*time.Second - step + latency,
			wantRecovered: -1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := build(tc.parts, tc.offsets)
			res := Check(h, Final{}, CheckOptions{HealAt: tc.healAt})
			if !maps.Equal(res.Unavailable, tc.wantUnavail) {
				t.Errorf("Unavailable = %v, want %v", res.Unavailable, tc.wantUnavail)
			}
			if res.MaxUnavailable != tc.wantMax {
				t.Errorf("MaxUnavailable = %v, want %v", res.MaxUnavailable, tc.wantMax)
			}
			if res.RecoveredAfterHeal != tc.wantRecovered {
				t.Errorf("RecoveredAfterHeal = %v, want %v", res.RecoveredAfterHeal, tc.wantRecovered)
			}
		})
	}
}

// BenchmarkCheck judges a clean synthetic run of about 500k ops.
func BenchmarkCheck(b *testing.B) {
	m := chkNewModel(8, 6, 19000)
	h, f := m.render()
	for b.Loop() {
		if res := Check(h, f, CheckOptions{}); !res.Valid() {
			b.Fatalf("anomalies: %+v", res.Anomalies)
		}
	}
	b.ReportMetric(float64(len(h)), "ops")
}

// Every fault a scenario can pick has an action that injects it.
func TestEveryScenarioFaultHasAnAction(t *testing.T) {
	for name, faults := range Scenarios {
		for _, f := range faults {
			if _, ok := faultActions[f]; !ok {
				t.Errorf("scenario %s: fault %q has no action", name, f)
			}
		}
	}
}

package chaos

import (
	"slices"
	"testing"
)

// keyModel builds a synthetic run of the key workload on one partition:
// every update reads its key (GetKey), then appends on the key's last
// offset, and the final read and the final GetKey answers agree with the
// history. Test cases then plant an anomaly.
type keyModel struct {
	h    []Op
	recs []KeyRec
	last map[string]KeyRec
	proc int
	id   uint64
}

func newKeyModel() *keyModel { return &keyModel{last: map[string]KeyRec{}, proc: 1000} }

// read records GetKey answering key's last record.
func (m *keyModel) read(key string) KeyUpdate {
	op := Op{Process: 1, Type: OK, F: FKeyRead, Offset: -1, Update: &KeyUpdate{Key: key}, Topic: "chaos-keys"}
	if r, ok := m.last[key]; ok {
		op.Offset, op.Update = r.Offset, &r.Update
	}
	m.h = append(m.h, op)
	return *op.Update
}

// update reads key and attempts its next update: outcome "" never
// completes; appended says whether the record lands in the log.
func (m *keyModel) update(key string, outcome OpType, appended bool) KeyUpdate {
	cur := m.read(key)
	prev := int64(-1)
	if r, ok := m.last[key]; ok {
		prev = r.Offset
	}
	m.id++
	m.proc++
	u := KeyUpdate{ID: m.id, Key: key, Prev: prev, N: cur.N + 1}
	m.h = append(m.h, Op{Process: m.proc, Type: Invoke, F: FKeyUpdate, Value: u.ID, Update: &u, Offset: -1, Topic: "chaos-keys"})
	off := int64(-1)
	if appended {
		off = int64(len(m.recs))
		r := KeyRec{Offset: off, Update: u}
		m.recs = append(m.recs, r)
		m.last[key] = r
	}
	if outcome != "" {
		done := Op{Process: m.proc, Type: outcome, F: FKeyUpdate, Value: u.ID, Update: &u, Offset: -1, Topic: "chaos-keys"}
		if outcome == OK {
			done.Offset = off
		}
		m.h = append(m.h, done)
	}
	return u
}

// ack appends an acknowledged update based on prev (not necessarily the
// key's last record), at the end of the log when appended; it returns
// its offset (or where it was acknowledged).
func (m *keyModel) ack(key string, prev int64, n uint32, appended bool) KeyUpdate {
	m.id++
	m.proc++
	u := KeyUpdate{ID: m.id, Key: key, Prev: prev, N: n}
	off := int64(len(m.recs))
	m.h = append(m.h, Op{Process: m.proc, Type: Invoke, F: FKeyUpdate, Value: u.ID, Update: &u, Offset: -1, Topic: "chaos-keys"},
		Op{Process: m.proc, Type: OK, F: FKeyUpdate, Value: u.ID, Update: &u, Offset: off, Topic: "chaos-keys"})
	if appended {
		r := KeyRec{Offset: off, Update: u}
		m.recs = append(m.recs, r)
		m.last[key] = r
	}
	return u
}

// final is the key topic as read back: the log and every key's last
// record.
func (m *keyModel) final() Final {
	kf := &KeysFinal{Topic: "chaos-keys", Reads: map[int32][]KeyRec{0: slices.Clone(m.recs)},
		HW: map[int32]int64{0: int64(len(m.recs))}, Latest: map[string]KeyRec{}}
	for _, k := range []string{"a", "b", "c"} {
		kf.Latest[k] = KeyRec{Offset: -1, Update: KeyUpdate{Key: k}}
		if r, ok := m.last[k]; ok {
			kf.Latest[k] = r
		}
	}
	return Final{Keys: []*KeysFinal{kf}}
}

// compacted is the final read after a cleaner pass over the first half of
// the log: there only each key's last record of that half stays.
func (m *keyModel) compacted() Final {
	f := m.final()
	kf := f.Keys[0]
	kf.Compacted = true
	half := len(m.recs) / 2
	var kept []KeyRec
	for i, r := range m.recs {
		superseded := i < half && slices.ContainsFunc(m.recs[i+1:half], func(o KeyRec) bool { return o.Update.Key == r.Update.Key })
		if !superseded {
			kept = append(kept, r)
		}
	}
	kf.Reads[0] = kept
	return f
}

// cleanKeyRun: a, b and c updated in turn, with a refused update (a
// mismatch, retried), an indeterminate update that landed and one that
// did not, and one that never completed.
func cleanKeyRun() *keyModel {
	m := newKeyModel()
	for i := range 4 {
		m.update("a", OK, true)
		m.update("b", OK, true)
		if i == 1 {
			m.update("a", Fail, false) // lost the race: read again
			m.update("a", Info, true)  // landed, answer lost
			m.update("b", Info, false) // did not land
			m.update("c", "", false)   // never answered
		}
		m.update("a", OK, true)
	}
	m.update("c", OK, true)
	return m
}

func TestCheckKeys(t *testing.T) {
	tests := []struct {
		name  string
		plant func(m *keyModel, f *Final)
		want  Anomalies
	}{
		{name: "clean"},
		{
			// Two writers read a at the same record and both were told
			// their update was appended; the first one's record is gone
			// (truncated), the second one's stands on the same
			// predecessor: the log alone looks linear.
			name: "lost update: an acked update gone, another acked on the same predecessor",
			plant: func(m *keyModel, f *Final) {
				r := m.last["a"]
				m.ack("a", r.Offset, r.Update.N+1, false)
				m.ack("a", r.Offset, r.Update.N+1, true)
				*f = m.final()
			},
			want: Anomalies{KeyLostUpdate: 1, KeyFork: 1},
		},
		{
			// The broker let a stale condition through: both updates are
			// in the log, the second one not based on the first.
			name: "forked chain: two acked updates on one predecessor, both in the log",
			plant: func(m *keyModel, f *Final) {
				r := m.last["b"]
				m.ack("b", r.Offset, r.Update.N+1, true)
				m.ack("b", r.Offset, r.Update.N+1, true)
				*f = m.final()
			},
			want: Anomalies{KeyFork: 2},
		},
		{
			name: "lost update: a key's last acked update is gone, GetKey answers the one before",
			plant: func(m *keyModel, f *Final) {
				r := m.last["c"]
				m.ack("c", r.Offset, r.Update.N+1, false)
				*f = m.final()
			},
			want: Anomalies{KeyLostUpdate: 1},
		},
		{
			name: "aborted: a refused update is in the log",
			plant: func(m *keyModel, f *Final) {
				u := m.update("b", Fail, false)
				m.recs = append(m.recs, KeyRec{Offset: int64(len(m.recs)), Update: u})
				m.last["b"] = m.recs[len(m.recs)-1]
				*f = m.final()
			},
			want: Anomalies{KeyAborted: 1},
		},
		{
			name: "unexpected: a corrupt record and one nobody attempted",
			plant: func(m *keyModel, f *Final) {
				recs := f.Keys[0].Reads[0]
				recs[3].Corrupt = true
				f.Keys[0].Reads[0] = append(recs, KeyRec{Offset: int64(len(recs)), Update: KeyUpdate{ID: 999, Key: "zz", Prev: -1, N: 1}})
			},
			// The corrupt record was an acknowledged update of a: it is
			// lost, and a's next record no longer follows the one before
			// it in the chain.
			want: Anomalies{KeyUnexpected: 2, KeyLostUpdate: 1, KeyFork: 1},
		},
		{
			name: "inconsistent: GetKey answered a record the final read does not hold there",
			plant: func(m *keyModel, f *Final) {
				i := slices.IndexFunc(m.h, func(op Op) bool { return op.F == FKeyRead && op.Offset == 2 })
				u := *m.h[i].Update
				u.ID, u.N = m.recs[4].Update.ID, m.recs[4].Update.N
				u.Prev, u.Key = m.recs[4].Update.Prev, m.recs[4].Update.Key
				m.h[i].Update = &u
			},
			want: Anomalies{KeyInconsistent: 1},
		},
		{
			name: "latest: after the run GetKey answers an older record of a",
			plant: func(m *keyModel, f *Final) {
				i := slices.IndexFunc(m.recs, func(r KeyRec) bool { return r.Update.Key == "a" })
				f.Keys[0].Latest["a"] = m.recs[i]
			},
			want: Anomalies{KeyLatest: 1},
		},
		{
			name: "a gap in a topic that is not compacted: a's first record is gone",
			plant: func(m *keyModel, f *Final) {
				f.Keys[0].Reads[0] = f.Keys[0].Reads[0][1:]
			},
			// Its ack is lost, a's next record is based on nothing there,
			// and GetKey answered it once.
			want: Anomalies{KeyLostUpdate: 1, KeyFork: 1, KeyInconsistent: 1},
		},
		{
			name: "latest: after the run GetKey says c has no record",
			plant: func(m *keyModel, f *Final) {
				f.Keys[0].Latest["c"] = KeyRec{Offset: -1, Update: KeyUpdate{Key: "c"}}
			},
			want: Anomalies{KeyLatest: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := cleanKeyRun()
			f := m.final()
			if tc.plant != nil {
				tc.plant(m, &f)
			}
			res := Check(m.h, f, CheckOptions{MaxExamples: 20})
			if res.Anomalies != tc.want {
				t.Errorf("anomalies %+v, want %+v\nexamples %v", res.Anomalies, tc.want, res.Examples)
			}
			if tc.want.Total() > 0 && len(res.Examples) == 0 {
				t.Error("no example of the anomaly")
			}
			if res.Valid() != (tc.want.Total() == 0) {
				t.Errorf("Valid() = %v with %d anomalies", res.Valid(), tc.want.Total())
			}
		})
	}
}

// The figures of the clean run: every outcome counted once.
func TestCheckKeysStats(t *testing.T) {
	m := cleanKeyRun()
	res := Check(m.h, m.final(), CheckOptions{})
	want := []KeyStats{{Topic: "chaos-keys", Attempted: 17, Acked: 13, Refused: 1, Indeterminate: 3, Reads: 17, Records: 14, Keys: 3, LongestChain: 9}}
	if !slices.Equal(res.Keys, want) {
		t.Errorf("stats %+v, want %+v", res.Keys, want)
	}
}

// A key update decodes only under its own key, and damage is detected.
func TestKeyUpdateEncoding(t *testing.T) {
	u := KeyUpdate{ID: ValueID(7, 3), Key: "key-04", Prev: 41, N: 9}
	b := EncodeKeyUpdate(u)
	if got, err := DecodeKeyUpdate([]byte("key-04"), b); err != nil || got != u {
		t.Fatalf("decode = %+v, %v; want %+v", got, err, u)
	}
	none := KeyUpdate{ID: 1, Key: "key-00", Prev: -1, N: 1}
	if got, err := DecodeKeyUpdate([]byte("key-00"), EncodeKeyUpdate(none)); err != nil || got != none {
		t.Fatalf("decode = %+v, %v; want %+v", got, err, none)
	}
	if _, err := DecodeKeyUpdate([]byte("key-05"), b); err == nil {
		t.Error("decoded under another key")
	}
	for i := range b {
		d := slices.Clone(b)
		d[i] ^= 0x10
		if _, err := DecodeKeyUpdate([]byte("key-04"), d); err == nil {
			t.Errorf("a bit flip at byte %d went unnoticed", i)
		}
	}
	if _, err := DecodeKeyUpdate([]byte("key-04"), b[:20]); err == nil {
		t.Error("a short value decoded")
	}
}

// On a compacted topic, records a later record of their key supersedes
// may be gone; the latest acknowledged update of every key may not.
func TestCheckKeysCompacted(t *testing.T) {
	tests := []struct {
		name  string
		plant func(m *keyModel) Final
		want  Anomalies
	}{
		{name: "clean", plant: func(m *keyModel) Final { return m.compacted() }},
		{
			name: "the cleaner dropped b's latest record and kept the one before",
			plant: func(m *keyModel) Final {
				f := m.compacted()
				kf := f.Keys[0]
				i := slices.IndexFunc(kf.Reads[0], func(r KeyRec) bool { return r == m.last["b"] })
				kf.Reads[0] = slices.Delete(kf.Reads[0], i, i+1)
				j := i - 1
				for kf.Reads[0][j].Update.Key != "b" {
					j--
				}
				kf.Latest["b"] = kf.Reads[0][j]
				return f
			},
			want: Anomalies{KeyLostUpdate: 1, KeyCompactedLatest: 1},
		},
		{
			name: "c's only record is gone",
			plant: func(m *keyModel) Final {
				f := m.compacted()
				kf := f.Keys[0]
				kf.Reads[0] = slices.DeleteFunc(kf.Reads[0], func(r KeyRec) bool { return r.Update.Key == "c" })
				kf.Latest["c"] = KeyRec{Offset: -1, Update: KeyUpdate{Key: "c"}}
				return f
			},
			want: Anomalies{KeyLostUpdate: 1, KeyCompactedLatest: 1},
		},
		{
			name: "a record of a based on a record of c that is there",
			plant: func(m *keyModel) Final {
				m.ack("a", m.last["c"].Offset, m.last["a"].Update.N+3, true)
				return m.compacted()
			},
			want: Anomalies{KeyFork: 1},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := cleanKeyRun()
			f := tc.plant(m)
			res := Check(m.h, f, CheckOptions{MaxExamples: 20})
			if res.Anomalies != tc.want {
				t.Errorf("anomalies %+v, want %+v\nexamples %v", res.Anomalies, tc.want, res.Examples)
			}
			if res.Keys[0].Removed == 0 {
				t.Error("the compacted read removed nothing")
			}
		})
	}
}

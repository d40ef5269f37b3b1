package chaos

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"time"
)

// The per-key checks of the key topic (keys.go, G14). Each record is a key's
// update conditioned on the key's last offset (Prev) and numbered (N), so
// the final read of a partition holds, for every key, the chain of its
// updates: with no lost update and no conditional append let through on a
// stale condition, each record of a key names the offset of the key's
// record before it (the first names -1) and counts one more.
//
//   - KeyLostUpdate: an acknowledged update that is not in the final read
//     at its acknowledged offset (not in the key's final chain).
//   - KeyFork: two acknowledged updates of a key based on the same
//     predecessor, or a record of the final read whose Prev or N is not
//     that of the key's record before it (the chain forks or skips).
//   - KeyAborted: an update refused definitely (a key offset mismatch)
//     found in the final read.
//   - KeyUnexpected: a record of the key topic (final read or GetKey) that
//     does not decode, or that no writer attempted as it reads.
//   - KeyInconsistent: GetKey answered a record that the final read does
//     not hold at that offset.
//   - KeyLatest: after the final read, GetKey's answer for a key is not the
//     key's last record in the final read.

// KeyStats are the key workload's figures.
type KeyStats struct {
	// Updates attempted, by outcome (an invoke with no completion counts
	// as indeterminate); Refused are definite refusals, nearly all key
	// offset mismatches that the writer retried after reading the key.
	Attempted, Acked, Refused, Indeterminate int
	Reads                                    int `json:"reads"`   // GetKey answers during the run
	Records                                  int `json:"records"` // records in the final read of the key topic
	Keys                                     int `json:"keys"`    // keys with a record
	// LongestChain is the most updates of one key.
	LongestChain int `json:"longest_chain"`
}

// keyAttempt is one conditional update: its invoke and completion.
type keyAttempt struct {
	u         KeyUpdate
	outcome   OpType // OK, Fail, Info; "" when it never completed
	part      int32
	offset    int64 // acknowledged offset (OK)
	inv, done time.Duration
}

type keyChk struct {
	c        *chkState
	attempts []keyAttempt
	byID     map[uint64]int // first attempt of an ID
	final    map[chkPO]KeyRec
	corrupt  map[chkPO]bool      // final read records that do not decode
	chains   map[string][]KeyRec // per key, in offset order
}

// checkKeys runs the per-key checks when the run read the key topic back.
func (c *chkState) checkKeys(h []Op) {
	k := &keyChk{c: c, byID: map[uint64]int{}, final: map[chkPO]KeyRec{}, corrupt: map[chkPO]bool{}, chains: map[string][]KeyRec{}}
	k.pair(h)
	if c.f.Keys == nil {
		return
	}
	k.indexFinal()
	k.checkChains()
	k.checkAcks()
	k.checkReads(h)
	k.checkLatest()
}

// pair pairs each key update's invoke with its completion (the next
// key-update op of its process) and counts outcomes.
func (k *keyChk) pair(h []Op) {
	pending := map[int]int{} // process -> index in attempts
	for i := range h {
		op := &h[i]
		if op.F != FKeyUpdate || op.Update == nil {
			continue
		}
		j, ok := pending[op.Process]
		if op.Type == Invoke || !ok {
			k.attempts = append(k.attempts, keyAttempt{u: *op.Update, inv: op.Time, offset: -1})
			j = len(k.attempts) - 1
			if _, seen := k.byID[op.Update.ID]; !seen {
				k.byID[op.Update.ID] = j
			}
		}
		if op.Type == Invoke {
			pending[op.Process] = j
			continue
		}
		delete(pending, op.Process)
		a := &k.attempts[j]
		a.outcome, a.done, a.part = op.Type, op.Time, op.Partition
		if op.Type == OK {
			a.offset = op.Offset
		}
	}
	st := &k.c.res.Keys
	st.Attempted = len(k.attempts)
	for _, a := range k.attempts {
		switch a.outcome {
		case OK:
			st.Acked++
		case Fail:
			st.Refused++
		default:
			st.Indeterminate++
		}
	}
}

// indexFinal checks each record of the final read on its own and builds
// the keys' chains.
func (k *keyChk) indexFinal() {
	c, kf := k.c, k.c.f.Keys
	for _, p := range chkSortedKeys(kf.Reads) {
		recs := slices.Clone(kf.Reads[p])
		slices.SortStableFunc(recs, func(a, b KeyRec) int { return cmp.Compare(a.Offset, b.Offset) })
		for _, r := range recs {
			c.res.Keys.Records++
			if !k.checkRecord("the final read", p, r) {
				k.corrupt[chkPO{p, r.Offset}] = r.Corrupt
				continue
			}
			k.final[chkPO{p, r.Offset}] = r
			k.chains[r.Update.Key] = append(k.chains[r.Update.Key], r)
		}
	}
	c.res.Keys.Keys = len(k.chains)
	for _, ch := range k.chains {
		c.res.Keys.LongestChain = max(c.res.Keys.LongestChain, len(ch))
	}
}

// checkRecord checks a record read from the key topic against the
// attempts: it decodes, some writer attempted it as it reads, and that
// attempt was not refused. It reports whether the record is usable.
func (k *keyChk) checkRecord(src string, p int32, r KeyRec) bool {
	c := k.c
	if r.Corrupt {
		c.res.Anomalies.KeyUnexpected++
		c.example("key_unexpected", "%s/%d off=%d: %s read a record that does not decode (key %s)", c.f.Keys.Topic, p, r.Offset, src, r.Update.Key)
		return false
	}
	j, ok := k.byID[r.Update.ID]
	if !ok || k.attempts[j].u != r.Update {
		c.res.Anomalies.KeyUnexpected++
		c.example("key_unexpected", "%s/%d off=%d: %s read %s, which no writer attempted", c.f.Keys.Topic, p, r.Offset, src, keyUpdateString(r.Update))
		return false
	}
	if a := k.attempts[j]; a.outcome == Fail {
		c.res.Anomalies.KeyAborted++
		c.example("key_aborted", "%s/%d off=%d: %s read %s, refused at %v", c.f.Keys.Topic, p, r.Offset, src, keyUpdateString(r.Update), a.done)
	}
	return true
}

// checkChains: along each key's records in the final read, each names the
// offset and count of the one before it.
func (k *keyChk) checkChains() {
	c := k.c
	for _, key := range slices.Sorted(maps.Keys(k.chains)) {
		prev, n := int64(-1), uint32(0)
		for _, r := range k.chains[key] {
			if r.Update.Prev != prev || r.Update.N != n+1 {
				c.res.Anomalies.KeyFork++
				c.example("key_fork", "key %s off=%d: %s, but the key's record before it in the final read is at off=%d (update %d)",
					key, r.Offset, keyUpdateString(r.Update), prev, n)
			}
			prev, n = r.Offset, r.Update.N
		}
	}
}

// checkAcks: every acknowledged update is in the final read at its
// offset, and no two acknowledged updates of a key had the same
// predecessor.
func (k *keyChk) checkAcks() {
	c := k.c
	type base struct {
		key  string
		prev int64
	}
	firstOn := map[base]*keyAttempt{}
	for i := range k.attempts {
		a := &k.attempts[i]
		if a.outcome != OK {
			continue
		}
		if r, ok := k.final[chkPO{a.part, a.offset}]; !ok || r.Update.ID != a.u.ID {
			c.res.Anomalies.KeyLostUpdate++
			c.example("key_lost_update", "%s acked at %s/%d off=%d (invoked %v, acked %v) is not in the key's final chain%s",
				keyUpdateString(a.u), c.f.Keys.Topic, a.part, a.offset, a.inv, a.done, k.whereIs(a.u.ID))
		}
		b := base{a.u.Key, a.u.Prev}
		if o := firstOn[b]; o != nil {
			c.res.Anomalies.KeyFork++
			c.example("key_fork", "key %s: %s acked at off=%d (acked %v) and %s acked at off=%d (acked %v) were both based on off=%d",
				a.u.Key, keyUpdateString(o.u), o.offset, o.done, keyUpdateString(a.u), a.offset, a.done, a.u.Prev)
			continue
		}
		firstOn[b] = a
	}
}

// whereIs says where the final read holds update id, if anywhere.
func (k *keyChk) whereIs(id uint64) string {
	for _, po := range slices.SortedFunc(maps.Keys(k.final), func(a, b chkPO) int {
		return cmp.Or(cmp.Compare(a.p, b.p), cmp.Compare(a.o, b.o))
	}) {
		if k.final[po].Update.ID == id {
			return fmt.Sprintf(" (it is at %d/%d)", po.p, po.o)
		}
	}
	return ""
}

// checkReads: every record GetKey answered during the run is in the final
// read at its offset.
func (k *keyChk) checkReads(h []Op) {
	c := k.c
	for i := range h {
		op := &h[i]
		if op.F != FKeyRead || op.Type != OK || op.Update == nil {
			continue
		}
		c.res.Keys.Reads++
		if op.Offset < 0 {
			continue
		}
		src := fmt.Sprintf("GetKey (at %v)", op.Time)
		r := KeyRec{Offset: op.Offset, Update: *op.Update, Corrupt: op.Corrupt}
		if !k.checkRecord(src, op.Partition, r) || k.corrupt[chkPO{op.Partition, op.Offset}] {
			continue // counted as unexpected
		}
		if f, ok := k.final[chkPO{op.Partition, op.Offset}]; !ok || f.Update != r.Update {
			c.res.Anomalies.KeyInconsistent++
			what := "lacks the offset"
			if ok {
				what = "has " + keyUpdateString(f.Update)
			}
			c.example("key_inconsistent", "%s/%d off=%d: %s answered %s; the final read %s", c.f.Keys.Topic, op.Partition, op.Offset, src, keyUpdateString(r.Update), what)
		}
	}
}

// checkLatest: each key's latest record, as GetKey answered after the
// final read, is the key's last record in the final read.
func (k *keyChk) checkLatest() {
	c, kf := k.c, k.c.f.Keys
	for _, key := range slices.Sorted(maps.Keys(kf.Latest)) {
		got := kf.Latest[key]
		want := KeyRec{Offset: -1, Update: KeyUpdate{Key: key}}
		if ch := k.chains[key]; len(ch) > 0 {
			want = ch[len(ch)-1]
		}
		if got.Offset != want.Offset || got.Corrupt || (want.Offset >= 0 && got.Update != want.Update) {
			c.res.Anomalies.KeyLatest++
			c.example("key_latest", "key %s: GetKey after the run answered off=%d %s; the key's last record in the final read is off=%d %s",
				key, got.Offset, keyUpdateString(got.Update), want.Offset, keyUpdateString(want.Update))
		}
	}
}

func keyUpdateString(u KeyUpdate) string {
	if u.ID == 0 && u.N == 0 {
		return "no record of " + u.Key
	}
	return fmt.Sprintf("update %d of %s (id %#x, based on off=%d)", u.N, u.Key, u.ID, u.Prev)
}

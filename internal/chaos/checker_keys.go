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
//   - KeyCompactedLatest (compacted topics): a key whose latest
//     acknowledged update is neither in the read from the beginning nor
//     superseded there by a later record of the key.
//
// On a compacted topic the cleaner removes the records a later record of
// the same key supersedes, so there: an acknowledged update missing from
// the final read is lost only when no later record of its key is there;
// a record may be based on a removed one (Prev not in the read, above the
// key's record before it, and N more than one above); a GetKey answer the
// final read lacks is fine when a later record of the key is there.

// KeyStats are one key topic's figures.
type KeyStats struct {
	Topic     string `json:"topic"`
	Compacted bool   `json:"compacted,omitempty"`
	// Updates attempted, by outcome (an invoke with no completion counts
	// as indeterminate); Refused are definite refusals, nearly all key
	// offset mismatches that the writer retried after reading the key.
	Attempted, Acked, Refused, Indeterminate int
	Reads                                    int `json:"reads"`   // GetKey answers during the run
	Records                                  int `json:"records"` // records in the final read
	// Removed counts the offsets below the high watermark the final read
	// has no record at (a compacted topic's cleaned records).
	Removed int `json:"removed"`
	Keys    int `json:"keys"` // keys with a record
	// LongestChain is the most records of one key in the final read.
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
	kf       *KeysFinal
	st       *KeyStats
	attempts []keyAttempt
	byID     map[uint64]int // first attempt of an ID
	final    map[chkPO]KeyRec
	corrupt  map[chkPO]bool      // final read records that do not decode
	chains   map[string][]KeyRec // per key, in offset order
	keyPart  map[string]int32    // the partition of each key's records
}

// checkKeys runs the per-key checks of every key topic the run read back.
func (c *chkState) checkKeys(h []Op) {
	for _, kf := range c.f.Keys {
		c.res.Keys = append(c.res.Keys, KeyStats{Topic: kf.Topic, Compacted: kf.Compacted})
		k := &keyChk{c: c, kf: kf, st: &c.res.Keys[len(c.res.Keys)-1], byID: map[uint64]int{},
			final: map[chkPO]KeyRec{}, corrupt: map[chkPO]bool{}, chains: map[string][]KeyRec{}, keyPart: map[string]int32{}}
		k.pair(h)
		k.indexFinal()
		k.checkChains()
		k.checkAcks()
		k.checkReads(h)
		k.checkLatest()
	}
}

// pair pairs each of the topic's key updates' invoke with its completion
// (the next key-update op of its process) and counts outcomes.
func (k *keyChk) pair(h []Op) {
	pending := map[int]int{} // process -> index in attempts
	for i := range h {
		op := &h[i]
		if op.F != FKeyUpdate || op.Update == nil || op.Topic != k.kf.Topic {
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
	k.st.Attempted = len(k.attempts)
	for _, a := range k.attempts {
		switch a.outcome {
		case OK:
			k.st.Acked++
		case Fail:
			k.st.Refused++
		default:
			k.st.Indeterminate++
		}
	}
}

// indexFinal checks each record of the final read on its own and builds
// the keys' chains.
func (k *keyChk) indexFinal() {
	for _, p := range chkSortedKeys(k.kf.Reads) {
		recs := slices.Clone(k.kf.Reads[p])
		slices.SortStableFunc(recs, func(a, b KeyRec) int { return cmp.Compare(a.Offset, b.Offset) })
		for _, r := range recs {
			k.st.Records++
			if !k.checkRecord("the final read", p, r) {
				k.corrupt[chkPO{p, r.Offset}] = r.Corrupt
				continue
			}
			k.final[chkPO{p, r.Offset}] = r
			k.chains[r.Update.Key] = append(k.chains[r.Update.Key], r)
			k.keyPart[r.Update.Key] = p
		}
		k.st.Removed += max(0, int(k.kf.HW[p])-len(recs))
	}
	k.st.Keys = len(k.chains)
	for _, ch := range k.chains {
		k.st.LongestChain = max(k.st.LongestChain, len(ch))
	}
}

// checkRecord checks a record read from the key topic against the
// attempts: it decodes, some writer attempted it as it reads, and that
// attempt was not refused. It reports whether the record is usable.
func (k *keyChk) checkRecord(src string, p int32, r KeyRec) bool {
	c := k.c
	if r.Corrupt {
		c.res.Anomalies.KeyUnexpected++
		c.example("key_unexpected", "%s/%d off=%d: %s read a record that does not decode (key %s)", k.kf.Topic, p, r.Offset, src, r.Update.Key)
		return false
	}
	j, ok := k.byID[r.Update.ID]
	if !ok || k.attempts[j].u != r.Update {
		c.res.Anomalies.KeyUnexpected++
		c.example("key_unexpected", "%s/%d off=%d: %s read %s, which no writer attempted", k.kf.Topic, p, r.Offset, src, keyUpdateString(r.Update))
		return false
	}
	if a := k.attempts[j]; a.outcome == Fail {
		c.res.Anomalies.KeyAborted++
		c.example("key_aborted", "%s/%d off=%d: %s read %s, refused at %v", k.kf.Topic, p, r.Offset, src, keyUpdateString(r.Update), a.done)
	}
	return true
}

// checkChains: along each key's records in the final read, each names the
// offset and count of the one before it (on a compacted topic, or of a
// removed record between them).
func (k *keyChk) checkChains() {
	c := k.c
	for _, key := range slices.Sorted(maps.Keys(k.chains)) {
		prev, n := int64(-1), uint32(0)
		for _, r := range k.chains[key] {
			u := r.Update
			ok := u.Prev == prev && u.N == n+1
			if !ok && k.kf.Compacted && u.Prev > prev && u.N > n+1 {
				_, there := k.final[chkPO{k.keyPart[key], u.Prev}]
				ok = !there // based on a record the cleaner removed
			}
			if !ok {
				c.res.Anomalies.KeyFork++
				c.example("key_fork", "%s key %s off=%d: %s, but the key's record before it in the final read is at off=%d (update %d)",
					k.kf.Topic, key, r.Offset, keyUpdateString(u), prev, n)
			}
			prev, n = r.Offset, u.N
		}
	}
}

// checkAcks: every acknowledged update is in the final read at its offset
// (or, compacted, superseded there by a later record of its key), and no
// two acknowledged updates of a key had the same predecessor.
func (k *keyChk) checkAcks() {
	c := k.c
	type base struct {
		key  string
		prev int64
	}
	firstOn := map[base]*keyAttempt{}
	latest := map[string]*keyAttempt{} // the acked update with the highest offset, per key
	for i := range k.attempts {
		a := &k.attempts[i]
		if a.outcome != OK {
			continue
		}
		if l := latest[a.u.Key]; l == nil || a.offset > l.offset {
			latest[a.u.Key] = a
		}
		if !k.kept(a) {
			c.res.Anomalies.KeyLostUpdate++
			c.example("key_lost_update", "%s acked at %s/%d off=%d (invoked %v, acked %v) is not in the key's final chain%s",
				keyUpdateString(a.u), k.kf.Topic, a.part, a.offset, a.inv, a.done, k.whereIs(a.u.ID))
		}
		b := base{a.u.Key, a.u.Prev}
		if o := firstOn[b]; o != nil {
			c.res.Anomalies.KeyFork++
			c.example("key_fork", "%s key %s: %s acked at off=%d (acked %v) and %s acked at off=%d (acked %v) were both based on off=%d",
				k.kf.Topic, a.u.Key, keyUpdateString(o.u), o.offset, o.done, keyUpdateString(a.u), a.offset, a.done, a.u.Prev)
			continue
		}
		firstOn[b] = a
	}
	if !k.kf.Compacted {
		return
	}
	for _, key := range slices.Sorted(maps.Keys(latest)) {
		if a := latest[key]; !k.kept(a) {
			c.res.Anomalies.KeyCompactedLatest++
			c.example("key_compacted_latest", "%s key %s: its latest acknowledged update, %s at off=%d, is neither in the read from the beginning nor superseded there",
				k.kf.Topic, key, keyUpdateString(a.u), a.offset)
		}
	}
}

// kept reports whether acknowledged update a is in the final read at its
// offset, or (compacted topic) the offset is empty and a later record of
// its key is there.
func (k *keyChk) kept(a *keyAttempt) bool {
	po := chkPO{a.part, a.offset}
	if r, ok := k.final[po]; ok || k.corrupt[po] {
		return ok && r.Update.ID == a.u.ID
	}
	return k.kf.Compacted && k.supersededAt(a.u.Key, a.part, a.offset)
}

// supersededAt reports whether key has a record in partition p above off
// in the final read, and none at off (a compacted topic's cleaned record).
func (k *keyChk) supersededAt(key string, p int32, off int64) bool {
	ch := k.chains[key]
	return len(ch) > 0 && ch[len(ch)-1].Offset > off && k.keyPart[key] == p
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
// read at its offset (or, compacted, superseded there).
func (k *keyChk) checkReads(h []Op) {
	c := k.c
	for i := range h {
		op := &h[i]
		if op.F != FKeyRead || op.Type != OK || op.Update == nil || op.Topic != k.kf.Topic {
			continue
		}
		k.st.Reads++
		if op.Offset < 0 {
			continue
		}
		src := fmt.Sprintf("GetKey (at %v)", op.Time)
		r := KeyRec{Offset: op.Offset, Update: *op.Update, Corrupt: op.Corrupt}
		po := chkPO{op.Partition, op.Offset}
		if !k.checkRecord(src, op.Partition, r) || k.corrupt[po] {
			continue // counted as unexpected
		}
		f, ok := k.final[po]
		if ok && f.Update == r.Update || !ok && k.kf.Compacted && k.supersededAt(r.Update.Key, op.Partition, op.Offset) {
			continue
		}
		c.res.Anomalies.KeyInconsistent++
		what := "lacks the offset"
		if ok {
			what = "has " + keyUpdateString(f.Update)
		}
		c.example("key_inconsistent", "%s/%d off=%d: %s answered %s; the final read %s", k.kf.Topic, op.Partition, op.Offset, src, keyUpdateString(r.Update), what)
	}
}

// checkLatest: each key's latest record, as GetKey answered after the
// final read, is the key's last record in the final read.
func (k *keyChk) checkLatest() {
	for _, key := range slices.Sorted(maps.Keys(k.kf.Latest)) {
		got := k.kf.Latest[key]
		want := KeyRec{Offset: -1, Update: KeyUpdate{Key: key}}
		if ch := k.chains[key]; len(ch) > 0 {
			want = ch[len(ch)-1]
		}
		if got.Offset != want.Offset || got.Corrupt || (want.Offset >= 0 && got.Update != want.Update) {
			k.c.res.Anomalies.KeyLatest++
			k.c.example("key_latest", "%s key %s: GetKey after the run answered off=%d %s; the key's last record in the final read is off=%d %s",
				k.kf.Topic, key, got.Offset, keyUpdateString(got.Update), want.Offset, keyUpdateString(want.Update))
		}
	}
}

func keyUpdateString(u KeyUpdate) string {
	if u.ID == 0 && u.N == 0 {
		return "no record of " + u.Key
	}
	return fmt.Sprintf("update %d of %s (id %#x, based on off=%d)", u.N, u.Key, u.ID, u.Prev)
}

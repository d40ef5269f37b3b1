package keyindex

// table is an open-addressing hash table from a non-zero 64-bit hash to an
// offset, with linear probing. A slot is 16 bytes; it grows to twice its
// size when three quarters are used, so a key costs 21–43 bytes.
type table struct {
	hashes []uint64 // 0: empty slot
	offs   []int64
	n      int
}

const minSlots = 16

func newTable(capacity int) *table {
	slots := minSlots
	for slots*3/4 < capacity {
		slots *= 2
	}
	return &table{hashes: make([]uint64, slots), offs: make([]int64, slots)}
}

// slot returns the index of h's slot, or of the empty slot where it would go.
func (t *table) slot(h uint64) int {
	mask := len(t.hashes) - 1
	i := int(mix(h)) & mask
	for t.hashes[i] != 0 && t.hashes[i] != h {
		i = (i + 1) & mask
	}
	return i
}

func (t *table) get(h uint64) (int64, bool) {
	i := t.slot(h)
	return t.offs[i], t.hashes[i] != 0
}

func (t *table) put(h uint64, off int64) {
	i := t.slot(h)
	if t.hashes[i] == 0 {
		if (t.n+1)*4 > len(t.hashes)*3 {
			t.grow()
			i = t.slot(h)
		}
		t.hashes[i] = h
		t.n++
	}
	t.offs[i] = off
}

// del removes h, moving later entries of its probe run back (no tombstones).
func (t *table) del(h uint64) {
	mask := len(t.hashes) - 1
	i := t.slot(h)
	if t.hashes[i] == 0 {
		return
	}
	t.hashes[i] = 0
	t.n--
	for j := (i + 1) & mask; t.hashes[j] != 0; j = (j + 1) & mask {
		hj, oj := t.hashes[j], t.offs[j]
		t.hashes[j] = 0
		k := t.slot(hj)
		t.hashes[k], t.offs[k] = hj, oj
	}
}

func (t *table) grow() {
	old := *t
	*t = *newTable(len(old.hashes)) // capacity*4/3 > current: twice the slots
	for i, h := range old.hashes {
		if h != 0 {
			t.put(h, old.offs[i])
		}
	}
}

// each calls fn for every entry, in slot order.
func (t *table) each(fn func(h uint64, off int64)) {
	for i, h := range t.hashes {
		if h != 0 {
			fn(h, t.offs[i])
		}
	}
}

func (t *table) bytes() int { return len(t.hashes) * 16 }

// mix spreads a hash's bits over the slot index (the hashes come from a
// good hash function, but tests use tiny ones).
func mix(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	return h
}

package group

import "hash/fnv"

// OffsetsTopic is the internal topic holding committed offsets.
const OffsetsTopic = "__consumer_offsets"

// Partition is the __consumer_offsets partition of a group among n: FNV-1a
// (32-bit) of the name's bytes, modulo n. Stable across releases.
func Partition(group string, n int32) int32 {
	if n <= 0 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(group))
	return int32(h.Sum32() % uint32(n))
}

package client

import (
	"math/rand/v2"
)

// Partitioner chooses partitions for records produced without an explicit
// one. The producer asks it once per topic for a TopicPartitioner and
// serialises calls to that TopicPartitioner, so implementations need no
// locking of their own.
type Partitioner interface {
	ForTopic(topic string) TopicPartitioner
}

// TopicPartitioner chooses the partition of one record of one topic.
type TopicPartitioner interface {
	// Partition returns a partition in [0, n) for r, where n is the topic's
	// partition count. A value outside the range fails the record with
	// ErrUnknownPartition.
	Partition(r *Record, n int) int
}

// BatchAwarePartitioner is a TopicPartitioner that wants to know when a
// record would start a new batch on the partition it chose (the open batch
// was sent or is full): the producer then calls OnNewBatch and asks
// Partition again, so a sticky partitioner moves on to another partition
// each time a batch is done (KIP-480).
type BatchAwarePartitioner interface {
	TopicPartitioner
	OnNewBatch()
}

// DefaultPartitioner is the Kafka-compatible default: records with a key
// (including an empty key) go to toPositive(murmur2(key)) % partitions, as
// Kafka's Java client places them, so the same key lands on the same
// partition from either client; records with a nil key stick to one random
// partition until its batch is sent, then move to another. It ignores
// Record.Partition.
func DefaultPartitioner() Partitioner { return defaultPartitioner{} }

type defaultPartitioner struct{}

func (defaultPartitioner) ForTopic(string) TopicPartitioner {
	return &stickyKeyPartitioner{sticky: newSticky()}
}

type stickyKeyPartitioner struct{ sticky }

func (s *stickyKeyPartitioner) Partition(r *Record, n int) int {
	if r.Key != nil {
		return KeyPartition(r.Key, n)
	}
	return s.pick(n)
}

// sticky is the state of a sticky choice: the current partition, and the
// previous one so that a switch really moves.
type sticky struct {
	cur  int // -1: choose on the next record
	last int
}

func newSticky() sticky { return sticky{cur: -1, last: -1} }

func (s *sticky) pick(n int) int {
	if s.cur >= 0 && s.cur < n {
		return s.cur
	}
	p := rand.IntN(n)
	if n > 1 && p == s.last {
		p = (p + 1 + rand.IntN(n-1)) % n
	}
	s.cur = p
	return p
}

// OnNewBatch moves the sticky partition to a different one, at random, on
// the next record.
func (s *sticky) OnNewBatch() {
	if s.cur >= 0 {
		s.last = s.cur
	}
	s.cur = -1
}

// StickyPartitioner ignores keys: every record sticks to one random
// partition until its batch is sent.
func StickyPartitioner() Partitioner { return stickyOnly{} }

type stickyOnly struct{}

func (stickyOnly) ForTopic(string) TopicPartitioner { return &stickyTopic{sticky: newSticky()} }

type stickyTopic struct{ sticky }

func (s *stickyTopic) Partition(_ *Record, n int) int { return s.pick(n) }

// ManualPartitioner sends every record to its Record.Partition.
func ManualPartitioner() Partitioner { return manual{} }

type manual struct{}

func (manual) ForTopic(string) TopicPartitioner { return manual{} }
func (manual) Partition(r *Record, _ int) int   { return int(r.Partition) }

// ExplicitPartitioner sends a record whose Partition is set (>= 0) there, and
// asks fallback for records whose Partition is AnyPartition (or any other
// negative value). Use it when some records name their partition and others
// do not; remember that the zero Record.Partition is partition 0.
func ExplicitPartitioner(fallback Partitioner) Partitioner { return explicit{fallback} }

type explicit struct{ fallback Partitioner }

func (e explicit) ForTopic(t string) TopicPartitioner {
	return &explicitTopic{fb: e.fallback.ForTopic(t)}
}

type explicitTopic struct{ fb TopicPartitioner }

func (e *explicitTopic) Partition(r *Record, n int) int {
	if r.Partition >= 0 {
		return int(r.Partition)
	}
	return e.fb.Partition(r, n)
}

func (e *explicitTopic) OnNewBatch() {
	if b, ok := e.fb.(BatchAwarePartitioner); ok {
		b.OnNewBatch()
	}
}

// KeyPartition is the partition Kafka's default partitioner picks for key
// among n partitions: toPositive(murmur2(key)) % n.
func KeyPartition(key []byte, n int) int {
	return int(int32(murmur2(key)&0x7fffffff) % int32(n))
}

// murmur2 is the 32-bit MurmurHash2 variant of Kafka's Utils.murmur2: seed
// 0x9747b28c, little-endian 4-byte blocks, the tail mixed in as Java's
// fall-through switch does.
func murmur2(data []byte) uint32 {
	const (
		seed = 0x9747b28c
		m    = 0x5bd1e995
		r    = 24
	)
	n := len(data)
	h := uint32(seed) ^ uint32(n)
	i := 0
	for ; i+4 <= n; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch n - i {
	case 3:
		h ^= uint32(data[i+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[i+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[i])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}

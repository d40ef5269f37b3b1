// Package chaos is Skein's fault-injection suite: a workload on the real Go
// client that records a history (Jepsen conventions), a nemesis that injects
// faults into real broker processes, and a checker that judges the history
// against the guarantees of RELIABILITY.md (G1–G12).
package chaos

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"
)

// OpType is the kind of a history entry (Jepsen conventions).
type OpType string

const (
	// Invoke is recorded before the request is sent.
	Invoke OpType = "invoke"
	// OK: the broker acknowledged the operation.
	OK OpType = "ok"
	// Fail: the broker guaranteed that nothing was appended.
	Fail OpType = "fail"
	// Info: indeterminate (timeout, lost connection, ...): the record may or
	// may not have been appended. The worker continues under a new process.
	Info OpType = "info"
)

// Function names of operations.
const (
	// FSend produces one record (Value) to Partition. Its ok carries the
	// acknowledged Offset.
	FSend = "send"
	// FRead is one record a consumer read: an ok with Partition, Offset,
	// Value (0 and Corrupt when the value did not decode or verify) and
	// Epoch (the leader epoch stamped on its batch). Consumers read forward;
	// Process identifies the consumer, so its reads are in order.
	FRead = "read"
	// FHW is a high watermark a client was told (Offset), polled in order by
	// one process per partition.
	FHW = "hw"
	// FGroupRead is one record a member of the workload's consumer group
	// was given: as FRead, with Process naming the member instance. A
	// member's reads may go back after it gives a partition up and gets it
	// again: the group re-delivers from the committed offset.
	FGroupRead = "group-read"
	// FAssign: the member instance Process starts reading Partition.
	FAssign = "assign"
	// FCommit commits the group's position Offset (the next offset to
	// read) of Partition: invoke, then ok / fail / info of the same
	// Process.
	FCommit = "commit"
	// FKeyUpdate is one per-key conditional update of the key topic
	// (ProduceIfKeys): invoke, then ok / fail / info of the same Process,
	// each carrying the Update (its key, the key's last offset it expects,
	// its count); the ok carries the acknowledged Partition and Offset. A
	// fail is a definite refusal (nearly always a key offset mismatch).
	FKeyUpdate = "key-update"
	// FKeyRead is a key's latest record as GetKey returned it: an ok with
	// Partition, Offset (-1: the key has no record) and the decoded Update
	// (Key only when none; Corrupt when the record did not decode).
	FKeyRead = "key-read"
)

// Op is one history entry.
type Op struct {
	Index     int           `json:"index"`
	Time      time.Duration `json:"time"` // since the run started
	Process   int           `json:"process"`
	Type      OpType        `json:"type"`
	F         string        `json:"f"`
	Partition int32         `json:"partition"`
	Value     uint64        `json:"value,omitempty"`
	Offset    int64         `json:"offset"`
	Epoch     int32         `json:"epoch,omitempty"`
	Corrupt   bool          `json:"corrupt,omitempty"`
	// Producer names the producer (its workload index) for sends: the checker
	// checks each producer's order (G6) within a partition.
	Producer int `json:"producer,omitempty"`
	// AckEpoch, on an ok send, is the leader epoch the broker said it
	// appended the record in (nil when it did not say: a duplicate).
	AckEpoch *int32 `json:"ack_epoch,omitempty"`
	// Update is the key update of FKeyUpdate and FKeyRead ops, and Topic
	// the key topic they are of.
	Update *KeyUpdate `json:"update,omitempty"`
	Topic  string     `json:"topic,omitempty"`
	Err    string     `json:"err,omitempty"`
}

// Rec is one record of a log as read back after the run: from the
// partition's leader (the final read) or from one replica's local log.
type Rec struct {
	Offset  int64  `json:"offset"`
	Value   uint64 `json:"value"`
	Epoch   int32  `json:"epoch"`
	Corrupt bool   `json:"corrupt,omitempty"`
}

// ReplicaLog is one replica's local log of a partition, read after heal.
type ReplicaLog struct {
	Broker int32 `json:"broker"`
	// HW is the partition's high watermark the comparison runs to.
	HW int64 `json:"hw"`
	// Raw is the replica's stored batch bytes from the log start to HW,
	// compared for byte equality across replicas (G8).
	Raw  []byte `json:"-"`
	Recs []Rec  `json:"recs"`
}

// Final is what the run read back after heal and quiet: every partition
// read from the start to its HW through the client, and each replica's
// local log.
type Final struct {
	Reads    map[int32][]Rec        `json:"reads"`
	HW       map[int32]int64        `json:"hw"`
	Replicas map[int32][]ReplicaLog `json:"replicas"`
	// Keys are the key topics read back (none without key writers).
	Keys []*KeysFinal `json:"keys,omitempty"`
}

// Values: each produced record's value is unique: producer index << 32 |
// sequence. The record's bytes are the 8-byte value, padding derived from
// it, and a CRC-32C of both, so a read can tell a record we sent from a
// fabricated or damaged one.

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ValueID makes the value of producer p's n-th record.
func ValueID(p int, n uint32) uint64 { return uint64(p)<<32 | uint64(n) }

// EncodeValue returns the record bytes for v, size bytes long (at least 12).
func EncodeValue(v uint64, size int) []byte {
	size = max(size, 12)
	b := make([]byte, size)
	binary.BigEndian.PutUint64(b, v)
	x := v*0x9E3779B97F4A7C15 + 1
	for i := 8; i < size-4; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	binary.BigEndian.PutUint32(b[size-4:], crc32.Checksum(b[:size-4], castagnoli))
	return b
}

// DecodeValue returns the value id of record bytes, or an error when they
// are not a record the workload sent (wrong size, bad checksum).
func DecodeValue(b []byte) (uint64, error) {
	if len(b) < 12 {
		return 0, fmt.Errorf("record of %d bytes: shorter than any value", len(b))
	}
	if crc32.Checksum(b[:len(b)-4], castagnoli) != binary.BigEndian.Uint32(b[len(b)-4:]) {
		return 0, fmt.Errorf("checksum mismatch")
	}
	v := binary.BigEndian.Uint64(b)
	if want := EncodeValue(v, len(b)); string(want) != string(b) {
		return 0, fmt.Errorf("padding of value %#x does not match", v)
	}
	return v, nil
}

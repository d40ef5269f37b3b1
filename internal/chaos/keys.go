package chaos

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"time"

	"github.com/skeinlog/skein/client"
)

// The key workload: writers doing read-modify-write updates of a small set
// of keys in a key-indexed topic, each conditioned on the key's last
// record (ProduceIfKeys). A writer reads the key's latest record (GetKey),
// appends the key's next update conditioned on that record's offset, and
// on a mismatch reads the key again and retries. Several writers contend
// for the same keys (a few of them hot), so mismatches happen all through
// the run, beside the faults.

// KeyUpdate is one record of the key topic: the key's N-th update,
// appended on the condition that the key's last record was at offset Prev
// (-1: none), by the attempt ID (writer << 32 | sequence, unique).
type KeyUpdate struct {
	ID   uint64 `json:"id"`
	Key  string `json:"key"`
	Prev int64  `json:"prev"`
	N    uint32 `json:"n"`
}

// keyUpdateSize is the size of an encoded update: ID, Prev, N and a
// CRC-32C of the key and the rest.
const keyUpdateSize = 8 + 8 + 4 + 4

// EncodeKeyUpdate returns the record value of u (its key is u.Key).
func EncodeKeyUpdate(u KeyUpdate) []byte {
	b := make([]byte, keyUpdateSize)
	binary.BigEndian.PutUint64(b, u.ID)
	binary.BigEndian.PutUint64(b[8:], uint64(u.Prev))
	binary.BigEndian.PutUint32(b[16:], u.N)
	binary.BigEndian.PutUint32(b[20:], keyUpdateCRC([]byte(u.Key), b[:20]))
	return b
}

// DecodeKeyUpdate decodes a record of the key topic, or fails when it is
// not one the workload wrote under that key (wrong size, bad checksum).
func DecodeKeyUpdate(key, value []byte) (KeyUpdate, error) {
	if len(value) != keyUpdateSize {
		return KeyUpdate{}, fmt.Errorf("key update of %d bytes, not %d", len(value), keyUpdateSize)
	}
	if keyUpdateCRC(key, value[:20]) != binary.BigEndian.Uint32(value[20:]) {
		return KeyUpdate{}, fmt.Errorf("checksum mismatch (key %q)", key)
	}
	return KeyUpdate{ID: binary.BigEndian.Uint64(value), Key: string(key),
		Prev: int64(binary.BigEndian.Uint64(value[8:])), N: binary.BigEndian.Uint32(value[16:])}, nil
}

func keyUpdateCRC(key, body []byte) uint32 {
	return crc32.Update(crc32.Checksum(key, castagnoli), castagnoli, body)
}

// keyName is the workload's i-th key.
func keyName(i int) string { return fmt.Sprintf("key-%02d", i) }

// KeyRec is one record of the key topic as read back after the run.
type KeyRec struct {
	Offset  int64     `json:"offset"`
	Update  KeyUpdate `json:"update"`
	Corrupt bool      `json:"corrupt,omitempty"`
}

// KeysFinal is a key topic read back after heal and quiet.
type KeysFinal struct {
	Topic string `json:"topic"`
	// Compacted: the topic's cleaner removes superseded records, so a key's
	// chain may lack the records before the latest ones.
	Compacted bool `json:"compacted,omitempty"`
	// Reads: every partition from its start to its high watermark.
	Reads map[int32][]KeyRec `json:"reads"`
	HW    map[int32]int64    `json:"hw"`
	// Latest: every key's latest record as GetKey answered after the
	// final read (Offset -1: none), by key.
	Latest map[string]KeyRec `json:"latest"`
}

// keyWriter is one writer instance: its producer, its index (the high
// half of its update ids), and the process its key reads are recorded
// under.
type keyWriter struct {
	w      *Workload
	p      *client.Producer
	idx    int
	seq    uint32
	reader int
}

// keyWriterSlot runs writer instances until sending stops; a fenced
// producer is replaced by a new instance.
func (w *Workload) keyWriterSlot() {
	defer w.sendWG.Done()
	for {
		if err := w.runKeyWriter(); err == nil {
			return
		}
		select {
		case <-w.stopSend:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// runKeyWriter updates a key every 20–60 ms until sending stops (nil) or
// its producer is fenced (the error).
func (w *Workload) runKeyWriter() error {
	p, err := w.cl.NewProducer(client.DeliveryTimeout(10*time.Second), client.ProduceRequestTimeout(5*time.Second))
	if err != nil {
		w.report(err)
		return err
	}
	defer p.Close()
	kw := &keyWriter{w: w, p: p, idx: int(w.nextProducer.Add(1)), reader: w.h.Proc()}
	for {
		select {
		case <-w.stopSend:
			return nil
		case <-time.After(time.Duration(20+w.intn(40)) * time.Millisecond):
		}
		topic := w.cfg.KeyTopics[w.intn(len(w.cfg.KeyTopics))]
		if err := kw.update(topic, w.pickKey()); err != nil {
			return err
		}
	}
}

// pickKey draws a key: half the time one of the first three (hot keys,
// so writers meet), else any.
func (w *Workload) pickKey() string {
	if w.intn(2) == 0 {
		return keyName(w.intn(min(3, w.cfg.Keys)))
	}
	return keyName(w.intn(w.cfg.Keys))
}

// update reads key and appends its next update on the condition that the
// key's last record is the one read; on a mismatch (or any failure) it
// reads again and retries, up to 20 attempts. It returns an error only
// when the producer was fenced.
func (kw *keyWriter) update(topic, key string) error {
	w := kw.w
	for range 20 {
		select {
		case <-w.stopSend:
			return nil
		default:
		}
		last, n, ok := kw.read(topic, key)
		if !ok {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		// Think a little between the read and the write: other writers
		// of a hot key get in between.
		time.Sleep(time.Duration(w.intn(10)) * time.Millisecond)
		typ, err := kw.append(topic, KeyUpdate{ID: ValueID(kw.idx, kw.seq), Key: key, Prev: last, N: n + 1})
		kw.seq++
		switch {
		case typ == OK:
			return nil
		case errors.Is(err, client.ErrProducerFenced):
			return err
		case typ == Info:
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// read returns key's last offset (-1: none) and update count, recording
// the read; ok is false when GetKey failed.
func (kw *keyWriter) read(topic, key string) (last int64, n uint32, ok bool) {
	w := kw.w
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	kv, err := w.cl.GetKey(ctx, topic, client.AnyPartition, []byte(key))
	cancel()
	if err != nil {
		return 0, 0, false
	}
	op := Op{Process: kw.reader, Type: OK, F: FKeyRead, Offset: -1, Topic: topic,
		Partition: int32(client.KeyPartition([]byte(key), w.cfg.Partitions)), Update: &KeyUpdate{Key: key}}
	if kv.Found {
		op.Offset = kv.Record.Offset
		u, derr := DecodeKeyUpdate([]byte(key), kv.Record.Value)
		if derr != nil {
			op.Corrupt, op.Err = true, derr.Error()
		} else {
			op.Update = &u
		}
	}
	w.h.Add(op)
	if op.Corrupt {
		return 0, 0, false
	}
	return op.Offset, op.Update.N, true
}

// append appends u on the condition that its key's last record is at
// u.Prev, recording the invoke and the outcome under a fresh process.
func (kw *keyWriter) append(topic string, u KeyUpdate) (OpType, error) {
	w := kw.w
	proc := w.h.Proc()
	w.h.Add(Op{Process: proc, Type: Invoke, F: FKeyUpdate, Value: u.ID, Update: &u, Offset: -1, Topic: topic})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	rec := &client.Record{Key: []byte(u.Key), Value: EncodeKeyUpdate(u)}
	off, err := kw.p.ProduceIfKeys(ctx, topic, []client.KeyExpectation{{Key: rec.Key, Offset: u.Prev}}, rec)
	cancel()
	op := Op{Process: proc, Type: classify(err), F: FKeyUpdate, Value: u.ID, Update: &u, Offset: -1, Topic: topic,
		Partition: int32(client.KeyPartition(rec.Key, w.cfg.Partitions))}
	if err == nil {
		op.Offset, op.Partition = off, rec.Partition
	} else {
		op.Err = err.Error()
	}
	w.h.Add(op)
	return op.Type, err
}

// keyTopic is one topic of the key workload.
type keyTopic struct {
	name      string
	compacted bool
}

// keyTopics are the run's key topics: the test topic's name with "-keys",
// and with CompactedKeys (not on the journal engine, which refuses
// compaction) "-compacted", a compacted one.
func (r *runner) keyTopics() []keyTopic {
	if r.cfg.KeyWriters == 0 {
		return nil
	}
	ts := []keyTopic{{name: r.cfg.Topic + keyTopicSuffix}}
	if r.cfg.CompactedKeys && r.cfg.StorageEngine != "journal" {
		ts = append(ts, keyTopic{name: r.cfg.Topic + "-compacted", compacted: true})
	}
	return ts
}

// compactedArgs are the brokers' flags when a key topic is compacted:
// segments small enough to seal several times in a run (the cleaner
// leaves the active segment alone) and a cleaner that looks every second.
func (r *runner) compactedArgs() []string {
	for _, kt := range r.keyTopics() {
		if kt.compacted {
			return []string{"--segment-bytes", "8192", "--cleaner-interval", "1s"}
		}
	}
	return nil
}

// config is the topic's configuration: tc with the key index (and the
// compact cleanup policy).
func (kt keyTopic) config(tc client.TopicConfig) client.TopicConfig {
	tc.KeyIndex = true
	if kt.compacted {
		tc.CleanupPolicy = "compact"
	}
	return tc
}

func keyTopicNames(ts []keyTopic) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.name)
	}
	return out
}

// readKeys reads a key topic back after the run: every partition from its
// start to its high watermark, then every key's latest record.
func (r *runner) readKeys(kt keyTopic) (*KeysFinal, []string) {
	topic := kt.name
	f := &KeysFinal{Topic: topic, Compacted: kt.compacted, Reads: map[int32][]KeyRec{}, HW: map[int32]int64{}, Latest: map[string]KeyRec{}}
	var short []string
	for p := int32(0); p < int32(r.cfg.Partitions); p++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		lo, err := r.admin.ListOffsets(ctx, topic, p, client.End())
		cancel()
		if err != nil {
			short = append(short, fmt.Sprintf("high watermark of %s/%d: %v", topic, p, err))
			continue
		}
		f.HW[p] = lo.HighWatermark
		recs, err := r.readKeyPartition(topic, p, lo.HighWatermark)
		if err != nil {
			short = append(short, fmt.Sprintf("final read of %s/%d: %v", topic, p, err))
		}
		f.Reads[p] = recs
	}
	for i := range keyCount(r.cfg.Keys) {
		key := keyName(i)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		kv, err := r.admin.GetKey(ctx, topic, client.AnyPartition, []byte(key))
		cancel()
		if err != nil {
			short = append(short, fmt.Sprintf("latest record of key %s: %v", key, err))
			continue
		}
		kr := KeyRec{Offset: -1, Update: KeyUpdate{Key: key}}
		if kv.Found {
			kr = decodeKeyRec(kv.Record.Offset, []byte(key), kv.Record.Value)
		}
		f.Latest[key] = kr
	}
	return f, short
}

func decodeKeyRec(off int64, key, value []byte) KeyRec {
	u, err := DecodeKeyUpdate(key, value)
	if err != nil {
		return KeyRec{Offset: off, Update: KeyUpdate{Key: string(key)}, Corrupt: true}
	}
	return KeyRec{Offset: off, Update: u}
}

// readKeyPartition reads partition p of topic from its start to hw.
func (r *runner) readKeyPartition(topic string, p int32, hw int64) ([]KeyRec, error) {
	k, err := r.admin.NewConsumer(client.StopAtEnd())
	if err != nil {
		return nil, err
	}
	defer k.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := k.Assign(ctx, topic, []int32{p}, client.Beginning()); err != nil {
		return nil, err
	}
	var out []KeyRec
	for {
		rec, err := k.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if rec.Offset < hw {
			out = append(out, decodeKeyRec(rec.Offset, rec.Key, rec.Value))
		}
	}
}

// keyTopicSuffix names the key topic after the test topic.
const keyTopicSuffix = "-keys"

// keyCount is the number of keys the writers update (12 unless set).
func keyCount(n int) int {
	if n <= 0 {
		return 12
	}
	return n
}

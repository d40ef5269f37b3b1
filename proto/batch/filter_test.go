package batch

import (
	"bytes"
	"testing"
)

func TestFilter(t *testing.T) {
	recs := sampleRecords(50)
	for _, codec := range []Compression{None, Gzip, Snappy, LZ4, Zstd} {
		t.Run(codec.String(), func(t *testing.T) {
			raw := build(t, codec, recs)
			v := View(raw)
			v.SetBaseOffset(1000)
			v.SetLeaderEpoch(7)
			SetProducerFields(v, 42, 3, 100)
			// Keep every third record.
			out, removed, err := v.Filter(func(off int64, _, _ []byte, _ int64) bool { return (off-1000)%3 == 0 })
			if err != nil {
				t.Fatal(err)
			}
			if want := 50 - 17; removed != want {
				t.Fatalf("removed %d, want %d", removed, want)
			}
			f := View(out)
			if _, err := CheckStored(f); err != nil {
				t.Fatalf("CheckStored: %v", err)
			}
			if f.BaseOffset() != 1000 || f.LastOffset() != 1049 || f.LeaderEpoch() != 7 || f.ProducerID() != 42 ||
				f.BaseSequence() != 100 || f.RecordCount() != 17 || f.MaxTimestamp() != v.MaxTimestamp() || f.FirstTimestamp() != v.FirstTimestamp() {
				t.Fatalf("header changed: base %d last %d epoch %d pid %d seq %d count %d", f.BaseOffset(), f.LastOffset(), f.LeaderEpoch(), f.ProducerID(), f.BaseSequence(), f.RecordCount())
			}
			got, err := f.Records(nil)
			if err != nil {
				t.Fatal(err)
			}
			for i, r := range got {
				w := recs[i*3]
				if r.Offset != 1000+int64(i*3) || r.Timestamp != w.Timestamp || !bytes.Equal(r.Key, w.Key) || !bytes.Equal(r.Value, w.Value) || (r.Value == nil) != (w.Value == nil) {
					t.Fatalf("record %d: %+v, want offset %d %+v", i, r, 1000+i*3, w)
				}
			}
			if _, err := Validate(out, Limits{}); err == nil {
				t.Fatal("Validate accepted a batch with gaps (producers must send dense batches)")
			}
			// Keep all: nil. Keep none: an empty batch.
			if all, n, err := v.Filter(func(int64, []byte, []byte, int64) bool { return true }); all != nil || n != 0 || err != nil {
				t.Fatalf("keep all: %d bytes, %d removed, %v", len(all), n, err)
			}
			none, n, err := v.Filter(func(int64, []byte, []byte, int64) bool { return false })
			if err != nil || n != 50 {
				t.Fatalf("keep none: %d removed, %v", n, err)
			}
			e := View(none)
			if _, err := CheckStored(e); err != nil || e.RecordCount() != 0 || e.LastOffset() != 1049 {
				t.Fatalf("empty batch: %v, count %d, last %d", err, e.RecordCount(), e.LastOffset())
			}
			if rs, err := e.Records(nil); err != nil || len(rs) != 0 {
				t.Fatalf("empty batch records: %d, %v", len(rs), err)
			}
		})
	}
}

func TestCheckStoredRejects(t *testing.T) {
	raw := build(t, None, sampleRecords(3))
	bad := bytes.Clone(raw)
	bad[len(bad)-1] ^= 1
	if _, err := CheckStored(bad); err == nil {
		t.Fatal("CRC damage accepted")
	}
	if _, err := CheckStored(raw[:20]); err == nil {
		t.Fatal("short batch accepted")
	}
	v := View(bytes.Clone(raw))
	v[offRecordCount] = 9
	SetProducerFields(v, -1, -1, -1) // refresh the CRC
	if _, err := CheckStored(v); err == nil {
		t.Fatal("more records than offsets accepted")
	}
}

package client

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/skeinlog/skein/proto/batch"
)

// FuzzRecordJSON: any input either fails to decode or decodes to a record
// whose JSON form decodes back to the same record.
func FuzzRecordJSON(f *testing.F) {
	for _, s := range []string{
		`{"value":"v"}`,
		`{"topic":"t","partition":2,"offset":7,"timestamp":1700000000123,"key":"k","value":"x","headers":[["a","1"],["a",null],{"key":"bin","value_b64":"/wAB"}]}`,
		`{"key_b64":"AAE=","value":null,"headers":{"z":"1","a":null},"timestamp":"2024-01-02T03:04:05Z"}`,
		`{"headers":[{"key":"k","value":"v"}]}`,
		`[]`, `null`, `{"key":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r Record
		if err := json.Unmarshal(data, &r); err != nil {
			return
		}
		// Only millisecond timestamps survive; compare at that precision.
		r.Timestamp = time.UnixMilli(r.Timestamp.UnixMilli())
		b, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		var back Record
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("re-decode of %s: %v", b, err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Fatalf("round trip changed the record:\n%#v\n%#v\n%s", r, back, b)
		}
	})
}

// FuzzDecodeBatches: fetched bytes never panic the consumer's decoder, and a
// decoded record is never below the wanted position.
func FuzzDecodeBatches(f *testing.F) {
	b := batch.NewBuilder(batch.None)
	for i := 0; i < 3; i++ {
		b.Add(&batch.Record{Timestamp: int64(i), Key: []byte("k"), Value: []byte("value")})
	}
	one, _ := b.Build(nil)
	batch.View(one).SetBaseOffset(10)
	two := append(append([]byte(nil), one...), one...)
	batch.View(two[len(one):]).SetBaseOffset(13)
	f.Add(one, int64(0))
	f.Add(two, int64(11))
	f.Add(two[:len(two)-3], int64(12))
	f.Add([]byte{}, int64(0))
	f.Fuzz(func(t *testing.T, buf []byte, pos int64) {
		recs, next, err := decodeBatches("t", 0, buf, pos)
		if next < pos {
			t.Fatalf("position went back from %d to %d", pos, next)
		}
		for _, r := range recs {
			if r.Offset < pos || r.Offset >= next {
				t.Fatalf("record at %d outside [%d, %d) (err %v)", r.Offset, pos, next, err)
			}
		}
	})
}

package client

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestRecordJSONRoundTrip(t *testing.T) {
	recs := []Record{
		{Topic: "t", Partition: 2, Offset: 7, Timestamp: time.UnixMilli(1_700_000_000_123), Key: []byte("k"), Value: []byte("hello \"world\"\n\t<&>"),
			Headers: []Header{{Key: "a", Value: []byte("1")}, {Key: "a", Value: nil}, {Key: "bin", Value: []byte{0xff, 0, 1}}, {Key: "e", Value: []byte{}}}},
		{Topic: "t", Partition: 0, Offset: 0, Timestamp: time.UnixMilli(0), Key: nil, Value: nil},
		{Topic: "t", Partition: 1, Offset: 1, Timestamp: time.UnixMilli(5), Key: []byte{}, Value: []byte{0x80, 0x81, 0xfe}},
		{Topic: "t", Partition: 1, Offset: 2, Timestamp: time.UnixMilli(5), Key: []byte{0, 1, 2}, Value: []byte("ünïcødé ✓")},
	}
	for i, r := range recs {
		b, err := json.Marshal(&r)
		if err != nil {
			t.Fatal(err)
		}
		if !json.Valid(b) || bytes.Contains(b, []byte("\n")) {
			t.Fatalf("record %d: invalid or multi-line JSON %s", i, b)
		}
		var back Record
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("record %d: %v (%s)", i, err, b)
		}
		if !reflect.DeepEqual(back, r) {
			t.Fatalf("record %d round trip:\n got %#v\nwant %#v\njson %s", i, back, r, b)
		}
	}
	b, _ := recs[0].MarshalJSON() // json.Marshal would HTML-escape it
	want := `{"topic":"t","partition":2,"offset":7,"timestamp":1700000000123,"key":"k","value":"hello \"world\"\n\t<&>","headers":[["a","1"],["a",null],{"key":"bin","value_b64":"/wAB"},["e",""]]}`
	if string(b) != want {
		t.Fatalf("JSON form:\n got %s\nwant %s", b, want)
	}
}

func TestRecordJSONInputForms(t *testing.T) {
	cases := []struct {
		in   string
		want Record
	}{
		{`{"value":"v"}`, Record{Partition: AnyPartition, Offset: -1, Value: []byte("v")}},
		{`{"key":"k","value":null,"partition":3}`, Record{Partition: 3, Offset: -1, Key: []byte("k")}},
		{`{"key_b64":"AAE=","value_b64":""}`, Record{Partition: AnyPartition, Offset: -1, Key: []byte{0, 1}, Value: []byte{}}},
		{`{"value":"x","timestamp":"2024-01-02T03:04:05.5Z"}`, Record{Partition: AnyPartition, Offset: -1, Value: []byte("x"), Timestamp: time.Date(2024, 1, 2, 3, 4, 5, 5e8, time.UTC)}},
		{`{"value":"x","timestamp":"1700000000000"}`, Record{Partition: AnyPartition, Offset: -1, Value: []byte("x"), Timestamp: time.UnixMilli(1700000000000)}},
		{`{"value":"x","headers":{"z":"1","a":null,"m":"3"}}`, Record{Partition: AnyPartition, Offset: -1, Value: []byte("x"),
			Headers: []Header{{"z", []byte("1")}, {"a", nil}, {"m", []byte("3")}}}},
		{`{"value":"x","headers":[["a","1"],{"key":"b","value":"2"},{"key":"c","value_b64":"/w=="}]}`, Record{Partition: AnyPartition, Offset: -1, Value: []byte("x"),
			Headers: []Header{{"a", []byte("1")}, {"b", []byte("2")}, {"c", []byte{0xff}}}}},
	}
	for _, c := range cases {
		var r Record
		if err := json.Unmarshal([]byte(c.in), &r); err != nil {
			t.Errorf("%s: %v", c.in, err)
			continue
		}
		if c.want.Timestamp.IsZero() != r.Timestamp.IsZero() || !c.want.Timestamp.Equal(r.Timestamp) {
			t.Errorf("%s: timestamp %v", c.in, r.Timestamp)
		}
		r.Timestamp, c.want.Timestamp = time.Time{}, time.Time{}
		if !reflect.DeepEqual(r, c.want) {
			t.Errorf("%s:\n got %#v\nwant %#v", c.in, r, c.want)
		}
	}
	for _, bad := range []string{
		`{"vaule":"x"}`,
		`{"key":"k","key_b64":"AA=="}`,
		`{"value":1}`,
		`{"value_b64":"not base64!"}`,
		`{"headers":"x"}`,
		`{"headers":[["only-key"]]}`,
		`{"headers":{"k":1}}`,
		`{"timestamp":"yesterday"}`,
		`{"value":"x"`,
	} {
		var r Record
		err := json.Unmarshal([]byte(bad), &r)
		if err == nil {
			t.Errorf("%s accepted", bad)
		} else if !strings.Contains(err.Error(), "JSON") && !strings.Contains(err.Error(), "json") {
			t.Errorf("%s: unhelpful error %v", bad, err)
		}
	}
}

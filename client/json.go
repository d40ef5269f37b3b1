package client

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"
	"unicode/utf8"
)

// MarshalJSON encodes a record as one JSON object, the line format of
// `consume --json` that `produce --json` reads back:
//
//	{"topic":"demo","partition":0,"offset":5,"timestamp":1700000000000,
//	 "key":"k1","value":"hello","headers":[["trace","abc"]]}
//
// timestamp is unix milliseconds. A key or value that is valid UTF-8 is a
// JSON string, null when nil; anything else is base64 (standard, padded)
// under key_b64 or value_b64 instead. Headers are a list of [key, value]
// pairs (repeats and order kept); a header value that is not UTF-8 is an
// object {"key":k,"value_b64":v}, a nil one [k, null]. headers is left out
// when there are none.
func (r *Record) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"topic":`)
	writeJSONString(&b, r.Topic)
	fmt.Fprintf(&b, `,"partition":%d,"offset":%d,"timestamp":%d`, r.Partition, r.Offset, r.Timestamp.UnixMilli())
	writeBytesField(&b, "key", r.Key)
	writeBytesField(&b, "value", r.Value)
	if len(r.Headers) > 0 {
		b.WriteString(`,"headers":[`)
		for i, h := range r.Headers {
			if i > 0 {
				b.WriteByte(',')
			}
			if h.Value != nil && !utf8.Valid(h.Value) {
				b.WriteString(`{"key":`)
				writeJSONString(&b, h.Key)
				b.WriteString(`,"value_b64":"`)
				b.WriteString(base64.StdEncoding.EncodeToString(h.Value))
				b.WriteString(`"}`)
				continue
			}
			b.WriteByte('[')
			writeJSONString(&b, h.Key)
			b.WriteByte(',')
			if h.Value == nil {
				b.WriteString("null")
			} else {
				writeJSONString(&b, string(h.Value))
			}
			b.WriteByte(']')
		}
		b.WriteByte(']')
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

func writeBytesField(b *bytes.Buffer, name string, v []byte) {
	switch {
	case v == nil:
		fmt.Fprintf(b, `,%q:null`, name)
	case utf8.Valid(v):
		fmt.Fprintf(b, `,%q:`, name)
		writeJSONString(b, string(v))
	default:
		fmt.Fprintf(b, `,"%s_b64":"%s"`, name, base64.StdEncoding.EncodeToString(v))
	}
}

// writeJSONString writes s, valid UTF-8, as a JSON string (no HTML
// escaping, so the output stays readable).
func writeJSONString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case c < 0x20:
			b.WriteString(`\u00`)
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xf])
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}

// jsonRecord is the accepted input form; see UnmarshalJSON.
type jsonRecord struct {
	Topic       *string         `json:"topic"`
	Partition   *int32          `json:"partition"`
	Offset      *int64          `json:"offset"`
	Timestamp   json.RawMessage `json:"timestamp"`
	Key         json.RawMessage `json:"key"`
	KeyB64      *string         `json:"key_b64"`
	Value       json.RawMessage `json:"value"`
	ValueB64    *string         `json:"value_b64"`
	Headers     json.RawMessage `json:"headers"`
	LeaderEpoch *int32          `json:"leader_epoch"`
}

// UnmarshalJSON decodes the form MarshalJSON writes, and more liberally:
// every field is optional (an absent partition is AnyPartition, an absent
// offset -1, an absent or null key or value nil); key and value may instead
// be given base64-encoded as key_b64 and value_b64 (not both forms at
// once); timestamp is unix milliseconds or an RFC 3339 string; headers are a
// JSON object {"k":"v",...} (in the order written), or a list whose items
// are [k, v] pairs or {"key":k,"value":v} / {"key":k,"value_b64":v}
// objects. Unknown fields are an error, so that a misspelt one is not
// silently dropped.
func (r *Record) UnmarshalJSON(data []byte) error {
	var in jsonRecord
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return fmt.Errorf("record JSON: %w", err)
	}
	*r = Record{Partition: AnyPartition, Offset: -1}
	if in.Topic != nil {
		r.Topic = *in.Topic
	}
	if in.Partition != nil {
		r.Partition = *in.Partition
	}
	if in.Offset != nil {
		r.Offset = *in.Offset
	}
	if in.LeaderEpoch != nil {
		r.LeaderEpoch = *in.LeaderEpoch
	}
	var err error
	if r.Timestamp, err = jsonTime(in.Timestamp); err != nil {
		return err
	}
	if r.Key, err = jsonBytes("key", in.Key, in.KeyB64); err != nil {
		return err
	}
	if r.Value, err = jsonBytes("value", in.Value, in.ValueB64); err != nil {
		return err
	}
	if r.Headers, err = jsonHeaders(in.Headers); err != nil {
		return err
	}
	return nil
}

func isNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(bytes.TrimSpace(raw)) == "null"
}

func jsonTime(raw json.RawMessage) (time.Time, error) {
	if isNull(raw) {
		return time.Time{}, nil
	}
	var ms int64
	if err := json.Unmarshal(raw, &ms); err == nil {
		return time.UnixMilli(ms), nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return time.Time{}, fmt.Errorf("record JSON: timestamp %s is neither unix milliseconds nor an RFC 3339 string", raw)
	}
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.UnixMilli(ms), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("record JSON: timestamp %q: %w", s, err)
	}
	return t, nil
}

func jsonBytes(name string, raw json.RawMessage, b64 *string) ([]byte, error) {
	if b64 != nil {
		if !isNull(raw) {
			return nil, fmt.Errorf("record JSON: both %s and %s_b64 are set", name, name)
		}
		v, err := base64.StdEncoding.DecodeString(*b64)
		if err != nil {
			return nil, fmt.Errorf("record JSON: %s_b64: %w", name, err)
		}
		return v, nil
	}
	if isNull(raw) {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("record JSON: %s must be a string or null (use %s_b64 for binary): %w", name, name, err)
	}
	return []byte(s), nil
}

func jsonHeaders(raw json.RawMessage) ([]Header, error) {
	if isNull(raw) {
		return nil, nil
	}
	raw = bytes.TrimSpace(raw)
	var out []Header
	switch raw[0] {
	case '{':
		// An object: keep the keys in the order written.
		dec := json.NewDecoder(bytes.NewReader(raw))
		if _, err := dec.Token(); err != nil {
			return nil, fmt.Errorf("record JSON: headers: %w", err)
		}
		for dec.More() {
			kt, err := dec.Token()
			if err != nil {
				return nil, fmt.Errorf("record JSON: headers: %w", err)
			}
			var v *string
			if err := dec.Decode(&v); err != nil {
				return nil, fmt.Errorf("record JSON: header %q: the value must be a string or null", kt)
			}
			h := Header{Key: kt.(string)}
			if v != nil {
				h.Value = []byte(*v)
			}
			out = append(out, h)
		}
		return out, nil
	case '[':
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, fmt.Errorf("record JSON: headers: %w", err)
		}
		for i, it := range items {
			h, err := jsonHeader(it)
			if err != nil {
				return nil, fmt.Errorf("record JSON: header %d: %w", i, err)
			}
			out = append(out, h)
		}
		return out, nil
	}
	return nil, fmt.Errorf("record JSON: headers must be an object or a list")
}

func jsonHeader(raw json.RawMessage) (Header, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) > 0 && raw[0] == '[' {
		var pair []*string
		if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 || pair[0] == nil {
			return Header{}, fmt.Errorf("a pair must be [\"key\", \"value\"] (value may be null)")
		}
		h := Header{Key: *pair[0]}
		if pair[1] != nil {
			h.Value = []byte(*pair[1])
		}
		return h, nil
	}
	var obj struct {
		Key      *string         `json:"key"`
		Value    json.RawMessage `json:"value"`
		ValueB64 *string         `json:"value_b64"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&obj); err != nil || obj.Key == nil {
		return Header{}, fmt.Errorf("want [\"key\", \"value\"] or {\"key\": ..., \"value\": ...}")
	}
	v, err := jsonBytes("value", obj.Value, obj.ValueB64)
	if err != nil {
		return Header{}, err
	}
	return Header{Key: *obj.Key, Value: v}, nil
}

package partition

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// The per-key conditional append's rules, one case per rule, on planGroup
// and checkExpectations alone.

// keyed is an append of records with keys (one record each); exps are
// "key=offset" expectations.
func keyed(prod producerBatch, keys []string, exps ...string) *op {
	o := req(len(keys), prod)
	for _, k := range keys {
		o.keys = append(o.keys, []byte(k))
	}
	for _, e := range exps {
		k, off, _ := strings.Cut(e, "=")
		var n int64
		fmt.Sscan(off, &n)
		o.req.KeyExpectations = append(o.req.KeyExpectations, KeyExpectation{Key: []byte(k), Offset: n})
	}
	return o
}

func TestPlanGroupKeyRules(t *testing.T) {
	// Before the group: a's last record is at 40, b's at 41, c has none.
	keys := map[string]int64{"a": 40, "b": 41, "c": -1}
	cases := []struct {
		name     string
		group    []*op
		want     []outcome
		wantNext int64
	}{
		{"an expectation met is accepted", []*op{keyed(noProducer, []string{"a"}, "a=40")},
			[]outcome{accepted(100, 100)}, 101},
		{"an expectation not met is refused with the key's offset", []*op{keyed(noProducer, []string{"a"}, "a=39")},
			[]outcome{refusedWith(ErrKeyOffsetMismatch)}, 100},
		{"-1 expects a key without records", []*op{keyed(noProducer, []string{"c"}, "c=-1"), keyed(noProducer, []string{"a"}, "a=-1")},
			[]outcome{accepted(100, 100), refusedWith(ErrKeyOffsetMismatch)}, 101},
		{"all or nothing: one key missed refuses the batch", []*op{keyed(noProducer, []string{"a", "b"}, "a=40", "b=7")},
			[]outcome{refusedWith(ErrKeyOffsetMismatch)}, 100},
		{"batches earlier in the group count", []*op{
			keyed(noProducer, []string{"x", "a"}), keyed(noProducer, []string{"a"}, "a=101"), keyed(noProducer, []string{"a"}, "a=40")},
			[]outcome{accepted(100, 101), accepted(102, 102), refusedWith(ErrKeyOffsetMismatch)}, 103},
		{"a refused batch moves no key", []*op{keyed(noProducer, []string{"a"}, "a=1"), keyed(noProducer, []string{"a"}, "a=40")},
			[]outcome{refusedWith(ErrKeyOffsetMismatch), accepted(100, 100)}, 101},
		{"other keys do not conflict", []*op{keyed(noProducer, []string{"a"}, "a=40"), keyed(noProducer, []string{"b"}, "b=41")},
			[]outcome{accepted(100, 100), accepted(101, 101)}, 102},
		{"a retry of an appended idempotent batch gets its offsets, not a mismatch",
			[]*op{keyed(seq(7, 2, 0, 4), []string{"a", "a", "a", "a", "a"}, "a=12")}, []outcome{duplicate(90, 94)}, 100},
		{"the sequence is checked before the keys", []*op{keyed(seq(7, 2, 9, 9), []string{"a"}, "a=40")},
			[]outcome{refusedWith(ErrOutOfOrderSequence)}, 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := fmt.Sprint(keys)
			plan := planGroup(leaderState(), producers7(), keys, c.group)
			for i, o := range c.group {
				if got := outcomeOf(plan, o); !sameOutcome(got, c.want[i]) {
					t.Errorf("request %d: got %+v, want %+v", i, got, c.want[i])
				}
			}
			if plan.next != c.wantNext {
				t.Errorf("next offset %d, want %d", plan.next, c.wantNext)
			}
			if after := fmt.Sprint(keys); after != before {
				t.Errorf("planGroup changed its input: %s -> %s", before, after)
			}
		})
	}
}

func TestKeyMismatchNamesEachFailingKey(t *testing.T) {
	plan := planGroup(leaderState(), producers7(), map[string]int64{"a": 40, "b": 41, "c": -1},
		[]*op{keyed(noProducer, []string{"a", "b", "c"}, "a=40", "b=3", "c=5")})
	var ke *KeyMismatchError
	if len(plan.refusedErr) != 1 || !errors.As(plan.refusedErr[0], &ke) {
		t.Fatalf("refused %v, want one KeyMismatchError", plan.refusedErr)
	}
	want := []KeyOffset{{Key: []byte("b"), Expected: 3, Actual: 41}, {Key: []byte("c"), Expected: 5, Actual: -1}}
	if fmt.Sprint(ke.Keys) != fmt.Sprint(want) {
		t.Errorf("keys %v, want %v", ke.Keys, want)
	}
	if msg := ke.Error(); !strings.Contains(msg, `key "b" expected at 3, its last record is at 41`) || !strings.Contains(msg, `key "c" expected at 5, its last record is none`) {
		t.Errorf("message %q does not name each key's actual offset", msg)
	}
}

func TestCheckExpectations(t *testing.T) {
	batchKeys := [][]byte{[]byte("a"), nil, []byte("b")}
	ex := func(k string, off int64) KeyExpectation { return KeyExpectation{Key: []byte(k), Offset: off} }
	cases := []struct {
		name     string
		exps     []KeyExpectation
		expected int64
		indexed  bool
		want     error
	}{
		{"none: unconditional", nil, -1, false, nil},
		{"valid", []KeyExpectation{ex("a", 4), ex("b", -1)}, -1, true, nil},
		{"a topic without the key index", []KeyExpectation{ex("a", 4)}, -1, false, ErrNoKeyIndex},
		{"with a whole-partition expected offset", []KeyExpectation{ex("a", 4)}, 7, true, ErrInvalidExpectation},
		{"an empty key", []KeyExpectation{ex("", 4)}, -1, true, ErrInvalidExpectation},
		{"an oversized key", []KeyExpectation{ex(strings.Repeat("k", MaxKeyBytes+1), 4)}, -1, true, ErrInvalidExpectation},
		{"an offset below -1", []KeyExpectation{ex("a", -2)}, -1, true, ErrInvalidExpectation},
		{"a key not in the batch", []KeyExpectation{ex("z", 4)}, -1, true, ErrInvalidExpectation},
		{"a key named twice", []KeyExpectation{ex("a", 4), ex("a", 5)}, -1, true, ErrInvalidExpectation},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := checkExpectations(c.exps, c.expected, batchKeys, c.indexed)
			if (c.want == nil) != (err == nil) || c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("got %v, want %v", err, c.want)
			}
		})
	}
}

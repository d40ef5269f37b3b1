package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
)

func TestQuotaResolveFollowsKafkaOrder(t *testing.T) {
	alice := QuotaEntity{User: "alice"}
	aliceX := QuotaEntity{User: "alice", ClientID: "x"}
	aliceDefClient := QuotaEntity{User: "alice", DefaultClient: true}
	defUserX := QuotaEntity{DefaultUser: true, ClientID: "x"}
	defUserDefClient := QuotaEntity{DefaultUser: true, DefaultClient: true}
	defUser := QuotaEntity{DefaultUser: true}
	clientX := QuotaEntity{ClientID: "x"}
	defClient := QuotaEntity{DefaultClient: true}
	all := []QuotaEntity{aliceX, aliceDefClient, alice, defUserX, defUserDefClient, defUser, clientX, defClient}
	limits := func(i int) QuotaLimits { return QuotaLimits{ProduceBytesPerSec: int64(100 * (i + 1))} }
	for skip := range all {
		// With the entities before skip removed, the one at skip wins
		// for alice/x.
		var qs []Quota
		for i, e := range all[skip:] {
			qs = append(qs, Quota{Entity: e, Limits: limits(skip + i)})
		}
		ix := NewQuotaIndex(qs)
		bucket, limit, ok := ix.Resolve("alice", "x", QuotaProduce)
		if !ok || limit != float64(100*(skip+1)) {
			t.Fatalf("from %s on: limit %v ok %v, want %d", all[skip], limit, ok, 100*(skip+1))
		}
		want := QuotaEntity{User: "alice", ClientID: "x"}
		switch all[skip] {
		case alice, defUser:
			want = QuotaEntity{User: "alice"}
		case clientX, defClient:
			want = QuotaEntity{ClientID: "x"}
		}
		if bucket != want {
			t.Errorf("matched %s: bucket %s, want %s", all[skip], bucket, want)
		}
	}
}

func TestQuotaResolve(t *testing.T) {
	ix := NewQuotaIndex([]Quota{
		{Entity: QuotaEntity{ClientID: "x"}, Limits: QuotaLimits{ProduceBytesPerSec: 10}},
		{Entity: QuotaEntity{DefaultClient: true}, Limits: QuotaLimits{FetchBytesPerSec: 50, RequestsPerSec: 2}},
		{Entity: QuotaEntity{User: "bob"}, Limits: QuotaLimits{RequestsPerSec: 7}},
	})
	cases := []struct {
		user, client string
		kind         QuotaKind
		limit        float64
		bucket       QuotaEntity
		ok           bool
	}{
		{"", "x", QuotaProduce, 10, QuotaEntity{ClientID: "x"}, true},
		{"", "y", QuotaProduce, 0, QuotaEntity{}, false},
		// Each kind resolves on its own: x has no fetch quota of its own.
		{"", "x", QuotaFetch, 50, QuotaEntity{ClientID: "x"}, true},
		{"", "", QuotaFetch, 50, QuotaEntity{}, true},
		{"bob", "x", QuotaRequest, 7, QuotaEntity{User: "bob"}, true},
		{"bob", "x", QuotaProduce, 10, QuotaEntity{ClientID: "x"}, true},
		// A user entity never applies to a caller without a user.
		{"", "x", QuotaRequest, 2, QuotaEntity{ClientID: "x"}, true},
	}
	for _, c := range cases {
		b, l, ok := ix.Resolve(c.user, c.client, c.kind)
		if ok != c.ok || l != c.limit || b != c.bucket {
			t.Errorf("Resolve(%q, %q, %s) = %s, %v, %v; want %s, %v, %v", c.user, c.client, c.kind, b, l, ok, c.bucket, c.limit, c.ok)
		}
	}
	if _, _, ok := NewQuotaIndex(nil).Resolve("a", "b", QuotaProduce); ok {
		t.Error("an empty index resolved a quota")
	}
}

func TestApplyQuotaChange(t *testing.T) {
	x := QuotaEntity{ClientID: "x"}
	qs, err := applyQuotaChange(nil, QuotaChange{Entity: x, Set: QuotaLimits{ProduceBytesPerSec: 100}})
	if err != nil || len(qs) != 1 || qs[0].Limits.ProduceBytesPerSec != 100 {
		t.Fatalf("set: %v %v", qs, err)
	}
	qs, err = applyQuotaChange(qs, QuotaChange{Entity: x, Set: QuotaLimits{FetchBytesPerSec: 5}})
	if err != nil || qs[0].Limits != (QuotaLimits{ProduceBytesPerSec: 100, FetchBytesPerSec: 5}) {
		t.Fatalf("merge: %v %v", qs, err)
	}
	qs, _ = applyQuotaChange(qs, QuotaChange{Entity: QuotaEntity{DefaultClient: true}, Set: QuotaLimits{RequestsPerSec: 1}})
	if len(qs) != 2 || qs[0].Entity != (QuotaEntity{DefaultClient: true}) {
		t.Fatalf("not sorted by entity: %v", qs)
	}
	qs, err = applyQuotaChange(qs, QuotaChange{Entity: x, Remove: []QuotaKind{QuotaProduce}})
	if err != nil || qs[1].Limits != (QuotaLimits{FetchBytesPerSec: 5}) {
		t.Fatalf("remove one: %v %v", qs, err)
	}
	qs, err = applyQuotaChange(qs, QuotaChange{Entity: x, Remove: QuotaKinds})
	if err != nil || len(qs) != 1 {
		t.Fatalf("remove all: %v %v", qs, err)
	}
}

func TestQuotaChangeRefused(t *testing.T) {
	x := QuotaEntity{ClientID: "x"}
	cases := map[string]QuotaChange{
		"no entity":           {Set: QuotaLimits{ProduceBytesPerSec: 1}},
		"negative produce":    {Entity: x, Set: QuotaLimits{ProduceBytesPerSec: -1}},
		"negative fetch":      {Entity: x, Set: QuotaLimits{FetchBytesPerSec: -5}},
		"negative requests":   {Entity: x, Set: QuotaLimits{RequestsPerSec: -1}},
		"huge requests":       {Entity: x, Set: QuotaLimits{RequestsPerSec: 2e9}},
		"nothing":             {Entity: x},
		"set and removed":     {Entity: x, Set: QuotaLimits{FetchBytesPerSec: 1}, Remove: []QuotaKind{QuotaFetch}},
		"unknown kind":        {Entity: x, Remove: []QuotaKind{7}},
		"client and default":  {Entity: QuotaEntity{ClientID: "x", DefaultClient: true}, Set: QuotaLimits{FetchBytesPerSec: 1}},
		"user and default":    {Entity: QuotaEntity{User: "u", DefaultUser: true}, Set: QuotaLimits{FetchBytesPerSec: 1}},
		"control character":   {Entity: QuotaEntity{ClientID: "a\nb"}, Set: QuotaLimits{FetchBytesPerSec: 1}},
		"long client id":      {Entity: QuotaEntity{ClientID: strings.Repeat("c", 256)}, Set: QuotaLimits{FetchBytesPerSec: 1}},
		"client id not UTF-8": {Entity: QuotaEntity{ClientID: "\xff"}, Set: QuotaLimits{FetchBytesPerSec: 1}},
	}
	for name, c := range cases {
		before := []Quota{{Entity: x, Limits: QuotaLimits{ProduceBytesPerSec: 9}}}
		after, err := applyQuotaChange(before, c)
		if !errors.Is(err, ErrInvalidQuota) {
			t.Errorf("%s: err %v, want ErrInvalidQuota", name, err)
		}
		if len(after) != 1 || after[0].Limits.ProduceBytesPerSec != 9 {
			t.Errorf("%s: quotas changed to %v", name, after)
		}
	}
}

func TestParseByteRate(t *testing.T) {
	ok := map[string]int64{
		"10MB/s": 10_000_000, "10MiB/s": 10 << 20, "512KiB": 512 << 10, "1000": 1000,
		"1.5GB/s": 1_500_000_000, "7B/s": 7, " 2 KB/s ": 2000,
	}
	for in, want := range ok {
		got, err := ParseByteRate(in)
		if err != nil || got != want {
			t.Errorf("ParseByteRate(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	bad := map[string]string{
		"-5MB/s": "want a positive number", "10XB/s": `unknown unit "XB"`, "10Mb/s": `unknown unit "Mb"`, "": "want a positive number",
		"MB/s": "want a positive number", "0": "at least 1 byte", "0.1B": "at least 1 byte",
		"99999999999GB": "at most 1 PB/s", "ten": "unknown unit",
	}
	for in, msg := range bad {
		if _, err := ParseByteRate(in); err == nil || !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseByteRate(%q) err %v, want one saying %q", in, err, msg)
		}
	}
}

func TestParseRequestRate(t *testing.T) {
	for in, want := range map[string]float64{"100": 100, "0.5": 0.5, "20/s": 20} {
		if got, err := ParseRequestRate(in); err != nil || got != want {
			t.Errorf("ParseRequestRate(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"-1", "0", "NaN", "Inf", "lots", "5e9", ""} {
		if _, err := ParseRequestRate(in); err == nil {
			t.Errorf("ParseRequestRate(%q) accepted", in)
		}
	}
}

// A quota change goes through the Raft log: applied, refused without a
// change, and restored from a snapshot.
func TestFSMQuotaCommandAndSnapshot(t *testing.T) {
	f := newFSM()
	apply := func(ch QuotaChange) applyResult {
		data, _ := json.Marshal(&command{Op: opQuota, Quota: &ch})
		return f.Apply(&raft.Log{Type: raft.LogCommand, Data: data, Index: 7}).(applyResult)
	}
	if res := apply(QuotaChange{Entity: QuotaEntity{ClientID: "x"}, Set: QuotaLimits{ProduceBytesPerSec: 100}}); res.err != nil {
		t.Fatal(res.err)
	}
	v := f.current().Version
	if res := apply(QuotaChange{Entity: QuotaEntity{ClientID: "x"}, Set: QuotaLimits{ProduceBytesPerSec: -1}}); res.err == nil {
		t.Fatal("negative rate applied")
	}
	if f.current().Version != v || f.current().Quotas[0].Limits.ProduceBytesPerSec != 100 {
		t.Fatalf("a refused change published a snapshot: %+v", f.current())
	}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(f.current()); err != nil {
		t.Fatal(err)
	}
	g := newFSM()
	if err := g.Restore(io.NopCloser(&buf)); err != nil {
		t.Fatal(err)
	}
	if got := g.current().Quotas; len(got) != 1 || got[0].Entity.ClientID != "x" || got[0].Limits.ProduceBytesPerSec != 100 {
		t.Fatalf("restored quotas %+v", got)
	}
}

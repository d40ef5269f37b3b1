package partition

import (
	"errors"
	"fmt"
	"testing"

	"github.com/skeinlog/skein/proto/batch"
)

// stamped is a batch of n records stamped at base in epoch.
func stamped(t *testing.T, base int64, epoch int32, n int) []byte {
	t.Helper()
	bl := batch.NewBuilder(batch.None)
	for i := range n {
		bl.Add(&batch.Record{Timestamp: int64(i), Value: []byte("v")})
	}
	out, err := bl.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	v := batch.View(out)
	v.SetBaseOffset(base)
	v.SetLeaderEpoch(epoch)
	return out
}

func concat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// The replication rules a follower keeps when it appends what it copied,
// one case per rule (G2/G3 the follower's log is the leader's, G8 replicas
// identical, G10 epochs only increase along the log).
func TestPlanReplicatedRules(t *testing.T) {
	corrupt := stamped(t, 10, 3, 2)
	corrupt[len(corrupt)-1] ^= 1
	cases := []struct {
		name       string
		batches    []byte
		wantErr    error
		wantNext   int64
		wantEpochs string
	}{
		{"contiguous batches from the log end are taken", concat(stamped(t, 10, 3, 2), stamped(t, 12, 3, 3)), nil, 15, "[]"},
		{"nothing copied changes nothing", nil, nil, 10, "[]"},
		{"G8 a batch not at the log end is refused", stamped(t, 11, 3, 1), ErrInvalidBatch, 10, ""},
		{"G8 a gap between batches refuses the whole copy", concat(stamped(t, 10, 3, 2), stamped(t, 13, 3, 1)), ErrInvalidBatch, 10, ""},
		{"G4 a batch failing its CRC is refused", corrupt, ErrInvalidBatch, 10, ""},
		{"G4 a truncated batch is refused", stamped(t, 10, 3, 2)[:40], ErrInvalidBatch, 10, ""},
		{"G10 a batch of an older epoch than the log's is refused", stamped(t, 10, 2, 1), ErrInvalidBatch, 10, ""},
		{"G10 a newer epoch starts where its first batch starts", concat(stamped(t, 10, 3, 1), stamped(t, 11, 4, 2), stamped(t, 13, 6, 1)), nil, 14, "[{4 11} {6 13}]"},
		{"G10 epochs going back within a copy refuse it", concat(stamped(t, 10, 5, 1), stamped(t, 11, 4, 1)), ErrInvalidBatch, 10, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plan, err := planReplicated(c.batches, 10, 3)
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("err %v, want %v", err, c.wantErr)
				}
				if len(plan.entries) != 0 {
					t.Fatalf("a refused copy planned %d entries", len(plan.entries))
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if plan.next != c.wantNext || fmt.Sprint(plan.newEpochs) != c.wantEpochs {
				t.Fatalf("next %d epochs %v; want %d %s", plan.next, plan.newEpochs, c.wantNext, c.wantEpochs)
			}
		})
	}
}

package chaos

import (
	"slices"
	"testing"
)

// chkGroupRun is a small run of one partition with ten acknowledged
// records: member 100 reads offsets 0–4 and commits 5, then member 101
// starts the partition and reads 5–9 and commits 10.
func chkGroupRun() ([]Op, Final) {
	const n = 10
	var h []Op
	f := Final{Reads: map[int32][]Rec{}, HW: map[int32]int64{0: n}}
	for i := 0; i < n; i++ {
		v := ValueID(1, uint32(i))
		h = append(h, Op{Process: i + 1, Type: Invoke, F: FSend, Value: v, Producer: 1},
			Op{Process: i + 1, Type: OK, F: FSend, Value: v, Producer: 1, Offset: int64(i)})
		f.Reads[0] = append(f.Reads[0], Rec{Offset: int64(i), Value: v})
	}
	h = append(h, Op{Process: 100, Type: OK, F: FAssign, Offset: -1})
	h = append(h, chkGroupReads(100, 0, 5)...)
	h = append(h, chkCommit(200, 5, OK)...)
	h = append(h, Op{Process: 101, Type: OK, F: FAssign, Offset: -1})
	h = append(h, chkGroupReads(101, 5, 10)...)
	h = append(h, chkCommit(201, 10, OK)...)
	return h, f
}

func chkGroupReads(proc int, from, to int64) []Op {
	var out []Op
	for o := from; o < to; o++ {
		out = append(out, Op{Process: proc, Type: OK, F: FGroupRead, Offset: o, Value: ValueID(1, uint32(o))})
	}
	return out
}

func chkCommit(proc int, offset int64, outcome OpType) []Op {
	return []Op{{Process: proc, Type: Invoke, F: FCommit, Offset: offset}, {Process: proc, Type: outcome, F: FCommit, Offset: offset}}
}

// chkIndexOf returns the index of the first op matching ok.
func chkIndexOf(t *testing.T, h []Op, ok func(Op) bool) int {
	t.Helper()
	i := slices.IndexFunc(h, ok)
	if i < 0 {
		t.Fatal("the history has no such op")
	}
	return i
}

func isAssign(proc int) func(Op) bool {
	return func(op Op) bool { return op.F == FAssign && op.Process == proc }
}

func TestCheckGroup(t *testing.T) {
	tests := []struct {
		name           string
		plant          func(t *testing.T, h []Op) []Op
		want           Anomalies
		redelivered    int
		commits, reads int
	}{
		{name: "clean", commits: 2, reads: 10},
		{
			name: "fine: the next member re-reads what was read after the last commit",
			plant: func(t *testing.T, h []Op) []Op {
				// Member 100 read 5 and 6 but committed only 5: member 101 reads them again.
				i := chkIndexOf(t, h, isAssign(101))
				return slices.Insert(h, i-2, chkGroupReads(100, 5, 7)...)
			},
			redelivered: 2, commits: 2, reads: 12,
		},
		{
			name: "fine: a failed or indeterminate commit below the acknowledged one",
			plant: func(t *testing.T, h []Op) []Op {
				h = append(h, chkCommit(300, 2, Fail)...)
				return append(h, chkCommit(301, 3, Info)...)
			},
			commits: 2, reads: 10,
		},
		{
			name: "fine: a lower commit invoked before the higher one was acknowledged",
			plant: func(t *testing.T, h []Op) []Op {
				c := chkCommit(300, 8, OK)
				h = slices.Insert(h, len(h)-1, c[0]) // invoked before commit 10 completed
				return append(h, c[1])
			},
			commits: 3, reads: 10,
		},
		{
			name: "commit_regression: a commit acknowledged below one acknowledged before it was invoked",
			plant: func(t *testing.T, h []Op) []Op {
				return append(h, chkCommit(300, 7, OK)...)
			},
			want: Anomalies{CommitRegression: 1}, commits: 3, reads: 10,
		},
		{
			name: "commit_regression: a member starts below the acknowledged commit",
			plant: func(t *testing.T, h []Op) []Op {
				i := chkIndexOf(t, h, isAssign(101))
				return slices.Insert(h, i+1, chkGroupReads(101, 3, 5)...)
			},
			want: Anomalies{CommitRegression: 1}, redelivered: 2, commits: 2, reads: 12,
		},
		{
			name: "group_undelivered: no member was given offset 7",
			plant: func(t *testing.T, h []Op) []Op {
				i := chkIndexOf(t, h, func(op Op) bool { return op.F == FGroupRead && op.Offset == 7 })
				return slices.Delete(h, i, i+1)
			},
			want: Anomalies{GroupUndelivered: 1}, commits: 2, reads: 9,
		},
		{
			name: "unexpected: a member was given a corrupt record",
			plant: func(t *testing.T, h []Op) []Op {
				i := chkIndexOf(t, h, func(op Op) bool { return op.F == FGroupRead && op.Offset == 7 })
				h[i].Corrupt, h[i].Value = true, 0
				return h
			},
			want: Anomalies{Unexpected: 1}, commits: 2, reads: 10,
		},
		{
			name: "inconsistent: a member was given another record at offset 3",
			plant: func(t *testing.T, h []Op) []Op {
				i := chkIndexOf(t, h, func(op Op) bool { return op.F == FGroupRead && op.Offset == 3 })
				h[i].Value = ValueID(1, 4)
				return h
			},
			// Value 4 at offsets 3 and 4: also a duplicate.
			want: Anomalies{Inconsistent: 1, Duplicate: 1}, commits: 2, reads: 10,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, f := chkGroupRun()
			if tc.plant != nil {
				h = tc.plant(t, h)
			}
			res := Check(h, f, CheckOptions{})
			if res.Anomalies != tc.want {
				t.Errorf("anomalies %+v, want %+v\nexamples: %v", res.Anomalies, tc.want, res.Examples)
			}
			if res.GroupRedelivered != tc.redelivered || res.GroupCommits != tc.commits || res.GroupReads != tc.reads {
				t.Errorf("redelivered/commits/reads = %d/%d/%d, want %d/%d/%d", res.GroupRedelivered, res.GroupCommits, res.GroupReads, tc.redelivered, tc.commits, tc.reads)
			}
		})
	}
}

// A run without a consumer group checks no delivery to one.
func TestCheckWithoutGroup(t *testing.T) {
	h, f := chkGroupRun()
	h = slices.DeleteFunc(h, func(op Op) bool { return op.F != FSend })
	if res := Check(h, f, CheckOptions{}); !res.Valid() {
		t.Fatalf("anomalies %+v: %v", res.Anomalies, res.Examples)
	}
}

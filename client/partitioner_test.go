package client

import (
	"fmt"
	"testing"
)

// Known values of Kafka's Utils.murmur2 (its UtilsTest, and the ones other
// Kafka clients test against).
func TestMurmur2KafkaVectors(t *testing.T) {
	cases := []struct {
		in   string
		want int32
	}{
		{"21", -973932308},
		{"foobar", -790332482},
		{"a-little-bit-long-string", -985981536},
		{"a-little-bit-longer-string", -1486304829},
		{"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971},
		{"abc", 479470107},
		{"1", -1993445489},
		{"12", 126087238},
		{"123", -267702483},
		{"1234", -1614185708},
		{"12345", -1188365604},
	}
	for _, c := range cases {
		if got := int32(murmur2([]byte(c.in))); got != c.want {
			t.Errorf("murmur2(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

func TestKeyPartition(t *testing.T) {
	// toPositive(murmur2(key)) % n, computed by hand from the vectors.
	cases := []struct {
		key  string
		n    int
		want int
	}{
		{"21", 3, int((-973932308 & 0x7fffffff) % 3)},
		{"foobar", 10, int((-790332482 & 0x7fffffff) % 10)},
		{"abc", 7, 479470107 % 7},
		{"", 5, int((int32(murmur2(nil)) & 0x7fffffff) % 5)},
	}
	for _, c := range cases {
		if got := KeyPartition([]byte(c.key), c.n); got != c.want {
			t.Errorf("KeyPartition(%q, %d) = %d, want %d", c.key, c.n, got, c.want)
		}
	}
	for n := 1; n < 50; n++ {
		for i := 0; i < 200; i++ {
			p := KeyPartition([]byte(fmt.Sprint("key-", i)), n)
			if p < 0 || p >= n {
				t.Fatalf("KeyPartition out of range: %d of %d", p, n)
			}
		}
	}
}

func TestDefaultPartitioner(t *testing.T) {
	tp := DefaultPartitioner().ForTopic("t")
	// Keyed records follow the hash, an empty key included.
	for _, k := range []string{"", "a", "user-42"} {
		r := &Record{Key: []byte(k)}
		if got, want := tp.Partition(r, 6), KeyPartition([]byte(k), 6); got != want {
			t.Errorf("key %q: partition %d, want %d", k, got, want)
		}
	}
	// Unkeyed records stick until OnNewBatch, which always moves.
	bp := tp.(BatchAwarePartitioner)
	first := tp.Partition(&Record{}, 4)
	for i := 0; i < 20; i++ {
		if p := tp.Partition(&Record{}, 4); p != first {
			t.Fatalf("sticky partition moved from %d to %d without a new batch", first, p)
		}
	}
	prev := first
	seen := map[int]bool{first: true}
	for i := 0; i < 100; i++ {
		bp.OnNewBatch()
		p := tp.Partition(&Record{}, 4)
		if p == prev {
			t.Fatalf("OnNewBatch kept partition %d", p)
		}
		if p < 0 || p >= 4 {
			t.Fatalf("partition %d out of range", p)
		}
		seen[p] = true
		prev = p
	}
	if len(seen) != 4 {
		t.Errorf("sticky partitioner used %d of 4 partitions over 100 batches", len(seen))
	}
	// With one partition it stays there.
	bp.OnNewBatch()
	if p := tp.Partition(&Record{}, 1); p != 0 {
		t.Errorf("one partition: got %d", p)
	}
}

func TestManualAndExplicitPartitioners(t *testing.T) {
	m := ManualPartitioner().ForTopic("t")
	if p := m.Partition(&Record{Partition: 3}, 5); p != 3 {
		t.Errorf("manual: %d", p)
	}
	e := ExplicitPartitioner(DefaultPartitioner()).ForTopic("t")
	if p := e.Partition(&Record{Partition: 2, Key: []byte("x")}, 5); p != 2 {
		t.Errorf("explicit partition: %d", p)
	}
	if got, want := e.Partition(&Record{Partition: AnyPartition, Key: []byte("x")}, 5), KeyPartition([]byte("x"), 5); got != want {
		t.Errorf("explicit fallback: %d, want %d", got, want)
	}
	if _, ok := e.(BatchAwarePartitioner); !ok {
		t.Error("explicit partitioner hides its fallback's OnNewBatch")
	}
}

func TestStickyPartitionerIgnoresKeys(t *testing.T) {
	tp := StickyPartitioner().ForTopic("t")
	first := tp.Partition(&Record{Key: []byte("a")}, 8)
	if p := tp.Partition(&Record{Key: []byte("other key")}, 8); p != first {
		t.Fatalf("keyed records left the sticky partition: %d then %d", first, p)
	}
	tp.(BatchAwarePartitioner).OnNewBatch()
	if p := tp.Partition(&Record{Key: []byte("a")}, 8); p == first {
		t.Fatalf("OnNewBatch kept partition %d", p)
	}
}

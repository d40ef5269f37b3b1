package broker

import "testing"

func TestDirtyPoolSizes(t *testing.T) {
	p := &dirtyPool{}
	for _, n := range []int{0, 1, 511, 512, 513, 4096, 5000, 1 << 20, 1<<24 + 1} {
		b := p.Get(n)
		if len(*b) != n || cap(*b) < n {
			t.Fatalf("Get(%d): len %d cap %d", n, len(*b), cap(*b))
		}
		p.Put(b)
		again := p.Get(n)
		if len(*again) != n {
			t.Fatalf("reused Get(%d): len %d", n, len(*again))
		}
	}
	odd := make([]byte, 1000)
	p.Put(&odd) // not a pool size: dropped, never handed out short
	if b := p.Get(1000); cap(*b) != 1024 {
		t.Fatalf("cap %d", cap(*b))
	}
}

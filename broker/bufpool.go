package broker

import (
	"math/bits"
	"sync"

	"google.golang.org/grpc/mem"
)

// dirtyPool is a gRPC buffer pool that does not zero buffers on reuse.
// gRPC's own pools clear every buffer they hand out, which showed as 10% of
// a broker's CPU under replication load (pprof: memclrNoHeapPointers under
// sizedBufferPool.Get); the transport fills each buffer from the network
// before anything reads it, so clearing buys nothing here.
type dirtyPool struct {
	tiers [25]sync.Pool // tier k holds buffers of capacity 1<<k
}

const minTier = 9 // 512 B

func (p *dirtyPool) tier(size int) int {
	if size <= 1<<minTier {
		return minTier
	}
	return bits.Len(uint(size - 1))
}

func (p *dirtyPool) Get(size int) *[]byte {
	k := p.tier(size)
	if k >= len(p.tiers) {
		b := make([]byte, size)
		return &b
	}
	if b, ok := p.tiers[k].Get().(*[]byte); ok {
		*b = (*b)[:size]
		return b
	}
	b := make([]byte, size, 1<<k)
	return &b
}

func (p *dirtyPool) Put(b *[]byte) {
	c := cap(*b)
	if c < 1<<minTier || c&(c-1) != 0 {
		return // not one of ours
	}
	k := bits.Len(uint(c)) - 1
	if k < len(p.tiers) {
		p.tiers[k].Put(b)
	}
}

var _ mem.BufferPool = (*dirtyPool)(nil)

// bufferPool is shared by the broker's gRPC server and its peer clients.
var bufferPool = &dirtyPool{}

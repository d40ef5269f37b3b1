package brokertest

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/partition"
)

// Cluster is several brokers in one test process, on loopback ports, with
// gossip and Raft timings shortened for one machine (STYLE H14). Broker ids
// are 1..n; broker 1 bootstraps the controller quorum and the others join
// it.
type Cluster struct {
	t       testing.TB
	brokers map[int32]*Broker
	order   []int32
	links   *links
}

// links is the fault table of broker-to-broker requests (replication,
// epoch queries, requests to the controller). Gossip and Raft keep their
// own loopback sockets: a cut here partitions the data path, not
// membership; the netns tier of e2e/ cuts everything.
type links struct {
	mu    sync.Mutex
	cut   map[[2]int32]bool
	delay map[[2]int32]time.Duration
	drop  map[[2]int32]float64
	rng   *rand.Rand
}

func (l *links) fault(from, to int32) (time.Duration, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := [2]int32{from, to}
	if l.cut[k] {
		return 0, errors.New("cut by the test")
	}
	if p := l.drop[k]; p > 0 && l.rng.Float64() < p {
		return l.delay[k], errors.New("dropped by the test")
	}
	return l.delay[k], nil
}

// NewCluster starts n brokers and waits until every one of them is ready
// and knows all the others.
func NewCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	c := &Cluster{t: t, brokers: map[int32]*Broker{}, links: &links{
		cut: map[[2]int32]bool{}, delay: map[[2]int32]time.Duration{}, drop: map[[2]int32]float64{},
		rng: rand.New(rand.NewPCG(1, 2)),
	}}
	var seed string
	for i := 1; i <= n; i++ {
		id := int32(i)
		all := append([]Option{func(cfg *broker.Config) {
			cfg.NodeID = id
			cfg.ReplicaLagTime = 2 * time.Second
			cfg.PeerFault = c.links.fault
			if seed != "" {
				cfg.Join = []string{seed}
			}
		}}, opts...)
		b := Start(t, all...)
		if seed == "" {
			seed = b.GossipAddr()
		}
		c.brokers[id] = b
		c.order = append(c.order, id)
	}
	c.WaitFor("every broker registered", 30*time.Second, func() bool {
		for _, b := range c.brokers {
			if b.Broker == nil || !b.Ready() || len(b.Metadata().Brokers) != n {
				return false
			}
		}
		return true
	})
	return c
}

// Cut fails every request from broker a to broker b and from b to a.
func (c *Cluster) Cut(a, b int32) {
	c.links.mu.Lock()
	defer c.links.mu.Unlock()
	c.links.cut[[2]int32{a, b}], c.links.cut[[2]int32{b, a}] = true, true
}

// CutOneWay fails requests from broker from to broker to only.
func (c *Cluster) CutOneWay(from, to int32) {
	c.links.mu.Lock()
	defer c.links.mu.Unlock()
	c.links.cut[[2]int32{from, to}] = true
}

// Isolate cuts broker id from every other broker.
func (c *Cluster) Isolate(id int32) {
	for _, o := range c.order {
		if o != id {
			c.Cut(id, o)
		}
	}
}

// Delay holds every request from a to b (and back) for d.
func (c *Cluster) Delay(a, b int32, d time.Duration) {
	c.links.mu.Lock()
	defer c.links.mu.Unlock()
	c.links.delay[[2]int32{a, b}], c.links.delay[[2]int32{b, a}] = d, d
}

// Drop fails a fraction p of the requests between a and b.
func (c *Cluster) Drop(a, b int32, p float64) {
	c.links.mu.Lock()
	defer c.links.mu.Unlock()
	c.links.drop[[2]int32{a, b}], c.links.drop[[2]int32{b, a}] = p, p
}

// Heal removes every cut, delay and drop.
func (c *Cluster) Heal() {
	c.links.mu.Lock()
	defer c.links.mu.Unlock()
	clear(c.links.cut)
	clear(c.links.delay)
	clear(c.links.drop)
}

// Broker returns broker id.
func (c *Cluster) Broker(id int32) *Broker { return c.brokers[id] }

// Addrs returns every broker's client address.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, id := range c.order {
		out = append(out, c.brokers[id].cfg.Addr)
	}
	return out
}

// Kill stops broker id abruptly, as a crash would look to the others.
func (c *Cluster) Kill(id int32) {
	c.t.Helper()
	c.brokers[id].Kill()
}

// Restart starts broker id again on its data, addresses and ports, joining
// the others.
func (c *Cluster) Restart(id int32) {
	c.t.Helper()
	b := c.brokers[id]
	var seeds []string
	for _, other := range c.order {
		if other != id {
			seeds = append(seeds, c.brokers[other].cfg.GossipAddr)
		}
	}
	b.cfg.Join = seeds
	b.Restart()
}

// WaitFor polls cond every 10 ms until it holds, failing the test after d.
func (c *Cluster) WaitFor(what string, d time.Duration, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			c.t.Fatalf("brokertest: %s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitLeader waits until a running broker leads the partition, serves it
// (its HW has caught up after the election) and returns its id.
func (c *Cluster) WaitLeader(topic string, part int32, d time.Duration) int32 {
	c.t.Helper()
	var leader int32 = -1
	c.WaitFor("a leader for "+topic, d, func() bool {
		for _, id := range c.order {
			b := c.brokers[id]
			if b.Broker == nil || b.cancel == nil {
				continue
			}
			if p := b.Partition(topic, part); p != nil && p.Role() == partition.RoleLeader && p.HWReady() {
				leader = id
				return true
			}
		}
		return false
	})
	return leader
}

// Context is a context bounded to d for test calls.
func (c *Cluster) Context(d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	c.t.Cleanup(cancel)
	return ctx
}

package proctest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/proto/batch"
	pb "github.com/skeinlog/skein/proto/skeinv1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// Cluster is n broker processes on 127.0.0.1: broker 1 bootstraps, the
// others join it.
type Cluster struct {
	t       TB
	Brokers map[int32]*Broker
	IDs     []int32
	extra   []string
	// ClientOpts are added to every client the cluster makes (TLS).
	ClientOpts []client.ClientOpt
}

func StartCluster(t TB, n int, extra ...string) *Cluster {
	t.Helper()
	return StartClusterWith(t, n, nil, extra...)
}

// StartClusterWith is StartCluster whose clients (Client, WaitHealthy) take
// opts, such as client.TLSConfig for brokers serving TLS.
func StartClusterWith(t TB, n int, opts []client.ClientOpt, extra ...string) *Cluster {
	t.Helper()
	c := &Cluster{t: t, Brokers: map[int32]*Broker{}, extra: extra, ClientOpts: opts}
	for i := 1; i <= n; i++ {
		id := int32(i)
		args := append([]string{"--node-id", strconv.Itoa(i)}, extra...)
		if i > 1 {
			args = append(args, "--join", c.Brokers[1].GossipAddr)
		}
		c.Brokers[id] = StartBroker(t, t.TempDir(), "", args...)
		c.IDs = append(c.IDs, id)
	}
	c.WaitHealthy(30 * time.Second)
	return c
}

func (c *Cluster) Addrs() []string {
	var out []string
	for _, id := range c.IDs {
		out = append(out, c.Brokers[id].Addr)
	}
	return out
}

func (c *Cluster) Client() *client.Client {
	c.t.Helper()
	cl, err := client.New(append([]client.ClientOpt{client.Brokers(c.Addrs()...), client.RequestTimeout(10 * time.Second)}, c.ClientOpts...)...)
	if err != nil {
		c.t.Fatalf("%v", err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// Restart starts a stopped broker again, joining the others.
func (c *Cluster) Restart(id int32) {
	c.t.Helper()
	if err := c.TryRestart(id); err != nil {
		c.t.Fatalf("%v", err)
	}
}

// TryRestartAll starts every given (stopped) broker at once, each joining
// all the others: after a power loss no broker is ready until a quorum of
// controllers is back, so they cannot be started one after another.
func (c *Cluster) TryRestartAll(ids []int32) error {
	errs := make(chan error, len(ids))
	for _, id := range ids {
		var seeds []string
		for _, o := range c.IDs {
			if o != id {
				seeds = append(seeds, c.Brokers[o].GossipAddr)
			}
		}
		args := append([]string{"--node-id", strconv.Itoa(int(id))}, c.extra...)
		args = append(args, "--join", strings.Join(seeds, ","))
		go func(b *Broker) { errs <- b.TryRestart(args...) }(c.Brokers[id])
	}
	var first error
	for range ids {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// TryRestart is Restart returning the error.
func (c *Cluster) TryRestart(id int32) error {
	args := append([]string{"--node-id", strconv.Itoa(int(id))}, c.extra...)
	for _, o := range c.IDs {
		if o != id && c.Brokers[o].Running() {
			args = append(args, "--join", c.Brokers[o].GossipAddr)
			break
		}
	}
	return c.Brokers[id].TryRestart(args...)
}

// WaitHealthy waits until every running broker is registered and unfenced
// and every partition has a leader and a full ISR.
func (c *Cluster) WaitHealthy(d time.Duration) {
	c.t.Helper()
	if err := c.TryWaitHealthy(d); err != nil {
		c.t.Fatalf("%v", err)
	}
}

// TryWaitHealthy is WaitHealthy returning the error.
func (c *Cluster) TryWaitHealthy(d time.Duration) error {
	cl, err := client.New(append([]client.ClientOpt{client.Brokers(c.Addrs()...), client.RequestTimeout(2 * time.Second)}, c.ClientOpts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	deadline := time.Now().Add(d)
	var last string
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		desc, err := cl.DescribeCluster(ctx)
		cancel()
		if err == nil {
			ok := len(desc.Problems) == 0 && desc.ControllerID >= 0
			alive := 0
			for _, m := range desc.Members {
				if m.GossipState == "alive" && !m.Fenced {
					alive++
				}
			}
			if ok && alive == len(c.IDs) {
				return nil
			}
			last = fmt.Sprintf("%d alive, %d problems: %+v", alive, len(desc.Problems), desc.Problems)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("cluster not healthy within %v: %s", d, last)
}

// Leader returns the partition's leader according to the metadata of any
// running broker, waiting until one is known that is running.
func (c *Cluster) Leader(cl *client.Client, topic string, part int32, notThis int32, d time.Duration) int32 {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		md, err := cl.Metadata(ctx, topic)
		cancel()
		if err == nil && len(md.Topics) == 1 {
			l := md.Topics[0].Partitions[part].Leader
			if l >= 0 && l != notThis && c.Brokers[l].Running() {
				return l
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.t.Fatalf("no new leader for %s/%d within %v", topic, part, d)
	return -1
}

// ReplicaLog returns a broker's local copy of a partition below upTo; addr
// is the broker's inter-broker address (Broker.PeerAddr).
func ReplicaLog(t TB, addr, topic string, part int32, upTo int64) []byte {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer conn.Close()
	ic := pb.NewInternalClient(conn)
	var out []byte
	for off := int64(0); off < upTo; {
		r, err := ic.LocalLog(context.Background(), &pb.LocalLogRequest{Topic: topic, Partition: part, FromOffset: off, MaxBytes: 4 << 20})
		if err != nil {
			t.Fatalf("local log of %s: %v", addr, err)
		}
		if len(r.Batches) == 0 {
			t.Fatalf("replica %s ends at %d, below %d", addr, r.LogEndOffset, upTo)
		}
		for rest := r.Batches; len(rest) > 0; {
			v, next, err := batch.Next(rest)
			if err != nil {
				t.Fatalf("%v", err)
			}
			if v.BaseOffset() >= upTo {
				return out
			}
			out = append(out, v...)
			off = v.NextOffset()
			rest = next
		}
	}
	return out
}

// ReadAll reads a partition from the beginning to its end.
func ReadAll(t TB, cl *client.Client, topic string, part int32) []*client.Record {
	t.Helper()
	k, err := cl.NewConsumer(client.StopAtEnd())
	if err != nil {
		t.Fatalf("%v", err)
	}
	defer k.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := k.Assign(ctx, topic, []int32{part}, client.Beginning()); err != nil {
		t.Fatalf("%v", err)
	}
	var out []*client.Record
	for {
		r, err := k.Next(ctx)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%v", err)
		}
		out = append(out, r)
	}
}

// Add starts a new broker with the next id, joining the running ones, and
// waits until the cluster counts it healthy.
func (c *Cluster) Add() int32 {
	c.t.Helper()
	id := c.IDs[len(c.IDs)-1] + 1
	args := append([]string{"--node-id", strconv.Itoa(int(id))}, c.extra...)
	for _, o := range c.IDs {
		if c.Brokers[o].Running() {
			args = append(args, "--join", c.Brokers[o].GossipAddr)
			break
		}
	}
	c.Brokers[id] = StartBroker(c.t, c.t.TempDir(), "", args...)
	c.IDs = append(c.IDs, id)
	c.WaitHealthy(30 * time.Second)
	return id
}

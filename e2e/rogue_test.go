package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/cluster"
	"github.com/skeinlog/skein/internal/proctest"
)

// rogue is a bare memberlist node (no gossip key is set, so anyone on the
// network can be one) that gossips whatever broker metadata it likes.
type rogue struct{ meta []byte }

func (r rogue) NodeMeta(int) []byte                      { return r.meta }
func (rogue) NotifyMsg([]byte)                           {}
func (rogue) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (rogue) LocalState(bool) []byte                     { return nil }
func (rogue) MergeRemoteState([]byte, bool)              {}

// startRogue joins a rogue node named name, claiming meta, to the gossip
// address join. It leaves when the test ends.
func startRogue(t *testing.T, name string, meta cluster.MemberMeta, join string) *memberlist.Memberlist {
	t.Helper()
	b, err := json.Marshal(meta)
	if err != nil {
		t.Fatal(err)
	}
	mc := memberlist.DefaultLocalConfig()
	mc.Name, mc.BindAddr, mc.BindPort, mc.AdvertisePort = name, "127.0.0.1", 0, 0
	mc.Delegate = rogue{meta: b}
	mc.LogOutput = io.Discard
	ml, err := memberlist.Create(mc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ml.Shutdown() })
	if _, err := ml.Join([]string{join}); err != nil {
		t.Fatalf("rogue join: %v", err)
	}
	return ml
}

// deadAddr is an address nothing answers on (a closed listener's).
func deadAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// A rogue node gossiping as broker 2 next to a single broker: it is never
// registered, never becomes a voter (the broker keeps its one-voter
// controller quorum and serves), and the broker restarts fine while it
// is there.
func TestRogueGossipNodeSingleBroker(t *testing.T) {
	b := proctest.StartBroker(t, t.TempDir(), "")
	startRogue(t, "skein-2", cluster.MemberMeta{ID: 2, Addr: deadAddr(t), RaftAddr: deadAddr(t), PeerAddr: deadAddr(t), Incarnation: 1}, b.GossipAddr)
	cl, err := client.New(client.Brokers(b.Addr), client.RequestTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	check := func(when string) {
		t.Helper()
		time.Sleep(3 * time.Second) // a dozen controller rounds
		desc, err := cl.DescribeCluster(ctx)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		for _, m := range desc.Members {
			if m.ID == 2 && m.QuorumRole != "" {
				t.Fatalf("%s: the rogue is a %s of the controller quorum", when, m.QuorumRole)
			}
		}
		md, err := cl.Metadata(ctx)
		if err != nil {
			t.Fatalf("%s: %v", when, err)
		}
		if len(md.Brokers) != 1 || md.ControllerID != 1 {
			t.Fatalf("%s: brokers %+v, controller %d; want broker 1 alone, controller", when, md.Brokers, md.ControllerID)
		}
		if _, err := cl.CreateTopic(ctx, "r"+when, client.TopicConfig{Partitions: 2, ReplicationFactor: 1}); err != nil {
			t.Fatalf("%s: create a topic: %v", when, err)
		}
	}
	check("before")
	if !strings.Contains(b.Logs(), "gossip member refused as a broker") {
		t.Errorf("the refusal was not logged:\n%s", b.Logs())
	}
	if code := b.Term(); code != 0 {
		t.Fatalf("stop: exit %d", code)
	}
	b.Restart()
	check("after")
}

// In a cluster, a rogue claiming an unused id (99) gets no registration
// and no partition; one claiming a stopped broker's id (with its storage
// id, which gossip shows) neither unfences it nor keeps it from starting.
func TestRogueGossipNodeCluster(t *testing.T) {
	c := proctest.StartCluster(t, 3)
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	startRogue(t, "skein-99", cluster.MemberMeta{ID: 99, Addr: deadAddr(t), RaftAddr: deadAddr(t), PeerAddr: deadAddr(t), Incarnation: 1}, c.Brokers[1].GossipAddr)
	time.Sleep(3 * time.Second)
	if _, err := cl.CreateTopic(ctx, "spread", client.TopicConfig{Partitions: 12, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	md, err := cl.Metadata(ctx, "spread")
	if err != nil {
		t.Fatal(err)
	}
	for _, bi := range md.Brokers {
		if bi.ID == 99 {
			t.Fatalf("the rogue is a registered broker: %+v", md.Brokers)
		}
	}
	for _, p := range md.Topics[0].Partitions {
		if slices.Contains(p.Replicas, 99) || p.Leader == 99 {
			t.Fatalf("partition %d placed on the rogue: %+v", p.Partition, p)
		}
	}

	// Impersonating stopped broker 3, storage id included.
	var node struct {
		StorageID string `json:"storage_id"`
	}
	data, err := os.ReadFile(filepath.Join(c.Brokers[3].Dir, "node.json"))
	if err != nil || json.Unmarshal(data, &node) != nil || node.StorageID == "" {
		t.Fatalf("node.json of broker 3: %s %v", data, err)
	}
	c.Brokers[3].Kill()
	waitFenced(t, cl, 3, true, 30*time.Second)
	startRogue(t, "skein-3", cluster.MemberMeta{ID: 3, Addr: deadAddr(t), RaftAddr: deadAddr(t), PeerAddr: deadAddr(t), Incarnation: 2,
		StorageID: node.StorageID}, c.Brokers[1].GossipAddr)
	time.Sleep(3 * time.Second)
	waitFenced(t, cl, 3, true, time.Second) // the rogue did not bring it back
	if err := c.TryRestart(3); err != nil {
		t.Fatalf("broker 3 cannot restart next to a node using its id: %v", err)
	}
	waitFenced(t, cl, 3, false, 30*time.Second)
	if md, err := cl.Metadata(ctx); err != nil {
		t.Fatal(err)
	} else {
		for _, bi := range md.Brokers {
			if bi.ID == 3 && bi.Addr != c.Brokers[3].Addr {
				t.Fatalf("broker 3 registered at %s, not its own %s", bi.Addr, c.Brokers[3].Addr)
			}
		}
	}
}

// waitFenced waits until DescribeCluster shows broker id fenced (or not).
func waitFenced(t *testing.T, cl *client.Client, id int32, fenced bool, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	last := ""
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		desc, err := cl.DescribeCluster(ctx)
		cancel()
		if err == nil {
			for _, m := range desc.Members {
				if m.ID == id && m.Fenced == fenced {
					return
				}
			}
			last = ""
			for _, m := range desc.Members {
				last += " " + m.Addr + ":" + m.GossipState
			}
		} else {
			last = err.Error()
		}
		if time.Now().After(deadline) {
			t.Fatalf("broker %d not fenced=%v within %v: %s", id, fenced, d, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

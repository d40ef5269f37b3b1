package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/client"
)

func groupBroker(t *testing.T) (*brokertest.Broker, *client.Client) {
	b := brokertest.Start(t, brokertest.WithConfig(func(c *broker.Config) { c.Groups.OffsetsPartitions = 2 }))
	return b, realClient(t, b)
}

func groupProduce(t *testing.T, c *client.Client, topic string, parts int32, n int) {
	t.Helper()
	p := newProducer(t, c, client.RecordPartitioner(client.ManualPartitioner()))
	batch := time.Now().UnixNano()
	for i := range n {
		if err := p.ProduceSync(ctxT(t), &client.Record{Topic: topic, Partition: int32(i) % parts, Value: []byte(fmt.Sprint(batch, "-", i))}); err != nil {
			t.Fatal(err)
		}
	}
}

// drain reads until io.EOF (StopAtEnd) and returns the values read.
func drain(t *testing.T, g *client.GroupConsumer) []string {
	t.Helper()
	var out []string
	for {
		recs, err := g.Poll(ctxT(t))
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			out = append(out, string(r.Value))
		}
	}
}

func TestGroupConsumerResumesFromCommits(t *testing.T) {
	_, c := groupBroker(t)
	ctx := ctxT(t)
	if _, err := c.CreateTopic(ctx, "orders", client.TopicConfig{Partitions: 3}); err != nil {
		t.Fatal(err)
	}
	groupProduce(t, c, "orders", 3, 30)
	var mu sync.Mutex
	var assigned, revoked []client.TopicPartition
	g, err := c.NewGroupConsumer("billing", []string{"orders"}, client.StopAtEnd(), client.ResetOffset(client.Beginning()),
		client.OnAssigned(func(tps []client.TopicPartition) { mu.Lock(); assigned = append(assigned, tps...); mu.Unlock() }),
		client.OnRevoked(func(tps []client.TopicPartition) { mu.Lock(); revoked = append(revoked, tps...); mu.Unlock() }))
	if err != nil {
		t.Fatal(err)
	}
	if got := drain(t, g); len(got) != 30 {
		t.Fatalf("first member read %d records", len(got))
	}
	if len(assigned) != 3 {
		t.Fatalf("assigned %v", assigned)
	}
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	groupProduce(t, c, "orders", 3, 9)
	g, err = c.NewGroupConsumer("billing", []string{"orders"}, client.StopAtEnd())
	if err != nil {
		t.Fatal(err)
	}
	got := drain(t, g)
	sort.Strings(got)
	if len(got) != 9 {
		t.Fatalf("after a clean stop, the restart read %v; want only the 9 new records", got)
	}
	g.Close()
}

// Two members split the partitions; when one leaves, the other takes them
// over from its commits, reading nothing twice and skipping nothing.
func TestGroupConsumerHandOver(t *testing.T) {
	_, c := groupBroker(t)
	ctx := ctxT(t)
	if _, err := c.CreateTopic(ctx, "t", client.TopicConfig{Partitions: 4}); err != nil {
		t.Fatal(err)
	}
	groupProduce(t, c, "t", 4, 40)
	opts := []client.ConsumerOpt{client.ResetOffset(client.Beginning()), client.AutoCommit(false)}
	a, err := c.NewGroupConsumer("g", []string{"t"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	readFor := func(g *client.GroupConsumer, d time.Duration) {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		for {
			r, err := g.Next(ctx)
			if err != nil {
				return
			}
			seen[string(r.Value)]++
			if err := g.CommitRecords(ctxT(t), r); err != nil {
				t.Errorf("commit: %v", err)
			}
		}
	}
	readFor(a, 2*time.Second)
	b, err := c.NewGroupConsumer("g", []string{"t"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for len(a.Assignment()) != 2 || len(b.Assignment()) != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("not balanced: a %v, b %v", a.Assignment(), b.Assignment())
		}
		readFor(a, 100*time.Millisecond) // a releases inside Next
		readFor(b, 100*time.Millisecond)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	groupProduce(t, c, "t", 4, 8)
	deadline = time.Now().Add(15 * time.Second)
	for len(seen) < 48 && time.Now().Before(deadline) {
		readFor(b, 200*time.Millisecond)
	}
	if len(seen) != 48 || len(b.Assignment()) != 4 {
		t.Fatalf("read %d distinct records, b owns %v", len(seen), b.Assignment())
	}
	for v, n := range seen {
		if n != 1 {
			t.Errorf("record %s read %d times", v, n)
		}
	}
	b.Close()
}

func TestGroupConsumerBadInput(t *testing.T) {
	_, c := groupBroker(t)
	for _, tc := range []struct {
		group  string
		topics []string
		opts   []client.ConsumerOpt
		want   error
	}{
		{"bad/group", []string{"t"}, nil, client.ErrInvalidGroup},
		{"g", []string{"bad/topic"}, nil, client.ErrInvalidTopic},
		{"g", nil, nil, nil},
		{"g", []string{"t"}, []client.ConsumerOpt{client.TopicRegex(".*")}, nil},
		{"g", []string{"t"}, []client.ConsumerOpt{client.SessionTimeout(time.Millisecond)}, nil},
		{"g", []string{"t"}, []client.ConsumerOpt{client.CommitInterval(0)}, nil},
	} {
		g, err := c.NewGroupConsumer(tc.group, tc.topics, tc.opts...)
		if err == nil {
			g.Close()
			t.Errorf("%q %v: no error", tc.group, tc.topics)
			continue
		}
		if tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%q %v: %v, want %v", tc.group, tc.topics, err, tc.want)
		}
	}
	// A regex that is not RE2 fails the member.
	g, err := c.NewGroupConsumer("g", nil, client.TopicRegex("("))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if _, err := g.Poll(ctxT(t)); !errors.Is(err, client.ErrInvalidRequest) {
		t.Fatalf("bad regex: %v", err)
	}
}

// A member fenced by the coordinator (here: it restarted and forgot its
// members) rejoins under a new member id. The partitions it lost are
// revoked as lost: committing their records afterwards fails, even though
// the new member id owns them again — else an old position would be
// stored over the group's progress.
func TestGroupConsumerLostPartitionsCannotBeCommitted(t *testing.T) {
	b, c := groupBroker(t)
	ctx := ctxT(t)
	if _, err := c.CreateTopic(ctx, "t", client.TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	groupProduce(t, c, "t", 1, 10)
	var recs []*client.Record
	lostCommit := make(chan error, 1)
	var g *client.GroupConsumer
	g, err := c.NewGroupConsumer("g", []string{"t"}, client.ResetOffset(client.Beginning()), client.AutoCommit(false),
		client.OnRevoked(func([]client.TopicPartition) {
			time.Sleep(2500 * time.Millisecond) // the heartbeat loop rejoins meanwhile
			select {
			case lostCommit <- g.CommitRecords(ctxT(t), recs[7]):
			default:
			}
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	for len(recs) < 10 {
		r, err := g.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if err := g.CommitRecords(ctx, recs[4]); err != nil {
		t.Fatal(err)
	}
	b.Restart()
	groupProduce(t, c, "t", 1, 1)
	for {
		select {
		case err := <-lostCommit:
			if !errors.Is(err, client.ErrFencedMemberEpoch) {
				t.Fatalf("commit of a lost partition after the rejoin: %v, want ErrFencedMemberEpoch", err)
			}
			offs, err := c.GroupOffsets(ctx, "g")
			if err != nil {
				t.Fatal(err)
			}
			if got := offs[client.TopicPartition{Topic: "t", Partition: 0}]; got != 5 {
				t.Fatalf("committed offset %d after the refused commit, want 5", got)
			}
			return
		default:
		}
		sctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		g.Next(sctx)
		cancel()
	}
}

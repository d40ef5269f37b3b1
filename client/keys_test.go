package client_test

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/client"
)

func TestBrokerProduceIfKeys(t *testing.T) {
	b := brokertest.Start(t)
	c := realClient(t, b)
	ctx := ctxT(t)
	info, err := c.CreateTopic(ctx, "accounts", client.TopicConfig{Partitions: 3, KeyIndex: true})
	if err != nil || !info.Config.KeyIndex {
		t.Fatalf("create: %+v %v", info.Config, err)
	}
	p := newProducer(t, c)
	key := []byte("acct-7")
	exp := []client.KeyExpectation{{Key: key, Offset: client.NoRecord}}
	r := &client.Record{Key: key, Value: []byte("+10")}
	if _, err := p.ProduceIfKeys(ctx, "accounts", exp, r); err != nil {
		t.Fatal(err)
	}
	if want := int32(client.KeyPartition(key, 3)); r.Partition != want {
		t.Fatalf("partition %d, want %d (the key's)", r.Partition, want)
	}
	first := r.Offset
	// Expecting "no record" again loses the race: the error names the
	// key's actual offset.
	_, err = p.ProduceIfKeys(ctx, "accounts", exp, &client.Record{Key: key, Value: []byte("+5")})
	var ce *client.Error
	if !errors.Is(err, client.ErrKeyOffsetMismatch) || !errors.As(err, &ce) || len(ce.KeyOffsets) != 1 || ce.KeyOffsets[0].Offset != first {
		t.Fatalf("stale expectation: %v", err)
	}
	r2 := &client.Record{Key: key, Value: []byte("+5")}
	if _, err := p.ProduceIfKeys(ctx, "accounts", []client.KeyExpectation{{Key: key, Offset: first}}, r2); err != nil {
		t.Fatal(err)
	}
	kv, err := c.GetKey(ctx, "accounts", client.AnyPartition, key)
	if err != nil || !kv.Found || kv.Record.Offset != r2.Offset || string(kv.Record.Value) != "+5" {
		t.Fatalf("GetKey: %+v %v", kv, err)
	}
	if kv, err := c.GetKey(ctx, "accounts", client.AnyPartition, []byte("acct-none")); err != nil || kv.Found {
		t.Fatalf("GetKey of a key without records: %+v %v", kv, err)
	}
	// Bad input changes nothing.
	_, err = p.ProduceIfKeys(ctx, "accounts", []client.KeyExpectation{{Key: []byte("other"), Offset: -1}}, &client.Record{Key: key, Value: []byte("x")})
	if !errors.Is(err, client.ErrInvalidRequest) {
		t.Fatalf("expectation for a key not in the batch: %v", err)
	}
	if kv, _ := c.GetKey(ctx, "accounts", client.AnyPartition, key); kv.Record.Offset != r2.Offset {
		t.Fatalf("bad input appended: %+v", kv)
	}
	// A topic without the key index says how to get one.
	if _, err := c.CreateTopic(ctx, "plain", client.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	_, err = p.ProduceIfKeys(ctx, "plain", exp, &client.Record{Key: key, Value: []byte("x")})
	if !errors.Is(err, client.ErrInvalidRequest) || !containsAll(err.Error(), "key index", "--key-index") {
		t.Fatalf("topic without the key index: %v", err)
	}
	if _, err := c.GetKey(ctx, "plain", 0, key); !errors.Is(err, client.ErrInvalidRequest) {
		t.Fatalf("GetKey on a topic without the key index: %v", err)
	}
	// The key index cannot be turned on later.
	on := true
	if _, err := c.AlterTopic(ctx, "plain", client.TopicAlter{KeyIndex: &on}); !errors.Is(err, client.ErrInvalidRequest) {
		t.Fatalf("alter key index: %v", err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// Writers of different keys of one partition do not conflict; writers of
// the same key lose no update.
func TestBrokerProduceIfKeysCounters(t *testing.T) {
	b := brokertest.Start(t)
	c := realClient(t, b)
	ctx := ctxT(t)
	if _, err := c.CreateTopic(ctx, "counters", client.TopicConfig{Partitions: 1, KeyIndex: true}); err != nil {
		t.Fatal(err)
	}
	p := newProducer(t, c)
	const writers, keys, increments = 4, 3, 10
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < increments*keys; i++ {
				key := []byte(fmt.Sprintf("c%d", (w+i)%keys))
				for {
					kv, err := c.GetKey(ctx, "counters", 0, key)
					if err != nil {
						t.Error(err)
						return
					}
					value, off := 0, client.NoRecord
					if kv.Found {
						value, _ = strconv.Atoi(string(kv.Record.Value))
						off = kv.Record.Offset
					}
					_, err = p.ProduceIfKeys(ctx, "counters", []client.KeyExpectation{{Key: key, Offset: off}},
						&client.Record{Key: key, Value: []byte(strconv.Itoa(value + 1))})
					if err == nil {
						break
					}
					if !errors.Is(err, client.ErrKeyOffsetMismatch) {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	for k := 0; k < keys; k++ {
		kv, err := c.GetKey(ctx, "counters", 0, []byte(fmt.Sprintf("c%d", k)))
		if err != nil || string(kv.Record.Value) != strconv.Itoa(writers*increments) {
			t.Fatalf("counter c%d = %s (%v), want %d", k, kv.Record.Value, err, writers*increments)
		}
	}
}

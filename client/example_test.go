package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"strconv"
	"sync"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/client/clienttest"
)

// The examples run against the in-memory fake cluster of clienttest; with a
// real broker, drop it and the Dialer option and give the brokers'
// addresses (the default is 127.0.0.1:9420).
func fakeCluster() (*clienttest.Cluster, []client.ClientOpt) {
	fake, err := clienttest.Start(clienttest.Options{})
	if err != nil {
		log.Fatal(err)
	}
	return fake, []client.ClientOpt{client.Brokers(fake.Addrs()...), client.Dialer(fake.Dialer())}
}

// Produce a few records and read them back.
func Example() {
	fake, opts := fakeCluster()
	defer fake.Close()
	ctx := context.Background()
	c, err := client.New(opts...)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateTopic(ctx, "demo", client.TopicConfig{Partitions: 1}); err != nil && !errors.Is(err, client.ErrTopicExists) {
		log.Fatal(err)
	}

	p, err := c.NewProducer(client.RequiredAcks(client.AcksAll))
	if err != nil {
		log.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		r := &client.Record{Topic: "demo", Key: []byte("user-" + strconv.Itoa(i)), Value: []byte("hello " + strconv.Itoa(i))}
		p.Produce(ctx, r, func(r *client.Record, err error) {
			if err != nil {
				log.Printf("record %q failed: %v", r.Value, err)
				return
			}
			fmt.Printf("%s stored at %d/%d\n", r.Value, r.Partition, r.Offset)
		})
	}
	if err := p.Flush(ctx); err != nil {
		log.Fatal(err)
	}
	p.Close()

	k, err := c.NewConsumer(client.StopAtEnd())
	if err != nil {
		log.Fatal(err)
	}
	defer k.Close()
	if err := k.Assign(ctx, "demo", nil, client.Beginning()); err != nil {
		log.Fatal(err)
	}
	for {
		r, err := k.Next(ctx)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("read %d/%d %s=%s\n", r.Partition, r.Offset, r.Key, r.Value)
	}
	// Output:
	// hello 0 stored at 0/0
	// hello 1 stored at 0/1
	// hello 2 stored at 0/2
	// read 0/0 user-0=hello 0
	// read 0/1 user-1=hello 1
	// read 0/2 user-2=hello 2
}

// A conditional append that lost its race: the error matches
// ErrOffsetMismatch, and the *Error says where the log really ends.
func ExampleError() {
	fake, opts := fakeCluster()
	defer fake.Close()
	ctx := context.Background()
	c, err := client.New(opts...)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateTopic(ctx, "accounts", client.TopicConfig{Partitions: 1}); err != nil {
		log.Fatal(err)
	}
	p, err := c.NewProducer()
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	if _, err := p.ProduceIf(ctx, "accounts", 0, 0, &client.Record{Value: []byte("opened")}); err != nil {
		log.Fatal(err)
	}
	_, err = p.ProduceIf(ctx, "accounts", 0, 0, &client.Record{Value: []byte("opened again")})
	var e *client.Error
	if errors.Is(err, client.ErrOffsetMismatch) && errors.As(err, &e) {
		fmt.Println("lost the race; the log ends at", e.NextOffset)
		fmt.Println("retriable:", client.IsRetriable(err), "kind:", e.Kind())
	}
	// Output:
	// lost the race; the log ends at 1
	// retriable: false kind: offset mismatch
}

// Resolve offsets without reading: the log's range, and a position counted
// from its end.
func ExampleClient_ListOffsets() {
	fake, opts := fakeCluster()
	defer fake.Close()
	ctx := context.Background()
	c, err := client.New(opts...)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateTopic(ctx, "events", client.TopicConfig{Partitions: 1}); err != nil {
		log.Fatal(err)
	}
	p, err := c.NewProducer(client.RecordPartitioner(client.ManualPartitioner()))
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	for i := 0; i < 10; i++ {
		if err := p.ProduceSync(ctx, &client.Record{Topic: "events", Value: []byte(strconv.Itoa(i))}); err != nil {
			log.Fatal(err)
		}
	}
	for _, o := range []client.Offset{client.Beginning(), client.End(), client.FromEnd(3)} {
		lo, err := c.ListOffsets(ctx, "events", 0, o)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("%s: %d\n", o, lo.Offset)
	}
	_, err = c.ListOffsets(ctx, "events", 0, client.At(42))
	fmt.Println(errors.Is(err, client.ErrOffsetOutOfRange))
	// Output:
	// beginning: 0
	// end: 10
	// 3 before the end: 7
	// true
}

// The optimistic loop: a counter kept as a log of events on one partition,
// incremented by 4 concurrent writers. Each writer reads the log to its end
// (the current value and the offset the next event must take), decides the
// next value, and appends it only if nobody appended in the meantime; on a
// mismatch it reads again. No lock, and no lost update: the counter ends at
// the number of increments, one event each.
func Example_optimisticConcurrency() {
	fake, opts := fakeCluster()
	defer fake.Close()
	ctx := context.Background()
	c, err := client.New(opts...)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateTopic(ctx, "counter", client.TopicConfig{Partitions: 1}); err != nil && !errors.Is(err, client.ErrTopicExists) {
		log.Fatal(err)
	}

	// read returns the counter (the value of the last event) and the
	// partition's next offset.
	read := func() (value int, next int64, err error) {
		k, err := c.NewConsumer(client.StopAtEnd())
		if err != nil {
			return 0, 0, err
		}
		defer k.Close()
		if err := k.Assign(ctx, "counter", []int32{0}, client.FromEnd(1)); err != nil {
			return 0, 0, err
		}
		for {
			r, err := k.Next(ctx)
			if errors.Is(err, io.EOF) {
				return value, k.Positions()[0].Offset, nil
			}
			if err != nil {
				return 0, 0, err
			}
			value, _ = strconv.Atoi(string(r.Value))
		}
	}
	increment := func(p *client.Producer) error {
		for {
			value, next, err := read() // 1. read to the end
			if err != nil {
				return err
			}
			// 2. decide; 3. append only if the log still ends at next.
			_, err = p.ProduceIf(ctx, "counter", 0, next, &client.Record{Value: []byte(strconv.Itoa(value + 1))})
			if errors.Is(err, client.ErrOffsetMismatch) {
				continue // another writer appended first: read again
			}
			return err
		}
	}

	start, _, err := read()
	if err != nil {
		log.Fatal(err)
	}
	const writers, increments = 4, 10
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := c.NewProducer() // idempotent: a retry never appends twice
			if err != nil {
				log.Fatal(err)
			}
			defer p.Close()
			for i := 0; i < increments; i++ {
				if err := increment(p); err != nil {
					log.Fatal(err)
				}
			}
		}()
	}
	wg.Wait()
	end, _, err := read()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%d writers added %d to the counter\n", writers, end-start)
	// Output:
	// 4 writers added 40 to the counter
}

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
)

// Produce a few records and read them back. It needs a broker on the
// default address (go run ./cmd/broker).
func Example() {
	ctx := context.Background()
	c, err := client.New(client.Brokers("127.0.0.1:9420"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.CreateTopic(ctx, "demo", client.TopicConfig{Partitions: 3}); err != nil && !errors.Is(err, client.ErrTopicExists) {
		log.Fatal(err)
	}

	p, err := c.NewProducer(client.RequiredAcks(client.AcksAll))
	if err != nil {
		log.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		r := &client.Record{Topic: "demo", Key: []byte("user-" + strconv.Itoa(i%3)), Value: []byte("hello " + strconv.Itoa(i))}
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
		fmt.Printf("%d/%d %s=%s\n", r.Partition, r.Offset, r.Key, r.Value)
	}
}

// The optimistic loop: a counter kept as a log of events on one partition,
// incremented by 8 concurrent writers. Each writer reads the log to its end
// (the current value and the offset the next event must take), decides the
// next value, and appends it only if nobody appended in the meantime; on a
// mismatch it reads again. No lock, and no lost update: the counter ends at
// the number of increments, one event each.
func Example_optimisticConcurrency() {
	ctx := context.Background()
	c, err := client.New(client.Brokers("127.0.0.1:9420"))
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
	const writers, increments = 8, 25
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
	// With a broker running, it prints:
	// 8 writers added 200 to the counter
}

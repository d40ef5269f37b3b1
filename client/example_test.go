package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"strconv"

	"github.com/skeinlog/skein/client"
)

// Produce a few records and read them back. It needs a broker on the
// default address (go run ./cmd/broker).
func Example() {
	ctx := context.Background()
	c, err := client.New(client.WithBrokers("127.0.0.1:9420"))
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

// The optimistic loop: a counter kept as a log of events on one partition.
// Each writer reads the log to its end, decides the next value, and appends
// it only if nobody appended in the meantime; on a mismatch it reads again.
// Any number of writers can run this at once without a lock and without a
// lost update.
func Example_optimisticConcurrency() {
	ctx := context.Background()
	c, err := client.New()
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	p, err := c.NewProducer()
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()

	increment := func() (int, error) {
		for {
			// 1. Read to the end: the current value and the next offset.
			k, err := c.NewConsumer(client.StopAtEnd())
			if err != nil {
				return 0, err
			}
			if err := k.Assign(ctx, "counter", []int32{0}, client.FromEnd(1)); err != nil {
				k.Close()
				return 0, err
			}
			value := 0
			for {
				r, err := k.Next(ctx)
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					k.Close()
					return 0, err
				}
				value, _ = strconv.Atoi(string(r.Value))
			}
			next := k.Positions()[0].Offset
			k.Close()

			// 2. Decide. 3. Append only if the log still ends at next.
			value++
			_, err = p.ProduceIf(ctx, "counter", 0, next, &client.Record{Value: []byte(strconv.Itoa(value))})
			if errors.Is(err, client.ErrOffsetMismatch) {
				continue // someone else appended first: read again
			}
			return value, err
		}
	}
	v, err := increment()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("counter is now", v)
}

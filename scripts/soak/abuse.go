package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/proto/batch"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// pattern is one abusive client behaviour; run keeps it up until ctx ends
// and releases what it holds before returning.
type pattern struct {
	name string
	run  func(ctx context.Context, e *env) error
}

func abusivePatterns() []pattern {
	return []pattern{
		{"unread-streams", unreadStreams},
		{"compression-bombs", compressionBombs},
		{"topic-flood", topicFlood},
		{"slow-consumers", slowConsumers},
		{"greedy-producer", greedyProducer},
	}
}

// rawConn is a gRPC connection with a 64 KiB flow-control window, as a
// client that does not read takes no more.
func rawConn(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20), grpc.MaxCallRecvMsgSize(64<<20)))
}

// skein is a client on a connection of its own (rawConn); done closes it.
func (e *env) skein() (pb.SkeinClient, func(), error) {
	conn, err := rawConn(e.b.addr)
	if err != nil {
		return nil, nil, err
	}
	return pb.NewSkeinClient(conn), func() { conn.Close() }, nil
}

// unreadStreams opens 2,000 fetch streams (4 connections of 500) asking
// for 16 MiB answers from the start of the normal topic and never reads
// them.
func unreadStreams(ctx context.Context, e *env) error {
	start, err := e.logStarts(ctx)
	if err != nil {
		return err
	}
	var conns []*grpc.ClientConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 4 {
		conn, err := rawConn(e.b.addr)
		if err != nil {
			return err
		}
		conns = append(conns, conn)
		c := pb.NewSkeinClient(conn)
		for i := range 500 {
			if _, err := c.Fetch(ctx, &pb.FetchRequest{Topic: normalTopic, Partition: int32(i % 3), Offset: start[i%3], MaxBytes: 16 << 20, LeaderEpoch: -1}); err != nil {
				return err
			}
			e.abuse.Add(1)
		}
	}
	<-ctx.Done()
	return nil
}

// compressionBombs has 8 producers send zstd batches of a few KiB that
// inflate to 60 MiB, half of them understating their size.
func compressionBombs(ctx context.Context, e *env) error {
	honest, err := zstdBomb(60<<20, 0)
	if err != nil {
		return err
	}
	lying, err := zstdBomb(60<<20, 1000)
	if err != nil {
		return err
	}
	c, done, err := e.skein()
	if err != nil {
		return err
	}
	defer done()
	var wg sync.WaitGroup
	for i := range 8 {
		bomb := honest
		if i%2 == 1 {
			bomb = lying
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				c.Produce(ctx, &pb.ProduceRequest{Topic: normalTopic, LeaderEpoch: -1, Batch: bomb})
				e.abuse.Add(1)
			}
		}()
	}
	wg.Wait()
	return nil
}

// zstdBomb is one record of size zero bytes, zstd-compressed; with lie >
// 0 the batch declares lie bytes uncompressed instead.
func zstdBomb(size int, lie uint64) ([]byte, error) {
	b := batch.NewBuilder(batch.Zstd)
	b.Add(&batch.Record{Value: make([]byte, size)})
	v, err := b.Build(nil)
	if err != nil || lie == 0 {
		return v, err
	}
	_, k := binary.Uvarint(v[batch.HeaderSize:])
	out := append(append([]byte{}, v[:batch.HeaderSize]...), binary.AppendUvarint(nil, lie)...)
	out = append(out, v[batch.HeaderSize+k:]...)
	binary.LittleEndian.PutUint32(out[8:], uint32(len(out)-12))
	binary.LittleEndian.PutUint32(out[17:], batch.CRC32C(out[21:]))
	return out, nil
}

// topicFlood creates 4-partition topics as fast as the broker takes them,
// at most 400, and deletes them when the phase ends.
func topicFlood(ctx context.Context, e *env) error {
	var made []string
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		for _, t := range made {
			if err := e.admin.DeleteTopic(dctx, t); err != nil {
				fmt.Printf("soak: delete %s: %v\n", t, err)
			}
		}
	}()
	for i := 0; i < 400 && ctx.Err() == nil; i++ {
		name := fmt.Sprintf("flood-%d-%d", time.Now().UnixNano(), i)
		if _, err := e.admin.CreateTopic(ctx, name, client.TopicConfig{Partitions: 4}); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		made = append(made, name)
		e.abuse.Add(1)
	}
	<-ctx.Done()
	return nil
}

// slowConsumers runs 200 fetch streams from the start of the normal topic
// that read one 1 MiB answer every 2 s.
func slowConsumers(ctx context.Context, e *env) error {
	start, err := e.logStarts(ctx)
	if err != nil {
		return err
	}
	c, done, err := e.skein()
	if err != nil {
		return err
	}
	defer done()
	var wg sync.WaitGroup
	var first sync.Once
	var firstErr error
	for i := range 200 {
		st, err := c.Fetch(ctx, &pb.FetchRequest{Topic: normalTopic, Partition: int32(i % 3), Offset: start[i%3], MaxBytes: 1 << 20, LeaderEpoch: -1})
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				if _, err := st.Recv(); err != nil {
					if ctx.Err() == nil {
						first.Do(func() { firstErr = fmt.Errorf("a slow consumer's stream ended: %w", err) })
					}
					return
				}
				e.abuse.Add(1)
				select {
				case <-ctx.Done():
				case <-time.After(2 * time.Second):
				}
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// logStarts is the log start offset of each of the normal topic's
// partitions: reading from offset 0 once retention has deleted the first
// segments ends the stream at once (out of range), and the pattern would
// hold nothing.
func (e *env) logStarts(ctx context.Context) ([]int64, error) {
	c, done, err := e.skein()
	if err != nil {
		return nil, err
	}
	defer done()
	out := make([]int64, 3)
	for p := range out {
		resp, err := c.ListOffsets(ctx, &pb.ListOffsetsRequest{Topic: normalTopic, Partition: int32(p), Spec: &pb.ListOffsetsRequest_Earliest{Earliest: true}})
		if err != nil {
			return nil, fmt.Errorf("log start of %s/%d: %w", normalTopic, p, err)
		}
		out[p] = resp.Offset
	}
	return out, nil
}

// greedyProducer sends at 10 MB/s under a client id whose produce quota
// is 1 MB/s.
func greedyProducer(ctx context.Context, e *env) error {
	ent := client.QuotaEntity{ClientID: "soak-greedy"}
	if err := e.admin.AlterQuota(ctx, ent, client.QuotaLimits{ProduceBytesPerSec: 1e6}); err != nil {
		return err
	}
	cl, err := client.New(client.Brokers(e.b.addr), client.ClientID("soak-greedy"))
	if err != nil {
		return err
	}
	defer cl.Close()
	p, err := cl.NewProducer(client.MaxBufferedBytes(1 << 20))
	if err != nil {
		return err
	}
	val := make([]byte, 16<<10)
	for start, sent := time.Now(), 0.0; ctx.Err() == nil; time.Sleep(10 * time.Millisecond) {
		for due := 10e6 * time.Since(start).Seconds(); sent < due && ctx.Err() == nil; sent += float64(len(val)) {
			p.Produce(ctx, &client.Record{Topic: normalTopic, Value: val}, nil)
			e.abuse.Add(1)
		}
	}
	return p.Close() // sends what is buffered (1 MiB at most) at the quota
}

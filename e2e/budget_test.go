package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/skeinlog/skein/internal/proctest"
	"github.com/skeinlog/skein/proto/batch"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// rawConn is a plain gRPC connection with a fixed 64 KiB flow-control
// window: a client that opens streams and does not read them takes no more.
func rawConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20), grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// fillPartition appends n batches of size bytes (one record each).
func fillPartition(t *testing.T, c pb.SkeinClient, topic string, n, size int) {
	t.Helper()
	for i := range n {
		b := batch.NewBuilder(batch.None)
		b.Add(&batch.Record{Timestamp: time.Now().UnixMilli(), Value: []byte(strings.Repeat(fmt.Sprint(i%10), size))})
		data, err := b.Build(nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Produce(context.Background(), &pb.ProduceRequest{Topic: topic, LeaderEpoch: -1, Batch: data}); err != nil {
			t.Fatal(err)
		}
	}
}

func rss(t *testing.T, b *proctest.Broker) int64 {
	t.Helper()
	n, err := b.RSS()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Fetch streams that ask for the largest answer and never read it: the
// broker's memory stays within its in-flight budget, and it serves a
// normal producer and consumer beside them and after them.
func TestIdleFetchStreamsKeepMemoryBounded(t *testing.T) {
	const (
		streams = 128
		budget  = 64 << 20
	)
	b := proctest.StartBroker(t, t.TempDir(), "", "--max-inflight-bytes", fmt.Sprint(budget))
	conn := rawConn(t, b.Addr)
	c := pb.NewSkeinClient(conn)
	if _, err := c.CreateTopic(context.Background(), &pb.CreateTopicRequest{Name: "idle", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	fillPartition(t, c, "idle", 64, 64<<10) // 4 MiB
	before := rss(t, b)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	conns := []*grpc.ClientConn{rawConn(t, b.Addr), rawConn(t, b.Addr), rawConn(t, b.Addr), rawConn(t, b.Addr)}
	for i := range streams {
		fc := pb.NewSkeinClient(conns[i%len(conns)])
		if _, err := fc.Fetch(ctx, &pb.FetchRequest{Topic: "idle", LeaderEpoch: -1, MaxBytes: 16 << 20, MaxWaitMs: 30000}); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	var peak int64
	for range 30 { // 3 s, sampled every 100 ms
		time.Sleep(100 * time.Millisecond)
		peak = max(peak, rss(t, b))
	}
	t.Logf("%d unread fetch streams over 4 MiB: RSS %d MiB before, peak %d MiB (budget %d MiB)", streams, before>>20, peak>>20, budget>>20)
	if limit := before + 3*budget; peak > limit {
		t.Fatalf("RSS peaked at %d MiB, over %d MiB (before + 3 x the in-flight budget)", peak>>20, limit>>20)
	}
	// A normal producer and consumer are served beside the idle streams.
	proctest.MustCLI(t, "produce", "beside\n", "-t", "idle", "-b", b.Addr)
	cancel()
	proctest.MustCLI(t, "produce", "after\n", "-t", "idle", "-b", b.Addr)
	r := proctest.MustCLI(t, "consume", "", "-t", "idle", "-o", "beginning", "-e", "-b", b.Addr)
	if !strings.HasSuffix(r.Stdout, "beside\nafter\n") || strings.Count(r.Stdout, "\n") != 66 {
		t.Fatalf("consumed %d lines ending %q", strings.Count(r.Stdout, "\n"), r.Stdout[max(0, len(r.Stdout)-40):])
	}
}

// zstdBomb is one record of size zero bytes, zstd-compressed: a few KiB.
// With lie > 0 the batch declares lie bytes uncompressed instead.
func zstdBomb(t *testing.T, size int, lie uint64) []byte {
	t.Helper()
	b := batch.NewBuilder(batch.Zstd)
	b.Add(&batch.Record{Value: make([]byte, size)})
	v, err := b.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	if lie == 0 {
		return v
	}
	_, k := binary.Uvarint(v[batch.HeaderSize:])
	out := append(append([]byte{}, v[:batch.HeaderSize]...), binary.AppendUvarint(nil, lie)...)
	out = append(out, v[batch.HeaderSize+k:]...)
	binary.LittleEndian.PutUint32(out[8:], uint32(len(out)-12))     // batch length
	binary.LittleEndian.PutUint32(out[17:], batch.CRC32C(out[21:])) // CRC
	return out
}

// Twenty producers sending zstd bombs (a few KiB inflating to 60 MiB, some
// declaring so and some lying) for three seconds: every one is refused,
// nothing is appended, memory stays flat and the broker serves after.
func TestCompressionBombsKeepMemoryBounded(t *testing.T) {
	b := proctest.StartBroker(t, t.TempDir(), "")
	c := pb.NewSkeinClient(rawConn(t, b.Addr))
	if _, err := c.CreateTopic(context.Background(), &pb.CreateTopicRequest{Name: "bombs", Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	honest, lying := zstdBomb(t, 60<<20, 0), zstdBomb(t, 60<<20, 1000)
	t.Logf("bomb: %d bytes on the wire, 60 MiB inflated", len(honest))
	before := rss(t, b)
	stop := time.Now().Add(3 * time.Second)
	errs := make(chan error, 20)
	var sent atomic.Int64
	for i := range 20 {
		bomb := honest
		if i%2 == 1 {
			bomb = lying
		}
		go func() {
			for time.Now().Before(stop) {
				_, err := c.Produce(context.Background(), &pb.ProduceRequest{Topic: "bombs", LeaderEpoch: -1, Batch: bomb})
				if status.Code(err) != codes.InvalidArgument {
					errs <- fmt.Errorf("bomb answered %v", err)
					return
				}
				sent.Add(1)
			}
			errs <- nil
		}()
	}
	var peak int64
	for done := 0; done < 20; {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
			done++
		case <-time.After(100 * time.Millisecond):
			peak = max(peak, rss(t, b))
		}
	}
	peak = max(peak, rss(t, b))
	t.Logf("%d bombs refused in 3 s; RSS %d MiB before, peak %d MiB", sent.Load(), before>>20, peak>>20)
	if peak > before+128<<20 {
		t.Fatalf("RSS grew from %d to %d MiB", before>>20, peak>>20)
	}
	lo, err := c.ListOffsets(context.Background(), &pb.ListOffsetsRequest{Topic: "bombs", Spec: &pb.ListOffsetsRequest_Latest{Latest: true}})
	if err != nil || lo.Offset != 0 {
		t.Fatalf("after the bombs the log ends at %v (%v), want 0", lo.GetOffset(), err)
	}
	proctest.MustCLI(t, "produce", "after\n", "-t", "bombs", "-b", b.Addr)
	if r := proctest.MustCLI(t, "consume", "", "-t", "bombs", "-o", "beginning", "-e", "-b", b.Addr); r.Stdout != "after\n" {
		t.Fatalf("consumed %q", r.Stdout)
	}
}

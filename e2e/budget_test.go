package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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

// Under an open file limit of 400, topics are created while their handles
// fit and refused, with nothing committed, once they would not; the broker
// logs its limit and serves the topics it has. It also checks the broker's
// estimate of handles per partition against what partitions take.
func TestTopicCreationRefusedPastFileHandles(t *testing.T) {
	prlimit, err := exec.LookPath("prlimit")
	if err != nil {
		t.Skip("prlimit (util-linux) is not installed")
	}
	b := proctest.StartBrokerUnder(t, []string{prlimit, "--nofile=400:400"}, t.TempDir())
	if !strings.Contains(b.Logs(), `"msg":"open file limit","soft":400,"hard":400`) {
		t.Fatalf("the broker did not log its open file limit:\n%s", b.Logs())
	}
	c := pb.NewSkeinClient(rawConn(t, b.Addr))
	open0, err := b.OpenFiles()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateTopic(context.Background(), &pb.CreateTopicRequest{Name: "a", Partitions: 100}); err != nil {
		t.Fatal(err)
	}
	open1, _ := b.OpenFiles()
	// A few handles of slack for connections the create opened.
	if open1-open0 > 2*100+4 {
		t.Fatalf("100 partitions took %d file handles; the broker's estimate (handlesPerPartition) is 2 each", open1-open0)
	}
	_, err = c.CreateTopic(context.Background(), &pb.CreateTopicRequest{Name: "b", Partitions: 100})
	if st, _ := status.FromError(err); st.Code() != codes.ResourceExhausted || !strings.Contains(st.Message(), "open file limit") {
		t.Fatalf("100 more partitions under a limit of 400 (%d open): %v", open1, err)
	}
	lt, err := c.ListTopics(context.Background(), &pb.ListTopicsRequest{})
	if err != nil || len(lt.Topics) != 1 || lt.Topics[0].Name != "a" {
		t.Fatalf("topics after the refusal: %v (%v)", lt, err)
	}
	if _, err := c.CreateTopic(context.Background(), &pb.CreateTopicRequest{Name: "c", Partitions: 10}); err != nil {
		t.Fatalf("a topic that fits after the refusal: %v", err)
	}
	proctest.MustCLI(t, "produce", "x\n", "-t", "a", "-p", "99", "-b", b.Addr)
	if r := proctest.MustCLI(t, "consume", "", "-t", "a", "-p", "99", "-o", "beginning", "-e", "-b", b.Addr); r.Stdout != "x\n" {
		t.Fatalf("consumed %q", r.Stdout)
	}
}

func getReadyz(t *testing.T, b *proctest.Broker) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + b.HTTPAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// A broker whose data directory is on a 100 MiB tmpfs: /readyz fails with
// the reason once the disk is nearly full and recovers when space is freed.
// Needs root (mount); skipped otherwise.
func TestReadyzDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=100m", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	b := proctest.StartBroker(t, dir, "")
	if code, body := getReadyz(t, b); code != 200 {
		t.Fatalf("on an empty disk: %d %q", code, body)
	}
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 60<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, body := getReadyz(t, b); code != 503 || !strings.Contains(body, "disk nearly full") {
		t.Fatalf("with 40 MiB free: %d %q", code, body)
	}
	os.Remove(filler)
	if code, body := getReadyz(t, b); code != 200 {
		t.Fatalf("after freeing space: %d %q", code, body)
	}
}

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/proctest"
)

// duplicatesAnswered scrapes the broker's count of retried batches it
// answered as duplicates (0 if it cannot be read).
func duplicatesAnswered(b *proctest.Broker) int {
	resp, err := http.Get("http://" + b.HTTPAddr + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "skein_produce_duplicates_total "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f)
		}
	}
	return 0
}

// An idempotent producer with 5 requests in flight per partition keeps
// producing while its leader is killed (kill -9, then restarted on the same
// data and address, as a single broker's "leader change") at least 5
// times, until the broker has answered some retry as a duplicate: every
// record the producer was given is stored exactly once, in producer order
// within its partition, at the offset it was acknowledged at.
func TestIdempotentProducerAcrossLeaderKills(t *testing.T) {
	b := proctest.StartBroker(t, t.TempDir(), "")
	proctest.MustCLI(t, "broker", "", "topic", "create", "idem", "--partitions", "3", "--brokers", b.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(proctest.Bins(t), "produce"), "-t", "idem", "-b", b.Addr,
		"--count", "100000000", "--rate", "40000", "--size", "100", "--payload", "json",
		"--batch-bytes", "4096", "--linger", "1ms", "--delivery-timeout", "4m", "--report", "--stats", "json")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 3))
	kills, dups := 0, 0
	for kills < 5 || (dups == 0 && kills < 40) {
		time.Sleep(time.Duration(300+rng.IntN(500)) * time.Millisecond)
		dups += duplicatesAnswered(b)
		b.Kill()
		kills++
		time.Sleep(time.Duration(50+rng.IntN(250)) * time.Millisecond)
		b.Restart()
	}
	time.Sleep(time.Second)
	dups += duplicatesAnswered(b)
	// Stop the generator: it sends everything it was given and reports.
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if ctx.Err() != nil {
		t.Fatalf("produce did not finish:\n%s", errb.String())
	}
	var ee *exec.ExitError
	if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 130) {
		t.Fatalf("produce: %v\n%s", err, errb.String())
	}
	if dups == 0 {
		t.Fatalf("no retry of an appended batch in %d kills: the test did not exercise deduplication", kills)
	}

	// What the producer acknowledged: "partition offset record N" lines,
	// then the JSON summary.
	type pos struct {
		partition int32
		offset    int64
	}
	acked := map[int64]pos{}
	var sum struct {
		Records, Failed int64
		ProducerID      int64 `json:"producer_id"`
	}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "{") {
			if err := json.Unmarshal([]byte(line), &sum); err != nil {
				t.Fatalf("summary %q: %v", line, err)
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) != 4 || f[2] != "record" {
			t.Fatalf("report line %q", line)
		}
		p, _ := strconv.Atoi(f[0])
		o, _ := strconv.ParseInt(f[1], 10, 64)
		id, _ := strconv.ParseInt(f[3], 10, 64)
		if _, dup := acked[id]; dup {
			t.Fatalf("record %d acknowledged twice", id)
		}
		acked[id] = pos{int32(p), o}
	}
	if sum.Failed != 0 || sum.Records != int64(len(acked)) || sum.ProducerID < 0 || len(acked) == 0 {
		t.Fatalf("summary %+v with %d acknowledged records:\n%s", sum, len(acked), errb.String())
	}
	// The generator numbers records from 0, and the producer was given a
	// prefix of them: all acknowledged.
	for id := range int64(len(acked)) {
		if _, ok := acked[id]; !ok {
			t.Fatalf("record %d was produced but not acknowledged", id)
		}
	}

	r := proctest.MustCLI(t, "consume", "", "-t", "idem", "-b", b.Addr, "-o", "beginning", "-e", "--json")
	seen := map[int64]bool{}
	lastID := map[int32]int64{0: -1, 1: -1, 2: -1}
	next := map[int32]int64{}
	sc = bufio.NewScanner(strings.NewReader(r.Stdout))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var rec client.Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("consume line %q: %v", sc.Text(), err)
		}
		if rec.Offset != next[rec.Partition] {
			t.Fatalf("partition %d: offset %d after %d: not dense", rec.Partition, rec.Offset, next[rec.Partition]-1)
		}
		next[rec.Partition]++
		var body struct{ ID int64 }
		if err := json.Unmarshal(rec.Value, &body); err != nil {
			t.Fatalf("value at %d/%d: %v", rec.Partition, rec.Offset, err)
		}
		if seen[body.ID] {
			t.Fatalf("record %d stored twice (again at %d/%d)", body.ID, rec.Partition, rec.Offset)
		}
		seen[body.ID] = true
		if body.ID <= lastID[rec.Partition] {
			t.Fatalf("partition %d: record %d after record %d: producer order broken", rec.Partition, body.ID, lastID[rec.Partition])
		}
		lastID[rec.Partition] = body.ID
		if want, ok := acked[body.ID]; !ok {
			t.Fatalf("record %d stored but never acknowledged", body.ID)
		} else if want != (pos{rec.Partition, rec.Offset}) {
			t.Fatalf("record %d acknowledged at %v, stored at %d/%d", body.ID, want, rec.Partition, rec.Offset)
		}
	}
	if len(seen) != len(acked) {
		t.Fatalf("%d records acknowledged, %d stored", len(acked), len(seen))
	}
	t.Logf("%d kill -9s, %d retried batches answered as duplicates; %d records each stored once, in order (log ends %v)",
		kills, dups, len(seen), fmt.Sprint(next))
}

// contentionDuration is how long the conditional-append test runs:
// SKEIN_E2E_CONTENTION (a Go duration), 30 s by default, 3 s with -short.
func contentionDuration(t *testing.T) time.Duration {
	if v := os.Getenv("SKEIN_E2E_CONTENTION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SKEIN_E2E_CONTENTION=%q: %v", v, err)
		}
		return d
	}
	if testing.Short() {
		return 3 * time.Second
	}
	return 30 * time.Second
}

// 8 writers, each with its own client and idempotent producer, increment
// a counter kept as a log of events on one partition, with the optimistic
// loop of the client example: read the last value and the next offset,
// append value+1 at that offset, and on a mismatch read again. No writer
// gives up on a failed append. The final log has no gap and no lost update:
// the event at offset i says i+1, and it is the one its writer was told
// it appended there.
func TestConditionalAppendContention(t *testing.T) {
	b := proctest.StartBroker(t, t.TempDir(), "")
	proctest.MustCLI(t, "broker", "", "topic", "create", "counter", "--brokers", b.Addr)
	run := contentionDuration(t)
	const writers = 8
	type win struct {
		writer int
		value  int
	}
	var (
		mu         sync.Mutex
		wins       = map[int64]win{} // offset -> who appended what
		mismatches atomic.Int64
		appends    atomic.Int64
	)
	ctx, cancel := context.WithTimeout(context.Background(), run+2*time.Minute)
	defer cancel()
	deadline := time.Now().Add(run)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := client.New(client.Brokers(b.Addr))
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			p, err := c.NewProducer()
			if err != nil {
				t.Error(err)
				return
			}
			defer p.Close()
			for time.Now().Before(deadline) {
				// One increment: retried until it lands.
				for {
					value, next, err := readCounter(ctx, c)
					if err != nil {
						t.Errorf("writer %d: read: %v", w, err)
						return
					}
					rec := &client.Record{Value: []byte(strconv.Itoa(value + 1)), Headers: []client.Header{{Key: "writer", Value: []byte(strconv.Itoa(w))}}}
					off, err := p.ProduceIf(ctx, "counter", 0, next, rec)
					if errors.Is(err, client.ErrOffsetMismatch) {
						mismatches.Add(1)
						continue
					}
					if err != nil {
						t.Errorf("writer %d: append at %d: %v", w, next, err)
						return
					}
					appends.Add(1)
					mu.Lock()
					if prev, ok := wins[off]; ok {
						t.Errorf("offset %d acknowledged to writer %d and writer %d", off, prev.writer, w)
					}
					wins[off] = win{w, value + 1}
					mu.Unlock()
					break
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if t.Failed() {
		return
	}

	r := proctest.MustCLI(t, "consume", "", "-t", "counter", "-b", b.Addr, "-o", "beginning", "-e", "--json")
	n := int64(0)
	perWriter := map[int]int{}
	sc := bufio.NewScanner(strings.NewReader(r.Stdout))
	for sc.Scan() {
		var rec client.Record
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("consume line %q: %v", sc.Text(), err)
		}
		if rec.Offset != n {
			t.Fatalf("offset %d after %d: a gap", rec.Offset, n-1)
		}
		v, err := strconv.Atoi(string(rec.Value))
		if err != nil || int64(v) != n+1 {
			t.Fatalf("offset %d says %q, want %d: a lost update", n, rec.Value, n+1)
		}
		w := wins[n]
		if len(rec.Headers) != 1 || string(rec.Headers[0].Value) != strconv.Itoa(w.writer) || w.value != v {
			t.Fatalf("offset %d holds %q from %v; writer %d was told it appended %d there", n, rec.Value, rec.Headers, w.writer, w.value)
		}
		perWriter[w.writer]++
		n++
	}
	if n != appends.Load() || n != int64(len(wins)) {
		t.Fatalf("%d events in the log, %d appends acknowledged", n, appends.Load())
	}
	if mismatches.Load() == 0 {
		t.Fatal("no conditional append lost a race: the writers did not contend")
	}
	t.Logf("%d writers for %v: counter at %d, no gap, no lost update; %.0f appends/s, %d mismatches retried (%.0f attempts/s); per writer %v",
		writers, elapsed.Round(time.Millisecond), n, float64(n)/elapsed.Seconds(), mismatches.Load(),
		float64(n+mismatches.Load())/elapsed.Seconds(), perWriter)
}

// readCounter reads the counter's last event: its value (0 when there is
// none) and the partition's next offset.
func readCounter(ctx context.Context, c *client.Client) (int, int64, error) {
	k, err := c.NewConsumer(client.StopAtEnd())
	if err != nil {
		return 0, 0, err
	}
	defer k.Close()
	if err := k.Assign(ctx, "counter", []int32{0}, client.FromEnd(1)); err != nil {
		return 0, 0, err
	}
	value := 0
	for {
		r, err := k.Next(ctx)
		if errors.Is(err, io.EOF) {
			return value, k.Positions()[0].Offset, nil
		}
		if err != nil {
			return 0, 0, err
		}
		if value, err = strconv.Atoi(string(r.Value)); err != nil {
			return 0, 0, fmt.Errorf("offset %d holds %q", r.Offset, r.Value)
		}
	}
}

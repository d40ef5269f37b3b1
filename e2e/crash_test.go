package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/proctest"
)

type ackKey struct {
	partition int32
	offset    int64
}

type ackVal struct {
	run int
	id  int64
}

// kill -9 the broker while `produce --count` runs, restart it, 20 times in a
// row: it always starts on its own data, and every record that was
// acknowledged is read back at its acknowledged offset, with offsets dense.
// On each storage engine; on the journal engine also with the writes spread
// over many partitions, so that a replay after the kill has many
// partitions' records to put back.
func TestCrashRecovery(t *testing.T) {
	for _, tc := range []struct {
		engine     string
		partitions int
	}{{"wal", 2}, {"journal", 2}, {"journal", 40}} {
		t.Run(fmt.Sprintf("%s/%d", tc.engine, tc.partitions), func(t *testing.T) { crashRecovery(t, tc.engine, tc.partitions) })
	}
}

func crashRecovery(t *testing.T, engine string, partitions int) {
	runs := 20
	if testing.Short() {
		runs = 3
	}
	b := proctest.StartBroker(t, t.TempDir(), "", "--storage-engine", engine, "--journal-checkpoint-interval", "300ms")
	proctest.MustCLI(t, "broker", "", "topic", "create", "crash", "--partitions", strconv.Itoa(partitions), "--brokers", b.Addr)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	acked := map[ackKey]ackVal{}
	killedMidway := 0
	for run := range runs {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		cmd := exec.CommandContext(ctx, filepath.Join(proctest.Bins(t), "produce"), "-t", "crash", "-b", b.Addr,
			"--count", "2000000", "--size", "120", "--payload", "json", "--report",
			"-H", "run="+strconv.Itoa(run), "--delivery-timeout", "1s", "--linger", "1ms")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(150+rng.IntN(400)) * time.Millisecond)
		b.Kill()
		// Stop the generator too (Ctrl-C): it fails what is buffered within
		// its delivery timeout and reports what was acknowledged.
		cmd.Process.Signal(syscall.SIGINT)
		err := cmd.Wait()
		if ctx.Err() != nil {
			t.Fatalf("run %d: produce did not exit after the broker died:\n%s", run, errb.String())
		}
		cancel()
		if err != nil {
			killedMidway++
		}
		n := 0
		sc := bufio.NewScanner(&out)
		for sc.Scan() {
			// "partition offset record N"
			f := strings.Fields(sc.Text())
			if len(f) != 4 || f[2] != "record" {
				t.Fatalf("run %d: report line %q", run, sc.Text())
			}
			p, _ := strconv.Atoi(f[0])
			o, _ := strconv.ParseInt(f[1], 10, 64)
			id, _ := strconv.ParseInt(f[3], 10, 64)
			k := ackKey{int32(p), o}
			if prev, dup := acked[k]; dup {
				t.Fatalf("offset %v acknowledged twice: run %d record %d and run %d record %d", k, prev.run, prev.id, run, id)
			}
			acked[k] = ackVal{run, id}
			n++
		}
		t.Logf("run %d: %d records acknowledged before kill -9", run, n)
		b.Restart()
	}
	if killedMidway < runs/2 {
		t.Fatalf("only %d of %d runs were cut short by the kill; the test is not testing a crash", killedMidway, runs)
	}

	// Read everything back.
	r := proctest.MustCLI(t, "consume", "", "-t", "crash", "-b", b.Addr, "-o", "beginning", "-e", "--json")
	next := map[int32]int64{}
	seen := 0
	sc := bufio.NewScanner(strings.NewReader(r.Stdout))
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
		want, ok := acked[ackKey{rec.Partition, rec.Offset}]
		if !ok {
			continue // produced but not acknowledged before the kill: may or may not survive
		}
		var body struct{ ID int64 }
		if err := json.Unmarshal(rec.Value, &body); err != nil {
			t.Fatalf("value at %d/%d: %v", rec.Partition, rec.Offset, err)
		}
		run := -1
		for _, h := range rec.Headers {
			if h.Key == "run" {
				run, _ = strconv.Atoi(string(h.Value))
			}
		}
		if run != want.run || body.ID != want.id {
			t.Fatalf("offset %d/%d holds run %d record %d, acknowledged as run %d record %d",
				rec.Partition, rec.Offset, run, body.ID, want.run, want.id)
		}
		seen++
	}
	if seen != len(acked) {
		lost := 0
		for k := range acked {
			if k.offset >= next[k.partition] {
				lost++
			}
		}
		t.Fatalf("%d acknowledged records, %d read back: %d lost", len(acked), seen, lost)
	}
	t.Logf("%d runs, %d acknowledged records all read back at their offsets; log ends %v", runs, len(acked), fmt.Sprint(next))
}

package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/skeinlog/skein/internal/proctest"
)

// kcatMember is one `kcat -G` process consuming as a classic group member.
type kcatMember struct {
	cmd *exec.Cmd
	out *proctest.SyncBuffer
}

func startKcatMember(t *testing.T, addr, grp, topic string) *kcatMember {
	t.Helper()
	m := &kcatMember{out: &proctest.SyncBuffer{}}
	m.cmd = exec.Command(kcatPath(t), "-G", grp, "-b", addr, "-X", "session.timeout.ms=6000",
		"-X", "auto.offset.reset=earliest", "-X", "auto.commit.interval.ms=200", "-u", "-q", "-f", `%p %o %k %s\n`, topic)
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.cmd.Process.Kill(); m.cmd.Wait() })
	return m
}

// records parses the member's output, checking each line: the key and
// value belong together, and an offset always holds the same record.
func (m *kcatMember) records(t *testing.T, at map[string]string) map[string]bool {
	t.Helper()
	vals := map[string]bool{}
	for _, line := range strings.Split(m.out.String(), "\n") {
		f := strings.Fields(line)
		if len(f) != 4 || !strings.HasPrefix(f[2], "k") {
			continue
		}
		if "v"+f[2][1:] != f[3] {
			t.Fatalf("kcat -G read key %s with value %s", f[2], f[3])
		}
		if prev, ok := at[f[0]+"/"+f[1]]; ok && prev != f[3] {
			t.Fatalf("partition %s offset %s read as %s and as %s", f[0], f[1], prev, f[3])
		}
		at[f[0]+"/"+f[1]] = f[3]
		vals[f[3]] = true
	}
	return vals
}

func kcatProduce(t *testing.T, addr, topic string, from, to int) {
	var in strings.Builder
	for i := from; i < to; i++ {
		fmt.Fprintf(&in, "k%d:v%d\n", i, i)
	}
	kcat(t, in.String(), "-P", "-b", addr, "-t", topic, "-K:")
}

func waitUntil(t *testing.T, d time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Two `kcat -G` members (librdkafka, the classic protocol) share a
// topic's partitions; one is killed and the other takes its partitions
// after the session timeout; every record is read, with its key and value,
// the committed offsets reach the log end as `broker group describe`
// shows, and Skein's gRPC group consumer continues from them.
func TestKafkaKcatGroup(t *testing.T) {
	b := proctest.StartBroker(t, t.TempDir(), "")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm := kadm.NewClient(kgoClient(t, []string{b.KafkaAddr}))
	if _, err := adm.CreateTopic(ctx, 4, 1, nil, "kg"); err != nil {
		t.Fatal(err)
	}
	kcatProduce(t, b.KafkaAddr, "kg", 0, 200)
	m1 := startKcatMember(t, b.KafkaAddr, "kgrp", "kg")
	m2 := startKcatMember(t, b.KafkaAddr, "kgrp", "kg")
	at := map[string]string{}
	all := func() map[string]bool {
		v := m1.records(t, at)
		for k := range m2.records(t, at) {
			v[k] = true
		}
		return v
	}
	waitUntil(t, time.Minute, "two members sharing the partitions and every record read", func() bool {
		dg, err := adm.DescribeGroups(ctx, "kgrp")
		if err != nil || dg["kgrp"].State != "Stable" || len(dg["kgrp"].Members) != 2 {
			return false
		}
		for _, m := range dg["kgrp"].Members {
			if a, ok := m.Assigned.AsConsumer(); !ok || len(a.Topics) != 1 || len(a.Topics[0].Partitions) != 2 {
				return false
			}
		}
		return len(all()) == 200
	})
	m1.cmd.Process.Signal(syscall.SIGKILL)
	kcatProduce(t, b.KafkaAddr, "kg", 200, 300)
	waitUntil(t, time.Minute, "the survivor to read every new record", func() bool {
		got := m2.records(t, at)
		for i := 200; i < 300; i++ {
			if !got["v"+strconv.Itoa(i)] {
				return false
			}
		}
		return len(all()) == 300
	})
	// The committed offsets reach the log end, as the native API shows.
	waitUntil(t, 30*time.Second, "committed offsets at the log end", func() bool {
		r := proctest.CLI(t, "broker", "", "group", "describe", "kgrp", "-b", b.Addr)
		if !strings.Contains(r.Stdout, "1 member(s)") {
			return false
		}
		parts, end := 0, 0
		for _, line := range strings.Split(r.Stdout, "\n") {
			f := strings.Fields(line)
			if len(f) >= 4 && f[0] == "kg" && f[2] == f[3] {
				parts++
				n, _ := strconv.Atoi(f[3])
				end += n
			}
		}
		return parts == 4 && end == 300
	})
	// The last member is killed; once it expires, Skein's own group
	// consumer (gRPC) takes the group and reads only what came after the
	// commits.
	m2.cmd.Process.Signal(syscall.SIGKILL)
	waitUntil(t, 30*time.Second, "the group to empty", func() bool {
		r := proctest.CLI(t, "broker", "", "group", "describe", "kgrp", "-b", b.Addr)
		return strings.Contains(r.Stdout, "0 member(s)")
	})
	kcatProduce(t, b.KafkaAddr, "kg", 300, 305)
	r := proctest.MustCLI(t, "consume", "", "-b", b.Addr, "-t", "kg", "-G", "kgrp", "-e", "-f", `%v\n`)
	got := strings.Fields(r.Stdout)
	if len(got) != 5 {
		t.Fatalf("the gRPC group consumer read %d records after the kcat members' commits, want the 5 new ones: %q", len(got), got)
	}
	for _, v := range got {
		if n, err := strconv.Atoi(strings.TrimPrefix(v, "v")); err != nil || n < 300 {
			t.Fatalf("the gRPC group consumer read %q", got)
		}
	}
}

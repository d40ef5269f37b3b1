package journal

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/skeinlog/skein/segment"
)

const (
	childDirEnv   = "SKEIN_JOURNAL_CHILD_DIR"
	childRoundEnv = "SKEIN_JOURNAL_CHILD_ROUND"
	killParts     = 40
)

// TestKill9Child is the process TestKill9 kills: 4 writers over 40
// partitions append, truncate (as a follower cutting a divergent suffix)
// and apply retention, with background checkpoints, printing each
// operation before it starts (lower case) and once it is acknowledged
// (upper case).
func TestKill9Child(t *testing.T) {
	dir := os.Getenv(childDirEnv)
	if dir == "" {
		t.Skip("run by TestKill9")
	}
	round, _ := strconv.Atoi(os.Getenv(childRoundEnv))
	s := newStore(t, dir)
	s.jopts.CheckpointInterval = 20 * time.Millisecond
	s.jopts.SegmentBytes = 128 << 10
	ps := names(killParts)
	s.open(t, ps...)
	var mu sync.Mutex
	emit := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(os.Stdout, format+"\n", args...)
	}
	emit("ready")
	for w := range 4 {
		go func() {
			rng := rand.New(rand.NewPCG(uint64(round), uint64(w)))
			gen := map[string]int{}
			for {
				name := ps[w+4*rng.IntN(killParts/4)]
				p := s.parts[name]
				g := round*1_000_000 + gen[name]
				next, start := p.Log().NextOffset(), p.Log().StartOffset()
				switch op := rng.IntN(100); {
				case op < 5 && next > start:
					off := max(start, next-1-rng.Int64N(5))
					emit("t %s %d", name, off)
					if _, err := p.TruncateTo(off); err != nil {
						emit("error %v", err)
						return
					}
					gen[name]++
					emit("T %s %d", name, off)
				case op < 7 && next-30 > start:
					emit("s %s %d", name, next-30)
					if _, err := p.DeleteSegmentsBefore(next - 30); err != nil {
						emit("error %v", err)
						return
					}
				default:
					n := 1 + rng.IntN(3)
					es := make([]segment.Entry, n)
					for i := range es {
						es[i] = entry(name, next+int64(i), g)
					}
					if err := p.Append(es...); err != nil {
						emit("error %v", err)
						return
					}
					emit("A %s %d %d %d", name, next, next+int64(n)-1, g)
				}
			}
		}()
	}
	time.Sleep(60 * time.Second) // killed long before
}

// history is what the killed processes acknowledged, per partition.
type history struct {
	acked     map[int64]int  // offset → generation of the last acknowledged write
	cut       map[int64]int  // offset → generation a truncation (maybe) removed
	cutSure   map[int64]bool // the truncation was acknowledged
	mayDelete int64          // retention may have removed offsets below this
}

func (h *history) apply(f []string) {
	n := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 10, 64); return v }
	switch f[0] {
	case "A":
		for o := n(2); o <= n(3); o++ {
			h.acked[o] = int(n(4))
			delete(h.cut, o)
			delete(h.cutSure, o)
		}
	case "t", "T":
		for o, g := range h.acked {
			if o >= n(2) {
				h.cut[o] = g
				delete(h.acked, o)
			}
		}
		for o := range h.cut {
			if o >= n(2) && f[0] == "T" {
				h.cutSure[o] = true
			}
		}
	case "s":
		h.mayDelete = max(h.mayDelete, n(2))
	}
}

// TestKill9 kills a process writing 40 partitions through the journal
// with SIGKILL at a random instant, three times over the same directory,
// and checks after each replay: every acknowledged record is present
// exactly once at its offset with its content, and no record that an
// acknowledged truncation cut comes back.
func TestKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	hist := map[string]*history{}
	for _, n := range names(killParts) {
		hist[n] = &history{acked: map[int64]int{}, cut: map[int64]int{}, cutSure: map[int64]bool{}}
	}
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 0))
	for round := 1; round <= 3; round++ {
		lines := runAndKill(t, dir, round, time.Duration(300+rng.IntN(1200))*time.Millisecond)
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) > 0 && f[0] == "error" {
				t.Fatalf("round %d: child: %s", round, l)
			}
			if len(f) >= 3 {
				hist[f[1]].apply(f)
			}
		}
		s := newStore(t, dir)
		s.open(t)
		if len(s.report.Damaged) > 0 {
			t.Fatalf("round %d: replay found damage: %+v", round, s.report)
		}
		t.Logf("round %d: %d lines; replayed %d records into %d partitions", round, len(lines), s.report.Records, s.report.Partitions)
		for name, h := range hist {
			checkHistory(t, round, name, h, s)
		}
		s.close(t)
	}
}

func checkHistory(t *testing.T, round int, name string, h *history, s *store) {
	t.Helper()
	gens, start, next := readGens(t, s.segDir(name), name, s.sopts)
	if int64(len(gens)) != next-start {
		t.Fatalf("round %d: %s: %d entries in [%d, %d)", round, name, len(gens), start, next)
	}
	if start > h.mayDelete {
		t.Fatalf("round %d: %s starts at %d; retention was asked to delete below %d only", round, name, start, h.mayDelete)
	}
	for o, g := range h.acked {
		got, ok := gens[o]
		switch {
		case !ok && o >= start:
			t.Fatalf("round %d: %s: acknowledged offset %d (generation %d) lost; log [%d, %d)", round, name, o, g, start, next)
		case ok && got != g:
			t.Fatalf("round %d: %s: offset %d holds generation %d, acknowledged %d", round, name, o, got, g)
		}
	}
	for o, g := range h.cut {
		if got, ok := gens[o]; ok && got <= g && (h.cutSure[o] || got != g) {
			t.Fatalf("round %d: %s: offset %d holds generation %d, which a truncation cut (generation %d)", round, name, o, got, g)
		}
	}
}

// runAndKill runs TestKill9Child, kills it with SIGKILL after d, and
// returns the lines it printed.
func runAndKill(t *testing.T, dir string, round int, d time.Duration) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9Child$", "-test.count=1")
	cmd.Env = append(os.Environ(), childDirEnv+"="+dir, childRoundEnv+"="+strconv.Itoa(round))
	out, err := cmd.StdoutPipe()
	must(t, err)
	cmd.Stderr = os.Stderr
	must(t, cmd.Start())
	var lines []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if sc.Text() == "ready" {
				time.AfterFunc(d, func() { _ = cmd.Process.Kill() })
			}
		}
	}()
	timer := time.AfterFunc(30*time.Second, func() { _ = cmd.Process.Kill() })
	<-done
	_ = cmd.Wait()
	timer.Stop()
	if len(lines) == 0 || lines[0] != "ready" {
		t.Fatalf("round %d: child did not start: %v", round, lines)
	}
	return lines[1:]
}

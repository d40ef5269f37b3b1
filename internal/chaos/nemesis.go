package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/skeinlog/skein/client"
)

// Faults the nemesis can inject, by name. Each is applied to one broker
// (or, for the network faults, the links of one broker), held, and healed;
// the next one starts only after the cluster is healthy again, so no run
// exceeds the fault budget of RELIABILITY.md (one crash or damaged disk at
// a time; any partitions and pauses; power loss of all with intact disks).
const (
	FaultKill      = "kill"       // kill -9, restart after the hold
	FaultTerm      = "term"       // SIGTERM (leadership handed off), restart
	FaultPause     = "pause"      // SIGSTOP past failure detection, SIGCONT
	FaultKillAll   = "kill-all"   // kill -9 every broker at once, restart all within 2 s
	FaultIsolate   = "isolate"    // cut one broker from the others (clients still reach it)
	FaultBridge    = "bridge"     // A–B and B–C up, A–C down
	FaultOneWay    = "one-way"    // A's packets to B dropped
	FaultFlap      = "flap"       // isolate and heal one broker every second
	FaultTornTail  = "torn-tail"  // stopped broker: last entry cut in half
	FaultZeroTail  = "zero-tail"  // stopped broker: zeros appended
	FaultGarbage   = "garbage"    // stopped broker: frame-shaped garbage appended
	FaultBitFlip   = "bit-flip"   // stopped broker: one bit flipped below the tail
	FaultWipe      = "wipe"       // stopped broker: data directory emptied
	FaultDiskFull  = "disk-full"  // the broker's disk (a small tmpfs) filled, then freed
	FaultLeaderCut = "leader-cut" // isolate the leader of a partition (it must stop acking)
	// FaultLongCut isolates a broker for longer than memberlist's
	// GossipToTheDeadTime (30 s): the sides must re-merge by re-joining.
	FaultLongCut = "long-cut"
	// FaultKillController kills -9 the Raft controller's leader.
	FaultKillController = "kill-controller"
)

// Scenarios name the fault mixes of -scenario.
var Scenarios = map[string][]string{
	"none":      nil,
	"kill":      {FaultKill, FaultKill, FaultKillAll, FaultKillController},
	"process":   {FaultKill, FaultTerm, FaultPause, FaultKillAll, FaultKillController},
	"pause":     {FaultPause},
	"partition": {FaultIsolate, FaultLeaderCut, FaultBridge, FaultOneWay, FaultFlap, FaultLongCut},
	"storage":   {FaultTornTail, FaultZeroTail, FaultGarbage, FaultBitFlip, FaultWipe},
	"disk":      {FaultDiskFull},
	// reassign: moves, each during a process or network fault (4 brokers).
	"reassign": {FaultReassign},
	"mix": {FaultKill, FaultTerm, FaultPause, FaultKillAll, FaultKillController, FaultIsolate, FaultLeaderCut, FaultBridge, FaultOneWay, FaultFlap, FaultLongCut,
		FaultTornTail, FaultZeroTail, FaultGarbage, FaultBitFlip, FaultWipe, FaultDiskFull,
		// Four times: a move pairs with one of the others, and a 40 s run
		// of a few faults should see one.
		FaultReassign, FaultReassign, FaultReassign, FaultReassign},
}

// ScenarioNames lists the scenarios, sorted.
func ScenarioNames() []string {
	var out []string
	for k := range Scenarios {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// storageDamage maps the storage faults to what they do to a stopped
// broker's data directory (storage.go).
var storageDamage = map[string]func(dir string, rng *rand.Rand) (string, error){}

// nemesis injects faults into the run's cluster.
type nemesis struct {
	r      *runner
	rng    *rand.Rand
	faults []string
	// companions are the faults a move is paired with (reassign.go).
	companions []string
	// extra lists the companion faults injected since injectFaults last
	// counted them.
	extra []string
	// diskBroker has its data directory on a tmpfs of diskSize bytes.
	diskBroker int32
}

// pickTarget returns a broker: half the time the leader of a random
// partition, else any broker.
func (n *nemesis) pickTarget() int32 {
	c := n.r.cluster
	if n.rng.IntN(2) == 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		md, err := n.r.admin.Metadata(ctx, n.r.cfg.Topic)
		cancel()
		if err == nil && len(md.Topics) == 1 && len(md.Topics[0].Partitions) > 0 {
			ps := md.Topics[0].Partitions
			if l := ps[n.rng.IntN(len(ps))].Leader; l > 0 && c.Brokers[l] != nil {
				return l
			}
		}
	}
	return c.IDs[n.rng.IntN(len(c.IDs))]
}

func (n *nemesis) other(id int32) int32 {
	ids := n.r.cluster.IDs
	for {
		if o := ids[n.rng.IntN(len(ids))]; o != id {
			return o
		}
	}
}

// hold sleeps for a random time in [lo, hi), cut short at the deadline.
func (n *nemesis) hold(lo, hi time.Duration, deadline time.Time) {
	d := lo + time.Duration(n.rng.Int64N(int64(hi-lo)))
	if until := time.Until(deadline); d > until {
		d = max(until, lo/2)
	}
	time.Sleep(d)
}

// inject applies fault f and heals it; it returns the fault it injected
// and what it did.
func (n *nemesis) inject(f string, deadline time.Time) (string, string, error) {
	what, err := n.injectOne(&f, deadline)
	return f, what, err
}

func (n *nemesis) injectOne(fp *string, deadline time.Time) (string, error) {
	f := *fp
	id := n.pickTarget()
	if f == FaultLongCut && time.Until(deadline) < 50*time.Second {
		f = FaultIsolate // no time left for a long one
		*fp = f
	}
	act, ok := faultActions[f]
	if !ok {
		return "", fmt.Errorf("unknown fault %q", f)
	}
	return act(n, f, id, deadline)
}

// faultAction injects fault f (aimed at broker id unless the fault picks its
// own target), heals it before returning, and says what it did.
type faultAction func(n *nemesis, f string, id int32, deadline time.Time) (string, error)

var faultActions = map[string]faultAction{
	FaultKill:           (*nemesis).kill,
	FaultTerm:           (*nemesis).term,
	FaultPause:          (*nemesis).pause,
	FaultKillAll:        (*nemesis).killAll,
	FaultKillController: (*nemesis).killController,
	FaultLongCut:        (*nemesis).longCut,
	FaultIsolate:        (*nemesis).isolate,
	FaultLeaderCut:      (*nemesis).isolate,
	FaultBridge:         (*nemesis).bridge,
	FaultOneWay:         (*nemesis).oneWay,
	FaultFlap:           (*nemesis).flap,
	FaultTornTail:       (*nemesis).damage,
	FaultZeroTail:       (*nemesis).damage,
	FaultGarbage:        (*nemesis).damage,
	FaultBitFlip:        (*nemesis).damage,
	FaultWipe:           (*nemesis).damage,
	FaultDiskFull:       (*nemesis).diskFull,
}

// ---- process faults -----------------------------------------------------------

func (n *nemesis) kill(_ string, id int32, deadline time.Time) (string, error) {
	n.r.cluster.Brokers[id].Kill()
	n.hold(time.Second, 8*time.Second, deadline)
	return fmt.Sprintf("kill -9 broker %d", id), n.r.cluster.TryRestart(id)
}

func (n *nemesis) term(_ string, id int32, deadline time.Time) (string, error) {
	code := n.r.cluster.Brokers[id].Term()
	n.hold(500*time.Millisecond, 4*time.Second, deadline)
	if code != 0 {
		return "", fmt.Errorf("broker %d exited %d after SIGTERM", id, code)
	}
	return fmt.Sprintf("SIGTERM broker %d", id), n.r.cluster.TryRestart(id)
}

func (n *nemesis) pause(_ string, id int32, deadline time.Time) (string, error) {
	b := n.r.cluster.Brokers[id]
	b.Pause()
	n.hold(3*time.Second, 15*time.Second, deadline)
	b.Resume()
	return fmt.Sprintf("SIGSTOP broker %d", id), nil
}

func (n *nemesis) killAll(string, int32, time.Time) (string, error) {
	c := n.r.cluster
	for _, o := range c.IDs {
		c.Brokers[o].Kill()
	}
	time.Sleep(time.Duration(n.rng.IntN(2000)) * time.Millisecond)
	return "kill -9 every broker, restart all", c.TryRestartAll(c.IDs)
}

func (n *nemesis) killController(_ string, id int32, deadline time.Time) (string, error) {
	c := n.r.cluster
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	desc, err := n.r.admin.DescribeCluster(ctx)
	cancel()
	if err == nil && desc.ControllerID > 0 && c.Brokers[desc.ControllerID] != nil {
		id = desc.ControllerID
	}
	c.Brokers[id].Kill()
	n.hold(time.Second, 5*time.Second, deadline)
	return fmt.Sprintf("kill -9 controller broker %d", id), c.TryRestart(id)
}

// ---- network faults -----------------------------------------------------------

func (n *nemesis) longCut(_ string, id int32, _ time.Time) (string, error) {
	n.r.lab.Isolate(id)
	time.Sleep(time.Duration(35+n.rng.IntN(10)) * time.Second)
	n.r.lab.Heal(id)
	return fmt.Sprintf("isolate broker %d past the gossip dead time", id), nil
}

// isolate cuts one broker off from the others (the leader of a random
// partition for FaultLeaderCut) while clients still reach it.
func (n *nemesis) isolate(f string, id int32, deadline time.Time) (string, error) {
	if f == FaultLeaderCut {
		id = n.leaderOf(n.rng.IntN(n.r.cfg.Partitions))
	}
	n.r.lab.Isolate(id)
	n.hold(3*time.Second, 15*time.Second, deadline)
	n.r.lab.Heal(id)
	return fmt.Sprintf("isolate broker %d", id), nil
}

func (n *nemesis) bridge(_ string, id int32, deadline time.Time) (string, error) {
	a := n.other(id)
	var b2 int32
	for _, o := range n.r.cluster.IDs {
		if o != id && o != a {
			b2 = o
		}
	}
	n.r.lab.Cut(id, b2)
	n.hold(3*time.Second, 15*time.Second, deadline)
	n.r.lab.HealAll()
	return fmt.Sprintf("bridge: %d–%d cut, %d bridges", id, b2, a), nil
}

func (n *nemesis) oneWay(_ string, id int32, deadline time.Time) (string, error) {
	to := n.other(id)
	n.r.lab.Drop(id, to)
	n.hold(3*time.Second, 15*time.Second, deadline)
	n.r.lab.HealAll()
	return fmt.Sprintf("drop %d→%d", id, to), nil
}

func (n *nemesis) flap(_ string, id int32, _ time.Time) (string, error) {
	flaps := 3 + n.rng.IntN(6)
	for i := 0; i < flaps; i++ {
		n.r.lab.Isolate(id)
		time.Sleep(time.Duration(300+n.rng.IntN(1200)) * time.Millisecond)
		n.r.lab.Heal(id)
		time.Sleep(time.Duration(300+n.rng.IntN(1200)) * time.Millisecond)
	}
	return fmt.Sprintf("flap broker %d ×%d", id, flaps), nil
}

// ---- storage faults -----------------------------------------------------------

// damage stops a broker (kill -9 or SIGTERM), damages its data as f says,
// and restarts it.
func (n *nemesis) damage(f string, id int32, _ time.Time) (string, error) {
	damage := storageDamage[f]
	if damage == nil {
		return "", fmt.Errorf("fault %s is not available in this build", f)
	}
	b := n.r.cluster.Brokers[id]
	if n.rng.IntN(2) == 0 {
		b.Kill()
	} else if code := b.Term(); code != 0 {
		return "", fmt.Errorf("broker %d exited %d after SIGTERM", id, code)
	}
	what, err := damage(b.Dir, n.rng)
	if err != nil {
		return "", fmt.Errorf("%s on broker %d: %w", f, id, err)
	}
	return fmt.Sprintf("%s on broker %d: %s", f, id, what), n.r.cluster.TryRestart(id)
}

func (n *nemesis) diskFull(_ string, _ int32, deadline time.Time) (string, error) {
	id := n.diskBroker
	fill := filepath.Join(n.r.cluster.Brokers[id].Dir, "chaos-fill")
	written, err := fillDisk(fill)
	if err != nil {
		os.Remove(fill)
		return "", err
	}
	n.hold(3*time.Second, 10*time.Second, deadline)
	if err := os.Remove(fill); err != nil {
		return "", err
	}
	return fmt.Sprintf("disk of broker %d full (%d MiB filler)", id, written>>20), nil
}

func (n *nemesis) leaderOf(partition int) int32 {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	md, err := n.r.admin.Metadata(ctx, n.r.cfg.Topic)
	if err == nil && len(md.Topics) == 1 && partition < len(md.Topics[0].Partitions) {
		if l := md.Topics[0].Partitions[partition].Leader; l > 0 {
			return l
		}
	}
	return n.r.cluster.IDs[0]
}

// fillDisk writes path until the file system is full.
func fillDisk(path string) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	var n int64
	for {
		w, err := f.Write(buf)
		n += int64(w)
		if err != nil {
			if strings.Contains(err.Error(), "no space") {
				return n, nil
			}
			return n, err
		}
	}
}

// mountTmpfs mounts a tmpfs of size bytes on dir; the returned func
// unmounts it.
func mountTmpfs(dir string, size int64) (func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		return nil, fmt.Errorf("mount a tmpfs for the disk-full fault on %s: %w (needs root)", dir, err)
	}
	return func() { syscall.Unmount(dir, syscall.MNT_DETACH) }, nil
}

// client is a client for the cluster's current addresses: in a secure run
// the SCRAM user over TLS.
func (r *runner) client() (*client.Client, error) {
	opts := []client.ClientOpt{client.Brokers(r.cluster.Addrs()...), client.RequestTimeout(5 * time.Second)}
	if r.sec != nil {
		opts = append(opts, r.sec.user...)
	}
	return client.New(opts...)
}

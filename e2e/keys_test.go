package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/internal/proctest"
)

// An account update is a record of the account's key whose value is
// "n|prev|id": the account's n-th update, appended on the condition that
// the key's last record was at offset prev (-1: none), by the attempt id
// (writer-sequence). The log of a key with no lost update is a chain: its
// i-th record says n = i+1 and prev = the offset of the record before it.

type update struct {
	n    int
	prev int64
	id   string
}

func parseUpdate(v []byte) (update, error) {
	parts := strings.Split(string(v), "|")
	if len(parts) != 3 {
		return update{}, fmt.Errorf("value %q is not n|prev|id", v)
	}
	n, err1 := strconv.Atoi(parts[0])
	prev, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return update{}, fmt.Errorf("value %q is not n|prev|id", v)
	}
	return update{n, prev, parts[2]}, nil
}

// updater is one writer's side of the account workload.
type updater struct {
	c     *client.Client
	p     *client.Producer
	topic string
	// perKey: ProduceIfKeys on the account's last offset; else ProduceIf on
	// the partition's next offset (the high watermark GetKey saw).
	perKey bool
}

// outcome of one attempt: landed (at off), lost the race (retry), or
// unknown (an answer was lost: it may have landed).
type attempt struct {
	landed, mismatch bool
	off              int64
	err              error
}

// try reads the account and appends its next update once.
func (u *updater) try(ctx context.Context, key []byte, id string) attempt {
	kv, err := u.c.GetKey(ctx, u.topic, 0, key)
	if err != nil {
		return attempt{err: err}
	}
	cur := update{prev: -1}
	last := client.NoRecord
	if kv.Found {
		if cur, err = parseUpdate(kv.Record.Value); err != nil {
			return attempt{err: err}
		}
		last = kv.Record.Offset
	}
	rec := &client.Record{Key: key, Value: fmt.Appendf(nil, "%d|%d|%s", cur.n+1, last, id)}
	if u.perKey {
		_, err = u.p.ProduceIfKeys(ctx, u.topic, []client.KeyExpectation{{Key: key, Offset: last}}, rec)
	} else {
		_, err = u.p.ProduceIf(ctx, u.topic, 0, kv.HighWatermark, rec)
	}
	switch {
	case err == nil:
		return attempt{landed: true, off: rec.Offset}
	case errors.Is(err, client.ErrMaybeAppended):
		return attempt{err: err}
	case errors.Is(err, client.ErrKeyOffsetMismatch), errors.Is(err, client.ErrOffsetMismatch):
		return attempt{mismatch: true}
	}
	return attempt{err: err}
}

// landedAs reports whether the account's latest record is the attempt id
// (after an attempt whose answer was lost), and its offset.
func (u *updater) landedAs(ctx context.Context, key []byte, id string) (bool, int64, error) {
	kv, err := u.c.GetKey(ctx, u.topic, 0, key)
	if err != nil || !kv.Found {
		return false, -1, err
	}
	up, err := parseUpdate(kv.Record.Value)
	return err == nil && up.id == id, kv.Record.Offset, err
}

// accountLog is what the writers were told.
type accountLog struct {
	mu         sync.Mutex
	acked      map[string]int64 // attempt id -> offset
	unknown    map[string]bool  // attempts whose answer was lost
	mismatches atomic.Int64
	updates    atomic.Int64
	errors     atomic.Int64
}

// runWriter updates random accounts until the deadline: each update is
// retried (read again, append again) until it lands. Hot accounts (the
// first 10) take a quarter of the updates, so that writers contend.
func (a *accountLog) runWriter(ctx context.Context, u *updater, w, accounts int, deadline func() time.Time) error {
	seq := 0
	for time.Now().Before(deadline()) {
		acct := rand.IntN(accounts)
		if rand.IntN(4) == 0 {
			acct = rand.IntN(10)
		}
		key := []byte(fmt.Sprintf("acct-%d", acct))
		for {
			seq++
			id := fmt.Sprintf("%d-%d", w, seq)
			at := u.try(ctx, key, id)
			if at.err != nil {
				a.errors.Add(1)
				if ctx.Err() != nil {
					return fmt.Errorf("writer %d: %w (last error: %v)", w, ctx.Err(), at.err)
				}
				a.mu.Lock()
				a.unknown[id] = true
				a.mu.Unlock()
				time.Sleep(50 * time.Millisecond)
				if ok, off, err := u.landedAs(ctx, key, id); err == nil && ok {
					at = attempt{landed: true, off: off}
				} else {
					continue
				}
			}
			if at.mismatch {
				a.mismatches.Add(1)
				continue
			}
			a.mu.Lock()
			a.acked[id] = at.off
			a.mu.Unlock()
			a.updates.Add(1)
			break
		}
	}
	return nil
}

// check reads the partition and checks every account's chain against
// what the writers were told.
func (a *accountLog) check(t *testing.T, recs []*client.Record) {
	t.Helper()
	last := map[string]update{}
	lastOff := map[string]int64{}
	seen := map[string]int64{}
	for _, r := range recs {
		up, err := parseUpdate(r.Value)
		if err != nil {
			t.Fatalf("offset %d: %v", r.Offset, err)
		}
		k := string(r.Key)
		prevOff, ok := lastOff[k]
		if !ok {
			prevOff = -1
		}
		if up.prev != prevOff || up.n != last[k].n+1 {
			t.Fatalf("account %s: offset %d is update %d on top of offset %d, but the account's last record was update %d at %d: a lost update",
				k, r.Offset, up.n, up.prev, last[k].n, prevOff)
		}
		last[k], lastOff[k] = up, r.Offset
		seen[up.id] = r.Offset
		if _, ok := a.acked[up.id]; !ok && !a.unknown[up.id] {
			t.Fatalf("offset %d holds attempt %s, which no writer made", r.Offset, up.id)
		}
	}
	for id, off := range a.acked {
		if got, ok := seen[id]; !ok || got != off {
			t.Fatalf("attempt %s was acknowledged at offset %d; the log has it at %d (present %v)", id, off, got, ok)
		}
	}
}

// 16 writers update 1,000 accounts on one partition (three replicas) with
// per-key conditional appends, the partition's leader killed (kill -9) in
// the middle and restarted: every account's log is an unbroken chain of
// updates (no lost update), every acknowledged update is in it where it
// was acknowledged, and every mismatch was retried until it landed.
func TestPerKeyConditionalWritersThroughLeaderKill(t *testing.T) {
	run := 20 * time.Second
	if testing.Short() {
		run = 8 * time.Second
	}
	if v := os.Getenv("SKEIN_E2E_KEYS"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("SKEIN_E2E_KEYS=%q: %v", v, err)
		}
		run = d
	}
	c := proctest.StartCluster(t, 3, "--replica-lag-time", "3s")
	proctest.MustCLI(t, "broker", "", "topic", "create", "accounts", "--key-index", "-r", "3", "--brokers", strings.Join(c.Addrs(), ","))
	const writers, accounts = 16, 1000
	log := &accountLog{acked: map[string]int64{}, unknown: map[string]bool{}}
	ctx, cancel := context.WithTimeout(context.Background(), run+2*time.Minute)
	defer cancel()
	began := time.Now()
	// The writers stop at the deadline, but not before they have written
	// for a while under the new leader.
	var stopAt atomic.Int64
	stopAt.Store(time.Now().Add(run).UnixNano())
	deadline := func() time.Time { return time.Unix(0, stopAt.Load()) }
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := client.New(client.Brokers(c.Addrs()...), client.RequestTimeout(5*time.Second))
			if err != nil {
				errs <- err
				return
			}
			defer cl.Close()
			p, err := cl.NewProducer(client.DeliveryTimeout(20 * time.Second))
			if err != nil {
				errs <- err
				return
			}
			defer p.Close()
			if err := log.runWriter(ctx, &updater{c: cl, p: p, topic: "accounts", perKey: true}, w, accounts, deadline); err != nil {
				errs <- err
			}
		}()
	}
	time.Sleep(run / 2)
	cl := c.Client()
	killed := c.Leader(cl, "accounts", 0, -1, 10*time.Second)
	before := log.updates.Load()
	c.Brokers[killed].Kill()
	t.Logf("killed the leader, broker %d, after %d updates", killed, before)
	c.Leader(cl, "accounts", 0, killed, 30*time.Second)
	stopAt.Store(max(stopAt.Load(), time.Now().Add(run/2).UnixNano()))
	time.Sleep(2 * time.Second)
	c.Restart(killed)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if log.updates.Load() <= before {
		t.Fatalf("no update after the leader was killed (%d before, %d in all)", before, log.updates.Load())
	}
	recs := proctest.ReadAll(t, cl, "accounts", 0)
	log.check(t, recs)
	t.Logf("%d writers, %d accounts, %v: %d updates (%.0f/s), %d records, %d mismatches retried, %d attempts without an answer; every account's chain unbroken",
		writers, accounts, time.Since(began).Round(time.Second), log.updates.Load(), float64(log.updates.Load())/time.Since(began).Seconds(), len(recs), log.mismatches.Load(), log.errors.Load())
}

// BenchmarkConditionalUpdates: 16 writers (each its own client and
// idempotent producer) update 1,000 accounts on one partition of one
// broker, each update "GetKey, then append on a condition, on a mismatch
// read again": per-key (ProduceIfKeys on the account's last offset) and
// per-partition (ProduceIf on the partition's next offset). b.N is the
// number of successful updates; reported: updates/s and attempts per
// update.
func BenchmarkConditionalUpdates(b *testing.B) {
	for _, mode := range []struct {
		name   string
		perKey bool
	}{{"per-key", true}, {"per-partition", false}} {
		b.Run(mode.name, func(b *testing.B) {
			br := proctest.StartBroker(b, b.TempDir(), "")
			topic := "accounts"
			proctest.MustCLI(b, "broker", "", "topic", "create", topic, "--key-index", "--brokers", br.Addr)
			const writers, accounts = 16, 1000
			var left atomic.Int64
			left.Store(int64(b.N))
			var attempts atomic.Int64
			var wg sync.WaitGroup
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			b.ResetTimer()
			for w := range writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cl, err := client.New(client.Brokers(br.Addr))
					if err != nil {
						b.Error(err)
						return
					}
					defer cl.Close()
					p, err := cl.NewProducer()
					if err != nil {
						b.Error(err)
						return
					}
					defer p.Close()
					u := &updater{c: cl, p: p, topic: topic, perKey: mode.perKey}
					for seq := 0; left.Add(-1) >= 0; {
						key := []byte(fmt.Sprintf("acct-%d", rand.IntN(accounts)))
						for {
							seq++
							attempts.Add(1)
							at := u.try(ctx, key, fmt.Sprintf("%d-%d", w, seq))
							if at.err != nil {
								b.Error(at.err)
								return
							}
							if at.landed {
								break
							}
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "updates/s")
			b.ReportMetric(float64(attempts.Load())/float64(b.N), "attempts/update")
		})
	}
}

package broker

import (
	"context"
	"time"

	"github.com/skeinlog/skein/cluster"
	"github.com/skeinlog/skein/partition"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// sentReleaseWait bounds how long a caught-up stream waits before it sends
// an empty answer to learn that its last batches left (see fetchStream.sent).
const sentReleaseWait = 100 * time.Millisecond

// fetchStream is one Fetch call's read buffer and in-flight budget.
type fetchStream struct {
	s        *server
	stream   pb.Skein_FetchServer
	p        *partition.Partition
	maxBytes int
	caller   *caller // whose fetch quota the stream counts against
	// buf grows with the data returned (never with max_bytes) and is
	// dropped while the stream waits for data.
	buf []byte
	// sent is the budget held for the last batches sent: gRPC may still
	// hold them (a client that does not read keeps them queued) until the
	// stream's next Send returns, which waits for them to be written.
	sent int64
	// The offsets of the last read, for answers without batches.
	hw, logStart int64
}

func (s *server) Fetch(req *pb.FetchRequest, stream pb.Skein_FetchServer) error {
	ctx := stream.Context()
	maxBytes := int(req.MaxBytes)
	if maxBytes <= 0 {
		maxBytes = defaultFetchMaxBytes
	}
	maxBytes = max(minFetchMaxBytes, min(maxFetchMaxBytes, maxBytes))
	wait := clampDuration(req.MaxWaitMs, defaultFetchWait, minFetchWait, maxFetchWait)
	if req.Offset < 0 {
		return toStatus(invalid("offset %d: must not be negative (use ListOffsets to resolve earliest/latest)", req.Offset))
	}
	r, err := s.b.leaderReplica(req.Topic, req.Partition)
	if err != nil {
		return s.b.status(ctx, err)
	}
	p := r.p
	if req.LeaderEpoch >= 0 {
		if st := p.State(); req.LeaderEpoch != st.LeaderEpoch {
			return toStatus(&partition.EpochError{Requested: req.LeaderEpoch, Current: st.LeaderEpoch})
		}
	}
	f := &fetchStream{s: s, stream: stream, p: p, maxBytes: maxBytes, caller: callerOf(ctx)}
	defer f.close()
	return f.run(ctx, req.Offset, wait)
}

// run streams committed batches from offset until the stream ends.
func (f *fetchStream) run(ctx context.Context, offset int64, wait time.Duration) error {
	p, b := f.p, f.s.b
	caughtUp := false
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		watch := p.Watch()
		if p.Role() != partition.RoleLeader {
			st := p.State()
			return b.status(ctx, &partition.NotLeaderError{LeaderID: st.LeaderID, LeaderEpoch: st.LeaderEpoch})
		}
		if !p.HWReady() {
			// A new leader's HW may lag the one its predecessor showed:
			// wait until it has caught up, never show a smaller HW.
			select {
			case <-watch:
				continue
			case <-ctx.Done():
				return toStatus(ctx.Err())
			case <-b.stopping:
				return toStatus(errShuttingDown)
			}
		}
		if err := f.drainIfShort(offset); err != nil {
			return err
		}
		res, held, err := f.read(ctx, offset)
		if err != nil {
			return toStatus(err)
		}
		if offset > res.HighWatermark {
			// Past the HW is uncommitted or unwritten: no consumer gets
			// there by reading (the HW it sees never goes back), so it is
			// out of range like an offset below the log start, whatever
			// the leader's log end.
			f.give(held)
			return toStatus(&partition.OutOfRangeError{Offset: offset, LogStartOffset: res.LogStartOffset, HighWatermark: res.HighWatermark})
		}
		if len(res.Batches) > 0 {
			caughtUp = res.NextOffset >= res.HighWatermark
			throttle := b.quotas.record(f.caller.user, f.caller.clientID, cluster.QuotaFetch, float64(len(res.Batches)))
			if err := f.send(&pb.FetchResponse{
				Batches: res.Batches, NextOffset: res.NextOffset, HighWatermark: res.HighWatermark,
				LogStartOffset: res.LogStartOffset, CaughtUp: caughtUp, ThrottleTimeMs: throttleMs(throttle),
			}, held); err != nil {
				return err
			}
			b.metrics.fetched(len(res.Batches))
			offset = res.NextOffset
			// Over the fetch quota: send nothing for the throttle time.
			if throttle > 0 {
				if err := b.throttleWait(ctx, throttle); err != nil {
					return toStatus(err)
				}
			}
			continue
		}
		f.give(held)
		f.buf = nil
		idle := &pb.FetchResponse{NextOffset: offset, HighWatermark: res.HighWatermark, LogStartOffset: res.LogStartOffset, CaughtUp: true}
		if !caughtUp {
			caughtUp = true
			if err := f.send(idle, 0); err != nil {
				return err
			}
		}
		resetTimer(timer, f.idleWait(wait))
		select {
		case <-watch:
		case <-timer.C:
			if err := f.send(idle, 0); err != nil {
				return err
			}
		case <-ctx.Done():
			return toStatus(ctx.Err())
		case <-b.stopping:
			return toStatus(errShuttingDown)
		}
	}
}

// idleWait is how long a caught-up stream waits for data before it sends an
// empty answer: max_wait, or less while the last batches are still held.
func (f *fetchStream) idleWait(wait time.Duration) time.Duration {
	if f.sent > 0 {
		return min(wait, sentReleaseWait)
	}
	return wait
}

func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

// read reads committed batches within the in-flight budget: it takes
// max_bytes before the read, gives back what the read did not fill and
// returns the rest (held), which send or the caller gives back.
func (f *fetchStream) read(ctx context.Context, offset int64) (partition.ReadResult, int64, error) {
	b := f.s.b
	grant := int64(f.maxBytes)
	if err := f.take(ctx, grant); err != nil {
		b.metrics.refusedRequest(err)
		return partition.ReadResult{}, 0, err
	}
	res, err := f.p.Read(f.buf[:0], offset, f.maxBytes, partition.ReadCommitted)
	if err != nil {
		f.give(grant)
		return res, 0, err
	}
	f.buf, f.hw, f.logStart = res.Batches, res.HighWatermark, res.LogStartOffset
	held := min(grant, int64(cap(res.Batches)))
	f.give(grant - held)
	return res, held, nil
}

// send sends resp, whose batches hold held bytes of the budget. When Send
// returns, the batches sent before have left, so their budget is given back.
func (f *fetchStream) send(resp *pb.FetchResponse, held int64) error {
	err := f.stream.Send(resp)
	f.give(f.sent)
	f.sent = held
	return err
}

// drainIfShort waits until the batches last sent have left when the budget
// has no room for the next read, so a stream never waits for budget it holds
// itself: it drops its buffer and sends an answer without batches, which
// returns once gRPC has written what came before (a client that does not
// read keeps it waiting, holding only what it was sent).
func (f *fetchStream) drainIfShort(offset int64) error {
	if f.sent == 0 || f.s.b.inflight.hasRoom(int64(f.maxBytes)) && f.s.b.fetchShare.hasRoom(int64(f.maxBytes)) {
		return nil
	}
	f.buf = nil
	return f.send(&pb.FetchResponse{NextOffset: offset, HighWatermark: f.hw, LogStartOffset: f.logStart}, 0)
}

// take takes n bytes of the in-flight budget for a read: of the share
// fetches may hold, and of the whole budget.
func (f *fetchStream) take(ctx context.Context, n int64) error {
	b := f.s.b
	if err := b.fetchShare.acquire(ctx, n); err != nil {
		return err
	}
	if err := b.inflight.acquire(ctx, n); err != nil {
		b.fetchShare.release(n)
		return err
	}
	return nil
}

// give gives back n bytes taken by take.
func (f *fetchStream) give(n int64) {
	f.s.b.inflight.release(n)
	f.s.b.fetchShare.release(n)
}

func (f *fetchStream) close() {
	f.give(f.sent)
	f.sent = 0
}

package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/skeinlog/skein/proto/skeinv1"
)

// The idempotent producer's identity: a producer id and epoch from
// InitProducer, shared by the producer's partitions. Each partition stamps
// its batches with the pair it adopted and its own sequence numbers, and
// adopts a newer pair only when it must reset its sequences (after an
// OUT_OF_ORDER_SEQUENCE answer, see pstate) and nothing is
// in flight, so the broker never sees two epochs of one partition mixed.
//
// A reset bumps the epoch locally, as Kafka's idempotent producer does
// (KIP-360): partitions accept a newer epoch of an id when it starts at
// sequence 0, and the broker keeps no epoch table to ask. Only when the
// epoch would pass 32767 does the producer ask InitProducer, naming its id
// and epoch, for a new id.

// noProducer is the producer id of a batch from a producer that is not
// idempotent, or whose id is not known yet.
const noProducer = -1

// identity returns the producer's id and epoch, or, while they are not
// known, a channel closed when an InitProducer attempt ends (one is started
// if none runs). fatal is set once the producer cannot continue.
func (p *Producer) identity() (id int64, epoch int16, wait <-chan struct{}, fatal error) {
	p.idMu.Lock()
	defer p.idMu.Unlock()
	if p.fatal != nil {
		return noProducer, 0, nil, p.fatal
	}
	if p.pid >= 0 {
		return p.pid, p.pepoch, nil, nil
	}
	return noProducer, 0, p.startInitLocked(), nil
}

// bumpFrom returns a (producer id, epoch) pair newer than (id, epoch), the
// pair of a partition that must reset its sequences: the producer's current
// pair if another partition already moved it on, else the next epoch, else
// (at the last epoch) a new id, which takes an InitProducer round trip:
// then wait is set and the caller asks again once it is closed.
func (p *Producer) bumpFrom(id int64, epoch int16) (int64, int16, <-chan struct{}, error) {
	p.idMu.Lock()
	defer p.idMu.Unlock()
	if p.fatal != nil {
		return noProducer, 0, nil, p.fatal
	}
	if p.pid < 0 {
		return noProducer, 0, p.startInitLocked(), nil
	}
	if p.pid != id || p.pepoch != epoch {
		return p.pid, p.pepoch, nil, nil
	}
	if epoch < math.MaxInt16 {
		p.pepoch++
		p.log.Debug("skein: producer epoch bumped to reset sequences", "producer_id", p.pid, "epoch", p.pepoch)
		return p.pid, p.pepoch, nil, nil
	}
	p.bumpID, p.bumpEpoch = p.pid, p.pepoch
	p.pid = noProducer
	return noProducer, 0, p.startInitLocked(), nil
}

// startInitLocked starts the InitProducer goroutine unless it runs, and
// returns the channel it closes when done. p.idMu held.
func (p *Producer) startInitLocked() <-chan struct{} {
	if p.idWait != nil {
		return p.idWait
	}
	ch := make(chan struct{})
	p.idWait = ch
	p.idWG.Add(1)
	go p.initProducer(ch)
	return ch
}

// initProducer asks the cluster for an identity, retrying with backoff
// until it gets one, the producer closes, or the cluster says it never
// will. It closes done when it ends.
func (p *Producer) initProducer(done chan struct{}) {
	defer p.idWG.Done()
	defer close(done)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stop := context.AfterFunc(closeContext{p.quit}, cancel)
	defer stop()
	for attempt := 1; ; attempt++ {
		p.idMu.Lock()
		req := &skeinv1.InitProducerRequest{}
		if p.bumpID >= 0 {
			req.ProducerId, req.ProducerEpoch = &p.bumpID, int32(p.bumpEpoch)
		}
		p.idMu.Unlock()
		var resp *skeinv1.InitProducerResponse
		err := p.c.callAny(ctx, "InitProducer", func(ctx context.Context, cl skeinv1.SkeinClient) error {
			var err error
			resp, err = cl.InitProducer(ctx, req)
			return err
		})
		if err == nil && (resp.GetProducerId() < 0 || resp.GetProducerEpoch() < 0 || resp.GetProducerEpoch() > math.MaxInt16) {
			err = &Error{code: codes.Internal, LeaderID: -1, Message: fmt.Sprintf("InitProducer answered producer id %d epoch %d", resp.GetProducerId(), resp.GetProducerEpoch())}
		}
		p.idMu.Lock()
		if err == nil {
			p.pid, p.pepoch = resp.GetProducerId(), int16(resp.GetProducerEpoch())
			p.bumpID, p.idErr, p.idWait = noProducer, nil, nil
			p.idMu.Unlock()
			p.log.Debug("skein: idempotent producer initialised", "producer_id", p.pid, "epoch", p.pepoch)
			return
		}
		p.idErr = fmt.Errorf("get a producer id: %w", err)
		if initFatal(err) && ctx.Err() == nil {
			if e := (*Error)(nil); errors.As(err, &e) && e.code == codes.Unimplemented {
				p.idErr = fmt.Errorf("the broker does not support idempotent producers (InitProducer: %w); use client.Idempotent(false)", err)
			}
			p.fatal = p.idErr
		}
		if p.fatal != nil || ctx.Err() != nil {
			p.idWait = nil
			p.idMu.Unlock()
			if ctx.Err() == nil {
				p.log.Error("skein: idempotent producer cannot start", "err", p.fatal)
			}
			return
		}
		p.idMu.Unlock()
		p.log.Debug("skein: InitProducer failed; retrying", "err", err, "attempt", attempt)
		t := time.NewTimer(backoff(p.cfg.retryBackoff, attempt))
		select {
		case <-ctx.Done():
			t.Stop()
		case <-t.C:
		}
	}
}

// initFatal reports whether an InitProducer failure means it can never
// succeed: the broker does not know the call, or refuses the request as
// such. Anything else (no controller yet, a broker restarting, a timeout)
// is retried.
func initFatal(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	switch e.code {
	case codes.Unimplemented, codes.InvalidArgument, codes.PermissionDenied, codes.Unauthenticated:
		return true
	}
	return false
}

// setFatal makes err the producer's fatal error (the first one wins): every
// queued record fails with it, and so does every later one.
func (p *Producer) setFatal(err error) {
	p.idMu.Lock()
	first := p.fatal == nil
	if first {
		p.fatal = err
	}
	p.idMu.Unlock()
	if first {
		p.log.Error("skein: producer stopped by a fatal error", "err", err)
		p.wakeAll()
	}
}

// fatalErr is the producer's fatal error, or nil.
func (p *Producer) fatalErr() error {
	p.idMu.Lock()
	defer p.idMu.Unlock()
	return p.fatal
}

// waitingErr says why batches wait for a producer id, for their delivery
// timeout message.
func (p *Producer) waitingErr() error {
	p.idMu.Lock()
	defer p.idMu.Unlock()
	return p.idErr
}

// ProducerID returns the idempotent producer's id and epoch: (-1, -1) when
// the producer is not idempotent or has not sent anything yet. Partitions
// reset after a sequence gap may carry an older epoch of the id until they
// next need a reset.
func (p *Producer) ProducerID() (id int64, epoch int16) {
	p.idMu.Lock()
	defer p.idMu.Unlock()
	if p.pid < 0 {
		return -1, -1
	}
	return p.pid, p.pepoch
}

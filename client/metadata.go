package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/skeinlog/skein/internal/topicname"
	"github.com/skeinlog/skein/proto/skeinv1"
)

// metadata is the client's cache of cluster metadata. Snapshots are
// immutable and swapped atomically, so lookups take no lock; refreshes are
// serialised (one in flight at a time) and spaced by the retry backoff.
type metadata struct {
	snap atomic.Pointer[snapshot]

	mu        sync.Mutex    // guards the fields below
	running   chan struct{} // closed when the refresh in flight ends; nil if none
	lastErr   error         // of the last refresh; nil after a success
	lastEnd   time.Time     // when the last refresh ended
	fails     int           // consecutive failed refreshes
	lastGood  string        // the broker that answered last
	rotor     uint64        // turns the second broker a metadata refresh asks
	knownAddr []string      // broker addresses learned from metadata
}

// snapshot is one view of the cluster. gen counts successful refreshes (and
// applied leader hints); a caller that saw generation g and needs newer
// information waits for a generation above g.
type snapshot struct {
	gen     uint64
	at      time.Time
	brokers map[int32]string
	topics  map[string]*topicMeta
}

type topicMeta struct {
	info  TopicInfo
	parts []partMeta // by partition id
}

type partMeta struct {
	leader int32
	epoch  int32
	ok     bool // the partition appeared in the metadata
}

func (m *metadata) init() {
	m.snap.Store(&snapshot{brokers: map[int32]string{}, topics: map[string]*topicMeta{}})
}

// candidates is the order in which to try brokers for cluster-wide calls.
func (m *metadata) candidates(bootstrap []string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	seen := make(map[string]bool)
	var out []string
	add := func(a string) {
		if a != "" && !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	add(m.lastGood)
	for _, a := range bootstrap {
		add(a)
	}
	for _, a := range m.knownAddr {
		add(a)
	}
	return out
}

func (m *metadata) answered(addr string) {
	m.mu.Lock()
	m.lastGood = addr
	m.mu.Unlock()
}

// lookupError says why a partition cannot be routed yet.
type lookupError struct {
	err       error
	permanent bool // unknown topic or partition, as opposed to no leader yet
}

// leader looks a partition's leader up in the current snapshot. The
// returned leaderInfo always carries the snapshot generation.
func (m *metadata) leader(topic string, partition int32) (leaderInfo, *lookupError) {
	s := m.snap.Load()
	l := leaderInfo{id: -1, epoch: -1, gen: s.gen}
	t, ok := s.topics[topic]
	if !ok {
		return l, &lookupError{err: unknownTopic(topic), permanent: true}
	}
	if partition < 0 || int(partition) >= len(t.parts) || !t.parts[partition].ok {
		return l, &lookupError{err: unknownPartition(topic, partition, len(t.parts)), permanent: true}
	}
	p := t.parts[partition]
	l.id, l.epoch = p.leader, p.epoch
	if p.leader < 0 {
		return l, &lookupError{err: &Error{code: codes.Unavailable, reason: skeinv1.ErrorReason_NOT_LEADER,
			Message: fmt.Sprintf("partition %d of %q has no leader", partition, topic), LeaderID: -1}}
	}
	addr, ok := s.brokers[p.leader]
	if !ok || addr == "" {
		return l, &lookupError{err: &Error{code: codes.Unavailable, reason: skeinv1.ErrorReason_NOT_LEADER,
			Message: fmt.Sprintf("the leader of partition %d of %q, broker %d, has no known address", partition, topic, p.leader), LeaderID: -1}}
	}
	l.addr = addr
	return l, nil
}

func unknownPartition(topic string, partition int32, n int) *Error {
	return &Error{code: codes.NotFound, reason: skeinv1.ErrorReason_UNKNOWN_PARTITION, LeaderID: -1,
		Message: fmt.Sprintf("partition %d of %q does not exist (the topic has %d partitions: 0 to %d)", partition, topic, n, n-1)}
}

// topic returns a topic's cached metadata, or nil.
func (m *metadata) topic(name string) (*topicMeta, uint64) {
	s := m.snap.Load()
	return s.topics[name], s.gen
}

// store installs the answer of a Metadata call for all topics.
func (m *metadata) store(resp *skeinv1.MetadataResponse) {
	brokers := make(map[int32]string, len(resp.GetBrokers()))
	var addrs []string
	for _, b := range resp.GetBrokers() {
		brokers[b.GetId()] = b.GetAddr()
		addrs = append(addrs, b.GetAddr())
	}
	topics := make(map[string]*topicMeta, len(resp.GetTopics()))
	for _, t := range resp.GetTopics() {
		topics[t.GetName()] = newTopicMeta(t)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := m.snap.Load()
	// A broker cut off from the controller answers with the leaders it
	// last knew. Leader epochs only grow, so a lower epoch than the cache
	// holds (for the same topic, not one deleted and created again) is
	// such a stale view: keep the newer leader.
	for name, t := range topics {
		ot := old.topics[name]
		if ot == nil || ot.info.ID != t.info.ID {
			continue
		}
		for i := range t.parts {
			if i < len(ot.parts) && ot.parts[i].ok && ot.parts[i].epoch > t.parts[i].epoch {
				t.parts[i] = ot.parts[i]
				if _, ok := brokers[ot.parts[i].leader]; !ok {
					if a, ok := old.brokers[ot.parts[i].leader]; ok {
						brokers[ot.parts[i].leader] = a
					}
				}
			}
		}
	}
	m.snap.Store(&snapshot{gen: old.gen + 1, at: time.Now(), brokers: brokers, topics: topics})
	m.knownAddr = addrs
}

// mergeMetadata combines two brokers' answers: the union of brokers and
// topics, and for each partition the leader with the higher epoch (the
// other broker may not have heard of the latest election yet).
func mergeMetadata(a, b *skeinv1.MetadataResponse) *skeinv1.MetadataResponse {
	out := &skeinv1.MetadataResponse{ClusterId: a.GetClusterId(), ControllerId: a.GetControllerId(), Brokers: a.GetBrokers()}
	seen := map[int32]bool{}
	for _, br := range a.GetBrokers() {
		seen[br.GetId()] = true
	}
	for _, br := range b.GetBrokers() {
		if !seen[br.GetId()] {
			out.Brokers = append(out.Brokers, br)
		}
	}
	bt := map[string]*skeinv1.TopicMetadata{}
	for _, t := range b.GetTopics() {
		bt[t.GetName()] = t
	}
	for _, t := range a.GetTopics() {
		o := bt[t.GetName()]
		delete(bt, t.GetName())
		if o == nil || o.GetTopicId() != t.GetTopicId() {
			out.Topics = append(out.Topics, t)
			continue
		}
		op := map[int32]*skeinv1.PartitionMetadata{}
		for _, p := range o.GetPartitions() {
			op[p.GetPartition()] = p
		}
		mt := &skeinv1.TopicMetadata{Name: t.GetName(), TopicId: t.GetTopicId(), Config: t.GetConfig()}
		if len(o.GetPartitions()) > len(t.GetPartitions()) {
			// Partitions only grow: the answer with more is the newer one.
			mt.Config = o.GetConfig()
		}
		for _, p := range t.GetPartitions() {
			if q := op[p.GetPartition()]; q != nil && q.GetLeaderEpoch() > p.GetLeaderEpoch() {
				p = q
			}
			delete(op, p.GetPartition())
			mt.Partitions = append(mt.Partitions, p)
		}
		for _, q := range o.GetPartitions() {
			if op[q.GetPartition()] != nil {
				mt.Partitions = append(mt.Partitions, q) // only the other broker knows it yet
			}
		}
		out.Topics = append(out.Topics, mt)
	}
	for _, t := range b.GetTopics() {
		if bt[t.GetName()] != nil {
			out.Topics = append(out.Topics, t)
		}
	}
	return out
}

func newTopicMeta(t *skeinv1.TopicMetadata) *topicMeta {
	tm := &topicMeta{info: topicInfoFromProto(t)}
	n := 0
	for _, p := range t.GetPartitions() {
		n = max(n, int(p.GetPartition())+1)
	}
	tm.parts = make([]partMeta, n)
	for _, p := range t.GetPartitions() {
		if p.GetPartition() >= 0 {
			tm.parts[p.GetPartition()] = partMeta{leader: p.GetLeader(), epoch: p.GetLeaderEpoch(), ok: true}
		}
	}
	return tm
}

// applyHint installs the leader named by a NotLeader error when it is newer
// than what the cache holds, so the next attempt goes straight there. It
// reports whether it changed anything.
func (m *metadata) applyHint(topic string, partition int32, err error) bool {
	var e *Error
	if !errors.As(err, &e) || e.reason != skeinv1.ErrorReason_NOT_LEADER || e.LeaderID < 0 || e.LeaderAddr == "" {
		return false
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.snap.Load()
	t, ok := s.topics[topic]
	if !ok || partition < 0 || int(partition) >= len(t.parts) {
		return false
	}
	cur := t.parts[partition]
	if e.LeaderEpoch <= cur.epoch {
		return false
	}
	nt := &topicMeta{info: t.info, parts: append([]partMeta(nil), t.parts...)}
	nt.parts[partition] = partMeta{leader: e.LeaderID, epoch: e.LeaderEpoch, ok: true}
	ns := &snapshot{gen: s.gen + 1, at: s.at, brokers: make(map[int32]string, len(s.brokers)+1), topics: make(map[string]*topicMeta, len(s.topics))}
	for k, v := range s.brokers {
		ns.brokers[k] = v
	}
	ns.brokers[e.LeaderID] = e.LeaderAddr
	for k, v := range s.topics {
		ns.topics[k] = v
	}
	ns.topics[topic] = nt
	m.snap.Store(ns)
	return true
}

// refresh makes sure the cached metadata is newer than generation gen,
// refreshing it (or waiting for the refresh in flight) as needed. It returns
// the refresh's error if none succeeded.
func (c *Client) refresh(ctx context.Context, gen uint64) error {
	for {
		done, err := c.startRefresh(gen)
		if done == nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.quit:
			return ErrClosed
		case <-done:
		}
		if c.meta.snap.Load().gen > gen {
			return nil
		}
		c.meta.mu.Lock()
		err = c.meta.lastErr
		c.meta.mu.Unlock()
		if err != nil {
			return err
		}
	}
}

// refreshAsync starts a refresh unless the metadata is already newer than
// gen, and returns a channel closed when that refresh ends (already closed
// if none is needed).
func (c *Client) refreshAsync(gen uint64) <-chan struct{} {
	done, _ := c.startRefresh(gen)
	if done == nil {
		return closedChan
	}
	return done
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// maybeRefreshStale starts a background refresh when the cached metadata is
// older than the max age.
func (c *Client) maybeRefreshStale() {
	s := c.meta.snap.Load()
	if time.Since(s.at) > c.cfg.metadataMaxAge {
		c.startRefresh(s.gen)
	}
}

// startRefresh returns the channel of the refresh in flight, starting one if
// the metadata is not newer than gen; nil when no refresh is needed.
func (c *Client) startRefresh(gen uint64) (chan struct{}, error) {
	m := &c.meta
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.snap.Load().gen > gen {
		return nil, nil
	}
	if m.running != nil {
		return m.running, nil
	}
	select {
	case <-c.quit:
		return nil, ErrClosed
	default:
	}
	done := make(chan struct{})
	m.running = done
	wait := c.cfg.retryBackoff - time.Since(m.lastEnd)
	if m.fails > 0 {
		wait = backoff(c.cfg.retryBackoff, m.fails) - time.Since(m.lastEnd)
	}
	if !c.goFunc(func() { c.runRefresh(done, wait) }) {
		m.running = nil
		return nil, ErrClosed
	}
	return done, nil
}

func (c *Client) runRefresh(done chan struct{}, wait time.Duration) {
	var err error
	defer func() {
		m := &c.meta
		m.mu.Lock()
		m.running = nil
		m.lastErr = err
		m.lastEnd = time.Now()
		if err != nil {
			m.fails++
		} else {
			m.fails = 0
		}
		m.mu.Unlock()
		close(done)
	}()
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-c.quit:
			t.Stop()
			err = ErrClosed
			return
		case <-t.C:
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-c.quit:
			cancel()
		case <-ctx.Done():
		}
	}()
	var resp *skeinv1.MetadataResponse
	resp, err = c.fetchMetadata(ctx)
	if err != nil {
		c.log.Warn("skein: metadata refresh failed", "err", err)
		return
	}
	c.meta.store(resp)
	c.log.Debug("skein: metadata refreshed", "brokers", len(resp.GetBrokers()), "topics", len(resp.GetTopics()))
}

// metadataGrace is how long a refresh waits for its second broker's answer
// once the first has come.
const metadataGrace = 150 * time.Millisecond

// fetchMetadata asks two brokers at once, the one that answered last and
// the next of the others in turn, and merges their answers; if neither
// answers it tries the rest one by one. One broker's view can be stale: a
// broker cut off from the controller (clients still reach it) goes on
// naming itself leader, and a client asking only it would never learn of
// the new leader elected on the other side.
func (c *Client) fetchMetadata(ctx context.Context) (*skeinv1.MetadataResponse, error) {
	addrs := c.meta.candidates(c.cfg.brokers)
	if len(addrs) > 2 {
		c.meta.mu.Lock()
		c.meta.rotor++
		k := 1 + int(c.meta.rotor%uint64(len(addrs)-1))
		c.meta.mu.Unlock()
		addrs[1], addrs[k] = addrs[k], addrs[1]
	}
	type answer struct {
		addr string
		resp *skeinv1.MetadataResponse
		err  error
	}
	n := min(2, len(addrs))
	answers := make(chan answer, n)
	actx, cancel := c.withTimeout(ctx)
	defer cancel()
	for _, addr := range addrs[:n] {
		go func() {
			cl, err := c.conn(addr)
			if err != nil {
				answers <- answer{addr: addr, err: err}
				return
			}
			resp, err := cl.Metadata(actx, &skeinv1.MetadataRequest{})
			answers <- answer{addr: addr, resp: resp, err: fromRPC(err)}
		}()
	}
	var got []answer
	var last error
	var grace <-chan time.Time
	for waiting := n; waiting > 0; {
		select {
		case a := <-answers:
			waiting--
			if a.err != nil {
				last = a.err
				continue
			}
			got = append(got, a)
			if grace == nil {
				grace = time.After(metadataGrace)
			}
		case <-grace:
			waiting = 0
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if len(got) > 0 {
		c.meta.answered(got[0].addr)
		resp := got[0].resp
		for _, a := range got[1:] {
			resp = mergeMetadata(resp, a.resp)
		}
		return resp, nil
	}
	if last != nil && !isTransport(last) {
		return nil, last
	}
	var resp *skeinv1.MetadataResponse
	err := c.callAnyOf(ctx, addrs[n:], "metadata", func(ctx context.Context, cl skeinv1.SkeinClient) error {
		var err error
		resp, err = cl.Metadata(ctx, &skeinv1.MetadataRequest{})
		return err
	})
	if err != nil && len(addrs) <= n {
		return nil, fmt.Errorf("no broker answered (tried %s): %w", strings.Join(addrs, ", "), last)
	}
	return resp, err
}

// unknownTopic is the error for a topic the metadata does not name: an
// invalid name says what is wrong with it (no broker would ever have it).
func unknownTopic(topic string) *Error {
	if err := topicname.Check(topic); err != nil {
		return &Error{code: codes.InvalidArgument, reason: skeinv1.ErrorReason_INVALID_TOPIC, LeaderID: -1,
			Message: fmt.Sprintf("invalid topic name: %v", err)}
	}
	return &Error{code: codes.NotFound, reason: skeinv1.ErrorReason_UNKNOWN_TOPIC, LeaderID: -1,
		Message: fmt.Sprintf("topic %q does not exist", topic)}
}

package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/skeinlog/skein/internal/groupname"
	"github.com/skeinlog/skein/internal/topicname"
	"github.com/skeinlog/skein/proto/skeinv1"
)

// Group errors (see the sentinel block in errors.go for the classes).
var (
	// ErrNotCoordinator: the broker does not coordinate the group (it moved
	// with its offsets partition's leadership). Retriable: the group
	// consumer finds the coordinator again by itself.
	ErrNotCoordinator = errors.New("not the group coordinator")
	// ErrUnknownGroup: the group has no committed offsets and no members.
	// Fatal to the request.
	ErrUnknownGroup = errors.New("unknown group")
	// ErrFencedMemberEpoch: the member was removed from its group (its
	// session expired, it left, the coordinator moved) or used an older
	// member epoch, so its commit was refused and nothing was written. The
	// group consumer drops its partitions and rejoins by itself; records
	// processed since its last commit are delivered again.
	ErrFencedMemberEpoch = errors.New("fenced member epoch")
	// ErrGroupNotEmpty: the operation needs a group without members; the
	// message lists them. Fatal to the request.
	ErrGroupNotEmpty = errors.New("group has members")
	// ErrInvalidGroup: the group name is invalid. Fatal to the request.
	ErrInvalidGroup = errors.New("invalid group name")
)

var groupReasons = map[skeinv1.ErrorReason]error{
	skeinv1.ErrorReason_NOT_COORDINATOR:     ErrNotCoordinator,
	skeinv1.ErrorReason_UNKNOWN_GROUP:       ErrUnknownGroup,
	skeinv1.ErrorReason_FENCED_MEMBER_EPOCH: ErrFencedMemberEpoch,
	skeinv1.ErrorReason_GROUP_NOT_EMPTY:     ErrGroupNotEmpty,
	skeinv1.ErrorReason_INVALID_GROUP:       ErrInvalidGroup,
}

func init() {
	for r, e := range groupReasons {
		reasonSentinels[r] = e
	}
}

// CheckGroupName returns why name is not a valid group name (the broker's
// rule: 1 to 249 letters, digits, '.', '_', '-' and ':', not starting with
// '-' or '.'), or nil.
func CheckGroupName(name string) error {
	if err := groupname.Check(name); err != nil {
		return &Error{code: codes.InvalidArgument, reason: skeinv1.ErrorReason_INVALID_GROUP, Message: err.Error(), LeaderID: -1}
	}
	return nil
}

// TopicPartition names one partition of a topic.
type TopicPartition struct {
	Topic     string
	Partition int32
}

func (tp TopicPartition) String() string { return fmt.Sprintf("%s/%d", tp.Topic, tp.Partition) }

// groupConfig is the part of a consumer's configuration that only group
// consumers use.
type groupConfig struct {
	reset          Offset
	noAutoCommit   bool
	commitInterval time.Duration
	sessionTimeout time.Duration
	regex          string
	clientID       string
	rack           string
	onAssigned     func([]TopicPartition)
	onRevoked      func([]TopicPartition)
}

func defaultGroupConfig() groupConfig {
	return groupConfig{reset: End(), commitInterval: 5 * time.Second}
}

func (c *consumerConfig) grp() *groupConfig {
	if c.group == nil {
		g := defaultGroupConfig()
		c.group = &g
	}
	return c.group
}

// ResetOffset is where a group consumer starts a partition for which its
// group has no committed offset (or whose committed offset is no longer in
// the log): Beginning, End, AtTime, ... Default End, like Kafka's
// auto.offset.reset=latest. Group consumers only.
func ResetOffset(o Offset) ConsumerOpt {
	return consumerOpt(func(c *consumerConfig) { c.grp().reset = o })
}

// AutoCommit turns automatic commits on or off (default on): a group
// consumer then commits, every CommitInterval, the positions of the records
// its caller has finished with (those returned before the latest Poll or
// Next call), and does so too before giving up a partition and in Close.
// Group consumers only.
func AutoCommit(on bool) ConsumerOpt {
	return consumerOpt(func(c *consumerConfig) { c.grp().noAutoCommit = !on })
}

// CommitInterval is how often automatic commits run (default 5 s).
// Group consumers only.
func CommitInterval(d time.Duration) ConsumerOpt {
	return consumerOpt(func(c *consumerConfig) { c.grp().commitInterval = d })
}

// SessionTimeout is how long the coordinator keeps a member that stopped
// heartbeating before it gives its partitions to others (default 10 s;
// between 1 s and 5 min). Group consumers only.
func SessionTimeout(d time.Duration) ConsumerOpt {
	return consumerOpt(func(c *consumerConfig) { c.grp().sessionTimeout = d })
}

// TopicRegex subscribes a group consumer to every topic whose name matches
// the RE2 expression, now and as topics are created, instead of a list.
// Internal topics never match. Group consumers only.
func TopicRegex(expr string) ConsumerOpt {
	return consumerOpt(func(c *consumerConfig) { c.grp().regex = expr })
}

// GroupClientID names the member in the group's description (default
// empty). Group consumers only.
func GroupClientID(id string) ConsumerOpt {
	return consumerOpt(func(c *consumerConfig) { c.grp().clientID = id })
}

// ClientRack names the rack (or availability zone) the member runs in,
// as Kafka's client.rack: the coordinator then prefers giving it
// partitions led by a broker of that rack (the brokers' --rack), so it
// reads within its rack, as long as the group stays balanced. Default none. Group consumers only.
func ClientRack(rack string) ConsumerOpt {
	return consumerOpt(func(c *consumerConfig) { c.grp().rack = rack })
}

// OnAssigned is called with the partitions the group gives the member,
// before their first records; OnRevoked with those it must give up, after
// their last records were returned and before they are committed and
// released. Both run on the goroutine calling Poll or Next, inside that
// call. Group consumers only.
func OnAssigned(fn func([]TopicPartition)) ConsumerOpt {
	return consumerOpt(func(c *consumerConfig) { c.grp().onAssigned = fn })
}

// OnRevoked: see OnAssigned. Group consumers only.
func OnRevoked(fn func([]TopicPartition)) ConsumerOpt {
	return consumerOpt(func(c *consumerConfig) { c.grp().onRevoked = fn })
}

func (g *groupConfig) validate() error {
	switch {
	case g.commitInterval <= 0:
		return fmt.Errorf("skein group consumer: commit interval %v: must be positive", g.commitInterval)
	case g.sessionTimeout != 0 && (g.sessionTimeout < time.Second || g.sessionTimeout > 5*time.Minute):
		return fmt.Errorf("skein group consumer: session timeout %v: between 1s and 5m", g.sessionTimeout)
	}
	return nil
}

// checkTopicName refuses a topic name no broker would have.
func checkTopicName(topic string) error {
	if err := topicname.Check(topic); err != nil {
		return &Error{code: codes.InvalidArgument, reason: skeinv1.ErrorReason_INVALID_TOPIC, LeaderID: -1,
			Message: fmt.Sprintf("invalid topic name: %v", err)}
	}
	return nil
}

// fencedError is the client's own ErrFencedMemberEpoch.
func fencedError(format string, args ...any) *Error {
	return &Error{code: codes.FailedPrecondition, reason: skeinv1.ErrorReason_FENCED_MEMBER_EPOCH, LeaderID: -1,
		Message: fmt.Sprintf(format, args...)}
}

// groupsConn returns the Groups API stub for a broker address.
func (c *Client) groupsConn(addr string) (skeinv1.GroupsClient, error) {
	if _, err := c.conn(addr); err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cc, ok := c.conns[addr]
	if !ok {
		return nil, ErrClosed
	}
	return skeinv1.NewGroupsClient(cc), nil
}

// callAnyGroups runs fn against the Groups service of the brokers in
// callAny's order until one answers (a transport failure moves on).
func (c *Client) callAnyGroups(ctx context.Context, fn func(context.Context, skeinv1.GroupsClient) error) error {
	addrs := c.meta.candidates(c.cfg.brokers)
	var last error
	for _, addr := range addrs {
		gc, err := c.groupsConn(addr)
		if err != nil {
			return err
		}
		actx, cancel := c.withTimeout(ctx)
		err = fromRPC(fn(actx, gc))
		cancel()
		if err == nil || ctx.Err() != nil || !isTransport(err) {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		}
		last = err
	}
	return fmt.Errorf("no broker answered (tried %s): %w", strings.Join(addrs, ", "), last)
}

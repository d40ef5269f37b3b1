package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skeinlog/skein/proto/skeinv1"
)

func TestErrorDetailRoundTrip(t *testing.T) {
	d := &skeinv1.ErrorDetail{Code: uint32(codes.FailedPrecondition), Reason: skeinv1.ErrorReason_NOT_LEADER, Message: "moved",
		LeaderId: 3, LeaderAddr: "b3:9420", LeaderEpoch: 7, NextOffset: 11, LogStartOffset: 2, HighWatermark: 40}
	want := &Error{code: codes.FailedPrecondition, reason: skeinv1.ErrorReason_NOT_LEADER, Message: "moved",
		LeaderID: 3, LeaderAddr: "b3:9420", LeaderEpoch: 7, NextOffset: 11, LogStartOffset: 2, HighWatermark: 40}
	// Status with the detail (what a broker sends from a unary call) -> Go
	// error, and the detail alone (stream answers) -> Go error.
	st, err := status.New(codes.FailedPrecondition, "moved").WithDetails(d)
	if err != nil {
		t.Fatal(err)
	}
	var got *Error
	if back := fromRPC(st.Err()); !errors.As(back, &got) || !reflect.DeepEqual(got, want) {
		t.Fatalf("from status: got %+v, want %+v", got, want)
	}
	if got := errorFromDetail(d); !reflect.DeepEqual(got, want) {
		t.Fatalf("from detail: got %+v, want %+v", got, want)
	}
	if got.Kind() != ErrNotLeader || !got.Retriable() {
		t.Fatalf("kind %v, retriable %v", got.Kind(), got.Retriable())
	}
	if errorFromDetail(nil) != nil {
		t.Fatal("nil detail must decode to nil")
	}
	if k := fromRPC(status.Error(codes.Unavailable, "down")).(*Error).Kind(); k != nil {
		t.Fatalf("a transport failure has kind %v, want none", k)
	}
}

func TestErrorMatchesSentinels(t *testing.T) {
	for reason, sentinel := range reasonSentinels {
		err := fmt.Errorf("wrapped: %w", errorFromDetail(&skeinv1.ErrorDetail{Code: uint32(codes.FailedPrecondition), Reason: reason}))
		if !errors.Is(err, sentinel) {
			t.Errorf("%v does not match %v", reason, sentinel)
		}
		for other, s2 := range reasonSentinels {
			if other != reason && errors.Is(err, s2) {
				t.Errorf("%v also matches %v", reason, s2)
			}
		}
	}
	byCode := []struct {
		code codes.Code
		want error
	}{
		{codes.Unavailable, ErrUnavailable},
		{codes.DeadlineExceeded, ErrTimedOut},
		{codes.DeadlineExceeded, context.DeadlineExceeded},
		{codes.Canceled, context.Canceled},
		{codes.AlreadyExists, ErrTopicExists},
	}
	for _, c := range byCode {
		err := fromRPC(status.Error(c.code, "x"))
		if !errors.Is(err, c.want) {
			t.Errorf("code %v does not match %v", c.code, c.want)
		}
	}
	if errors.Is(fromRPC(status.Error(codes.Internal, "x")), ErrUnavailable) {
		t.Error("Internal matched ErrUnavailable")
	}
}

func TestFromRPCPassesThrough(t *testing.T) {
	if fromRPC(nil) != nil || fromRPC(io.EOF) != io.EOF {
		t.Fatal("nil or io.EOF changed")
	}
	if err := fromRPC(context.Canceled); err != context.Canceled {
		t.Fatalf("plain context error changed: %v", err)
	}
	// A status without details keeps its code and message.
	var e *Error
	if err := fromRPC(status.Error(codes.NotFound, "nope")); !errors.As(err, &e) || e.code != codes.NotFound || e.Message != "nope" {
		t.Fatalf("status without details: %v", err)
	}
	// A detail with no code takes the status's.
	st, _ := status.New(codes.OutOfRange, "range").WithDetails(&skeinv1.ErrorDetail{Reason: skeinv1.ErrorReason_OFFSET_OUT_OF_RANGE, LogStartOffset: 1, HighWatermark: 9})
	err := fromRPC(st.Err())
	if !errors.As(err, &e) || e.code != codes.OutOfRange || e.Message != "range" || !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("detail without code: %+v", e)
	}
	if want := "offset out of range: range (valid offsets are 1 to 9)"; err.Error() != want {
		t.Fatalf("message %q, want %q", err.Error(), want)
	}
}

func TestIsRetriable(t *testing.T) {
	retriable := map[skeinv1.ErrorReason]bool{
		skeinv1.ErrorReason_NOT_LEADER:           true,
		skeinv1.ErrorReason_FENCED_LEADER_EPOCH:  true,
		skeinv1.ErrorReason_UNKNOWN_LEADER_EPOCH: true,
		skeinv1.ErrorReason_NOT_ENOUGH_REPLICAS:  true,
		skeinv1.ErrorReason_UNAVAILABLE:          true,
		skeinv1.ErrorReason_NOT_COORDINATOR:      true,
	}
	for r := range skeinv1.ErrorReason_name {
		reason := skeinv1.ErrorReason(r)
		if reason == skeinv1.ErrorReason_ERROR_REASON_UNSPECIFIED {
			continue
		}
		err := errorFromDetail(&skeinv1.ErrorDetail{Code: uint32(codes.FailedPrecondition), Reason: reason})
		if got := IsRetriable(err); got != retriable[reason] {
			t.Errorf("IsRetriable(%v) = %v", reason, got)
		}
	}
	if !IsRetriable(transportError("b:1", io.EOF)) {
		t.Error("transport error not retriable")
	}
	if !IsRetriable(fromRPC(status.Error(codes.Unavailable, "conn refused"))) {
		t.Error("status Unavailable not retriable")
	}
	for _, err := range []error{
		fromRPC(status.Error(codes.DeadlineExceeded, "slow")),
		errorFromDetail(&skeinv1.ErrorDetail{Code: uint32(codes.DeadlineExceeded), Reason: skeinv1.ErrorReason_TIMED_OUT}),
		errors.New("plain"),
		ErrClosed,
		nil,
	} {
		if IsRetriable(err) {
			t.Errorf("IsRetriable(%v) = true", err)
		}
	}
	if !isTimeout(errorFromDetail(&skeinv1.ErrorDetail{Reason: skeinv1.ErrorReason_TIMED_OUT})) || !isTimeout(fromRPC(status.Error(codes.DeadlineExceeded, "x"))) {
		t.Error("timeouts not recognised")
	}
}

func TestBackoff(t *testing.T) {
	base := 100 * 1e6
	for attempt := 1; attempt < 20; attempt++ {
		d := backoff(100e6, attempt)
		want := min(float64(base)*float64(int(1)<<min(attempt-1, 10)), 1e9)
		if float64(d) > want || float64(d) < want*0.8 {
			t.Errorf("attempt %d: %v outside [0.8, 1] x %v", attempt, d, want)
		}
	}
	if d := backoff(3e9, 5); d > 3e9 || d < 2.4e9 {
		t.Errorf("a base above the cap is kept: %v", d)
	}
}

func TestParseAcks(t *testing.T) {
	for in, want := range map[string]Acks{"all": AcksAll, "-1": AcksAll, "leader": AcksLeader, "1": AcksLeader, "none": AcksNone, "0": AcksNone, "ALL": AcksAll} {
		got, err := ParseAcks(in)
		if err != nil || got != want {
			t.Errorf("ParseAcks(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseAcks("2"); err == nil {
		t.Error("ParseAcks(2) accepted")
	}
}

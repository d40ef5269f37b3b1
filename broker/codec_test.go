package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skeinlog/skein/broker/brokertest"
)

// A frame that is not a protobuf message (a field tag with wire type 7,
// which does not exist) gets INVALID_ARGUMENT on a unary call, a server
// stream and a client stream, and the broker serves on.
func TestMalformedProtobufIsInvalidArgument(t *testing.T) {
	b := brokertest.Start(t)
	conn := dialConn(t, b.Addr())
	c := dial(t, b.Addr())
	createTopic(t, c, "m", 1)
	garbage := []byte{0x0f, 0xff, 0xff}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	want := func(what string, err error) {
		t.Helper()
		if st, _ := status.FromError(err); st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), "malformed request") {
			t.Fatalf("%s: %v, want INVALID_ARGUMENT", what, err)
		}
	}
	_, err := invokeRaw(ctx, conn, "Produce", garbage)
	want("unary Produce", err)
	_, err = invokeRaw(ctx, conn, "CreateTopic", garbage)
	want("unary CreateTopic", err)
	want("Fetch stream", fetchRaw(ctx, conn, garbage))
	desc := &grpc.StreamDesc{StreamName: "ProduceStream", ServerStreams: true, ClientStreams: true}
	s, err := conn.NewStream(ctx, desc, "/skein.v1.Skein/ProduceStream", grpc.ForceCodec(rawCodec{}))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg(&garbage); err != nil {
		t.Fatal(err)
	}
	var out []byte
	want("ProduceStream", s.RecvMsg(&out))
	produce(t, c, "m", 0, "fine")
	if got := metric(t, b.HTTPAddr(), `skein_rpc_total{code="InvalidArgument",method="/skein.v1.Skein/Produce"}`); !strings.HasSuffix(got, " 1") {
		t.Fatalf("rpc metric: %q", got)
	}
}

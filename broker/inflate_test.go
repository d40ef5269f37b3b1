package broker_test

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/proto/batch"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// zstdBomb is a batch of one record of size zero bytes, compressed with
// zstd: a few KiB on the wire.
func zstdBomb(t testing.TB, size int) []byte {
	t.Helper()
	b := batch.NewBuilder(batch.Zstd)
	b.Add(&batch.Record{Value: make([]byte, size)})
	out, err := b.Build(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) > 64<<10 {
		t.Fatalf("bomb of %d bytes", len(out))
	}
	return out
}

// lyingBomb rewrites the uncompressed size a batch declares to n (CRC and
// length fixed), so only inflating it shows what it holds.
func lyingBomb(t testing.TB, v []byte, n uint64) []byte {
	t.Helper()
	_, k := binary.Uvarint(v[batch.HeaderSize:])
	out := append(append([]byte{}, v[:batch.HeaderSize]...), binary.AppendUvarint(nil, n)...)
	out = append(out, v[batch.HeaderSize+k:]...)
	binary.LittleEndian.PutUint32(out[8:], uint32(len(out)-12))     // batch length
	binary.LittleEndian.PutUint32(out[17:], batch.CRC32C(out[21:])) // CRC
	if _, err := batch.Validate(out, batch.Limits{}); err == nil || strings.Contains(err.Error(), "CRC") {
		t.Fatalf("lying bomb is not a well-formed lie: %v", err)
	}
	return out
}

// A compression bomb is refused before anything inflates it when it says
// what it holds, and at the declared size when it lies; nothing is appended
// either way and the broker serves on.
func TestCompressionBombRefused(t *testing.T) {
	b := brokertest.Start(t)
	c := dial(t, b.Addr())
	createTopic(t, c, "bomb", 1)
	honest := zstdBomb(t, 60<<20)
	_, err := c.Produce(context.Background(), &pb.ProduceRequest{Topic: "bomb", LeaderEpoch: -1, Batch: honest})
	code, d := detail(t, err)
	if code != codes.InvalidArgument || d.GetReason() != pb.ErrorReason_RECORD_TOO_LARGE ||
		!strings.Contains(d.GetMessage(), "max.record.bytes 1048576") || !strings.Contains(d.GetMessage(), "inflates to 629") {
		t.Fatalf("honest bomb: %v", err)
	}
	_, err = c.Produce(context.Background(), &pb.ProduceRequest{Topic: "bomb", LeaderEpoch: -1, Batch: lyingBomb(t, honest, 1000)})
	code, d = detail(t, err)
	if code != codes.InvalidArgument || d.GetReason() != pb.ErrorReason_INVALID_RECORD || !strings.Contains(d.GetMessage(), "declared 1000 bytes") {
		t.Fatalf("lying bomb: %v", err)
	}
	if got := metric(t, b.HTTPAddr(), `skein_refused_requests_total{reason="inflation"}`); !strings.HasSuffix(got, " 1") {
		t.Fatalf("refused metric: %q", got)
	}
	if st := b.Partition("bomb", 0).State(); st.LogEndOffset != 0 || st.SizeBytes != 0 {
		t.Fatalf("after two bombs: log end %d, %d bytes", st.LogEndOffset, st.SizeBytes)
	}
	produce(t, c, "bomb", 0, "fine")
	if recs := fetchAll(t, c, "bomb", 0, 0); len(recs) != 1 || string(recs[0].Value) != "fine" {
		t.Fatalf("after the bombs: %v", recs)
	}
}

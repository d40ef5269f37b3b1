package broker_test

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/broker/brokertest"
)

func readyz(t testing.TB, httpAddr string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// /readyz fails, saying why, while the data directory's disk is nearly full
// or file handles are nearly used up, and recovers by itself after.
func TestReadyzTellsWhy(t *testing.T) {
	var free, open atomic.Int64
	free.Store(1 << 30)
	open.Store(50)
	b := brokertest.Start(t, brokertest.WithConfig(func(c *broker.Config) {
		c.DiskFree = func(string) (uint64, bool) { return uint64(free.Load()), true }
		c.FileHandles = func() (int, int, bool) { return int(open.Load()), 1000, true }
	}))
	if code, body := readyz(t, b.HTTPAddr()); code != 200 || body != "ready\n" {
		t.Fatalf("healthy broker: %d %q", code, body)
	}
	free.Store(10 << 20)
	if code, body := readyz(t, b.HTTPAddr()); code != 503 || !strings.Contains(body, "disk nearly full: 10485760 bytes free") {
		t.Fatalf("disk full: %d %q", code, body)
	}
	open.Store(990)
	code, body := readyz(t, b.HTTPAddr())
	if code != 503 || !strings.Contains(body, "disk nearly full") || !strings.Contains(body, "file handles nearly exhausted: 990 open") {
		t.Fatalf("disk full and out of handles: %d %q", code, body)
	}
	free.Store(1 << 30)
	open.Store(50)
	if code, body := readyz(t, b.HTTPAddr()); code != 200 {
		t.Fatalf("after recovering: %d %q", code, body)
	}
	if got := metric(t, b.HTTPAddr(), "skein_readyz_not_ready_total"); got != "skein_readyz_not_ready_total 2" {
		t.Fatalf("not-ready metric: %q", got)
	}
}

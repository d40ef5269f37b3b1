package broker_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/broker/brokertest"
)

// The profiler (and its /cmdline, which shows the command line with any
// secret on it) is served only with Pprof; metrics and health always.
func TestPprofOnlyWhenAsked(t *testing.T) {
	get := func(addr, path string) int {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	off := brokertest.Start(t)
	on := brokertest.Start(t, brokertest.WithConfig(func(c *broker.Config) { c.Pprof = true }))
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/symbol"} {
		if code := get(off.HTTPAddr(), path); code != http.StatusNotFound {
			t.Errorf("GET %s without Pprof: %d, want 404", path, code)
		}
		if code := get(on.HTTPAddr(), path); code != http.StatusOK {
			t.Errorf("GET %s with Pprof: %d, want 200", path, code)
		}
	}
	for _, path := range []string{"/metrics", "/healthz", "/readyz"} {
		if code := get(off.HTTPAddr(), path); code != http.StatusOK {
			t.Errorf("GET %s: %d, want 200", path, code)
		}
	}
}

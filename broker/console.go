package broker

import (
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/console"
)

// consoleClient is the admin client the web console reads through: the
// same API the command-line tools use, dialled at this broker's own client
// listener on first use and closed with the broker.
type consoleClient struct {
	mu sync.Mutex // guards c
	c  *client.Client
}

func (b *Broker) consoleSource() (console.Source, error) {
	b.console.mu.Lock()
	defer b.console.mu.Unlock()
	if b.console.c != nil {
		return b.console.c, nil
	}
	addr := loopbackAddr(b.Addr())
	c, err := client.New(append(b.selfClientOpts(addr), client.Brokers(addr), client.RequestTimeout(5*time.Second), client.Logger(b.log))...)
	if err != nil {
		return nil, err
	}
	b.console.c = c
	return c, nil
}

func (b *Broker) closeConsole() {
	b.console.mu.Lock()
	defer b.console.mu.Unlock()
	if b.console.c != nil {
		b.console.c.Close()
		b.console.c = nil
	}
}

// loopbackAddr turns a wildcard listen address (0.0.0.0:9420, [::]:9420)
// into one this host can dial.
func loopbackAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}

// consoleHandler serves the web console under /ui/.
func (b *Broker) consoleHandler(mux *http.ServeMux) {
	mux.Handle("/ui/", console.Handler("/ui/", b.consoleSource))
	mux.Handle("/ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
}

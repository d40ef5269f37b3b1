package broker

import (
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/skeinlog/skein/auth"
	"github.com/skeinlog/skein/client"
	"github.com/skeinlog/skein/console"
)

// consoleClient is the admin client the web console reads through: the
// same API the command-line tools use, dialled at this broker's own
// inter-broker listener (as the broker, with its certificate when TLS is
// on, so it sees everything) on first use and closed with the broker. What
// a console user sees of it is cut to the user's ACLs by consoleGate.
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
	addr := loopbackAddr(b.PeerAddr())
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
	mux.Handle("/ui/", console.Handler("/ui/", b.consoleSource, b.consoleGate()))
	mux.Handle("/ui", http.RedirectHandler("/ui/", http.StatusMovedPermanently))
}

// consoleGate is nil (everyone sees everything) with security off: no TLS
// and no ACLs. With either on, every console request must authenticate
// (HTTP basic authentication as a SCRAM user, or a verified client
// certificate), and sees what its principal may describe.
func (b *Broker) consoleGate() console.Gate {
	if b.tls == nil && !b.authz.Enabled() {
		return nil
	}
	return func(w http.ResponseWriter, r *http.Request) (console.Viewer, bool) {
		p, err := b.httpPrincipal(r)
		if err == nil && p == auth.Anonymous {
			err = errors.New("the console needs a user: sign in with a SCRAM user's name and password, or present a client certificate")
		}
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="skein", charset="UTF-8"`)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return nil, false
		}
		return consoleViewer{a: b.authz, p: p}, true
	}
}

// consoleViewer is what principal p may see in the console: what the
// authorizer lets it describe.
type consoleViewer struct {
	a *auth.Authorizer
	p auth.Principal
}

func (v consoleViewer) Principal() string { return string(v.p) }

func (v consoleViewer) DescribeCluster() bool {
	return v.a.Decide(v.p, auth.Describe, auth.ClusterResource()).Allowed
}

func (v consoleViewer) DescribeTopic(name string) bool {
	return v.a.Decide(v.p, auth.Describe, auth.TopicResource(name)).Allowed
}

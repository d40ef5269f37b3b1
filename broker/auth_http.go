package broker

import (
	"errors"
	"fmt"
	"net"
	"net/http"

	"github.com/skeinlog/skein/auth"
)

// pprofGuard lets a profiler request through only for a principal with
// describe on the cluster, when ACLs are on: a SCRAM user by HTTP basic
// authentication (over TLS, or from this host), or a verified client
// certificate. /metrics, /healthz and /readyz are not guarded.
func (b *Broker) pprofGuard(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !b.authz.Enabled() {
			h(w, r)
			return
		}
		p, err := b.httpPrincipal(r)
		if err == nil {
			err = b.authz.Authorize(p, auth.Describe, auth.ClusterResource())
		}
		if err == nil {
			h(w, r)
			return
		}
		code := http.StatusForbidden
		if p == auth.Anonymous || errors.Is(err, errAuthFailed) {
			code = http.StatusUnauthorized
			w.Header().Set("WWW-Authenticate", `Basic realm="skein"`)
		}
		http.Error(w, err.Error(), code)
	}
}

// httpPrincipal authenticates an HTTP request as principalOf does a gRPC
// call.
func (b *Broker) httpPrincipal(r *http.Request) (auth.Principal, error) {
	if user, pass, ok := r.BasicAuth(); ok {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		ip := net.ParseIP(host)
		if r.TLS == nil && (ip == nil || !ip.IsLoopback()) {
			return "", fmt.Errorf("%w: a password is accepted only over TLS (or from this host)", errAuthFailed)
		}
		if !b.verifyPassword(user, pass) {
			b.authz.Audit(auth.User(user), "authenticate", auth.ClusterResource(), errAuthFailed)
			return "", errAuthFailed
		}
		return auth.User(user), nil
	}
	if p, ok := auth.FromTLS(r.TLS); ok {
		return p, nil
	}
	return auth.Anonymous, nil
}

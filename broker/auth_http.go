package broker

import (
	"errors"
	"fmt"
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

// httpPrincipal authenticates an HTTP request: a SCRAM user's name and
// password by HTTP basic authentication, else a verified client
// certificate's CN, else ANONYMOUS. A password is accepted only over TLS,
// unless Config.HTTPInsecurePlaintextPasswords: unlike the gRPC port, not
// even from a loopback address, because a local reverse proxy or a
// port-forward (kubectl port-forward, ssh -L) makes a remote browser's
// plaintext connection look local.
func (b *Broker) httpPrincipal(r *http.Request) (auth.Principal, error) {
	if user, pass, ok := r.BasicAuth(); ok {
		if r.TLS == nil && !b.cfg.HTTPInsecurePlaintextPasswords {
			return "", fmt.Errorf("%w: a password is accepted only over HTTPS: turn on TLS (--tls-*-file), or accept passwords in plain text with --http-insecure-plaintext-passwords", errAuthFailed)
		}
		if user == "" || !b.verifyPassword(user, pass) {
			b.authz.Audit(auth.User(user), "authenticate", auth.ClusterResource(), errAuthFailed)
			return "", fmt.Errorf("%w for user %q: unknown user or wrong password", errAuthFailed, user)
		}
		return auth.User(user), nil
	}
	if p, ok := auth.FromTLS(r.TLS); ok {
		return p, nil
	}
	return auth.Anonymous, nil
}

package kafka

import (
	"crypto/tls"
	"fmt"
	"net"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/skeinlog/skein/auth"
)

// saslState is a connection's SASL exchange: SaslHandshake names the
// mechanism, then SaslAuthenticate carries the SCRAM messages. Used by the
// reading goroutine only: each SASL request is answered before the next
// request is read.
type saslState struct {
	mech   auth.Mechanism
	server *auth.SCRAMServer
	done   bool
}

// tlsPrincipal is the principal of the connection's verified client
// certificate, or ANONYMOUS. Called after the first request was read, so
// the handshake is over.
func tlsPrincipal(nc net.Conn) auth.Principal {
	if tc, ok := nc.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		if p, ok := auth.FromTLS(&cs); ok {
			return p
		}
	}
	return auth.Anonymous
}

// isSASL reports whether req is part of the SASL exchange.
func isSASL(req kmsg.Request) bool {
	switch req.(type) {
	case *kmsg.SASLHandshakeRequest, *kmsg.SASLAuthenticateRequest:
		return true
	}
	return false
}

// sasl answers a SASL request. closeConn is true when the connection must
// be closed once the answer is written: a failed authentication, a
// mechanism Skein does not have, a request out of order.
func (c *conn) sasl(req kmsg.Request) (resp kmsg.Response, closeConn bool) {
	switch r := req.(type) {
	case *kmsg.SASLHandshakeRequest:
		resp := r.ResponseKind().(*kmsg.SASLHandshakeResponse)
		resp.SupportedMechanisms = []string{string(auth.SCRAMSHA256), string(auth.SCRAMSHA512)}
		m, err := auth.ParseMechanism(r.Mechanism)
		switch {
		case r.Version == 0:
			// Version 0 sends the SASL tokens outside Kafka's framing;
			// every current client uses version 1 and SaslAuthenticate.
			resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		case c.saslState != nil:
			resp.ErrorCode = kerr.IllegalSaslState.Code
		case err != nil || c.s.cfg.Credentials == nil:
			resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
		default:
			c.saslState = &saslState{mech: m}
			return resp, false
		}
		return resp, true
	case *kmsg.SASLAuthenticateRequest:
		return c.saslAuthenticate(r)
	}
	return nil, true
}

func (c *conn) saslAuthenticate(r *kmsg.SASLAuthenticateRequest) (kmsg.Response, bool) {
	resp := r.ResponseKind().(*kmsg.SASLAuthenticateResponse)
	st := c.saslState
	if st == nil || st.done {
		resp.ErrorCode = kerr.IllegalSaslState.Code
		resp.ErrorMessage = kmsg.StringPtr("SaslAuthenticate without a SaslHandshake first, or after authentication finished")
		return resp, true
	}
	if st.server == nil {
		srv, err := auth.NewSCRAMServer(st.mech, c.s.cfg.Credentials)
		if err != nil {
			resp.ErrorCode = kerr.UnsupportedSaslMechanism.Code
			return resp, true
		}
		st.server = srv
	}
	out, done, err := st.server.Step(r.SASLAuthBytes)
	if err != nil {
		msg := fmt.Sprintf("Authentication failed during authentication due to invalid credentials with SASL mechanism %s", st.mech)
		resp.ErrorCode, resp.ErrorMessage = kerr.SaslAuthenticationFailed.Code, &msg
		c.s.cfg.Authorizer.Audit(auth.Anonymous, "authenticate", auth.ClusterResource(), fmt.Errorf("kafka sasl %s from %s: %v", st.mech, c.remote, err))
		return resp, true
	}
	resp.SASLAuthBytes = out
	if done {
		p, ok := st.server.Principal()
		if !ok {
			resp.ErrorCode = kerr.SaslAuthenticationFailed.Code
			return resp, true
		}
		st.done = true
		c.principal = p
	}
	return resp, false
}

// saslPending reports whether a SASL exchange has started and not
// finished: until it has, only SASL requests and ApiVersions are served.
func (c *conn) saslPending() bool { return c.saslState != nil && !c.saslState.done }

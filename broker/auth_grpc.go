package broker

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/skeinlog/skein/auth"
)

// clientAuthOptions are the interceptors of the client listeners: they
// authenticate every call, check it against rpcRules, write the audit log
// of admin changes and filter what listings show.
func (b *Broker) clientAuthOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(b.authUnary),
		grpc.ChainStreamInterceptor(b.authStream),
	}
}

// peerAuthOptions are the interceptors of the inter-broker listener: its
// callers are brokers, not subject to ACLs. With TLS the listener admits
// only broker certificates of the cluster's CA (mutual TLS); without it the
// network is trusted (see docs/security.md). The principal recorded is the
// certificate's, else BrokerPrincipal.
func (b *Broker) peerAuthOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			return h(peerPrincipal(ctx), req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			return h(srv, &principalStream{ServerStream: ss, ctx: peerPrincipal(ss.Context())})
		}),
	}
}

func peerPrincipal(ctx context.Context) context.Context {
	p := BrokerPrincipal
	if pr, ok := peer.FromContext(ctx); ok {
		if ti, ok := pr.AuthInfo.(credentials.TLSInfo); ok {
			if cp, ok := auth.FromTLS(&ti.State); ok {
				p = cp
			}
		}
	}
	return context.WithValue(ctx, principalKey{}, p)
}

// authenticate puts the caller's principal in ctx.
func (b *Broker) authenticate(ctx context.Context) (context.Context, auth.Principal, error) {
	p, err := b.principalOf(ctx)
	if err != nil {
		return nil, "", status.Error(codes.Unauthenticated, err.Error())
	}
	return context.WithValue(ctx, principalKey{}, p), p, nil
}

// ruleFor is the rule of a method; health and reflection need none.
func ruleFor(method string) (rpcRule, bool, bool) {
	if strings.HasPrefix(method, "/grpc.") {
		return rpcRule{}, false, true
	}
	r, ok := rpcRules[method]
	return r, true, ok
}

// authorize checks every permission the request needs.
func (b *Broker) authorize(p auth.Principal, checks []check) error {
	for _, c := range checks {
		var err error
		switch {
		case c.anyTopic:
			err = b.authz.AuthorizeAny(p, c.op, auth.Topic)
		default:
			err = b.authz.Authorize(p, c.op, c.res)
			for _, alt := range c.anyOf {
				if err != nil && b.authz.Decide(p, c.op, alt).Allowed {
					err = nil
				}
			}
		}
		if err != nil {
			return status.Error(codes.PermissionDenied, err.Error())
		}
	}
	return nil
}

func (b *Broker) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	rule, checked, ok := ruleFor(info.FullMethod)
	if !checked {
		return handler(ctx, req)
	}
	ctx, p, err := b.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, status.Errorf(codes.PermissionDenied, "%s has no authorization rule: refused", info.FullMethod)
	}
	if b.authz.Enabled() {
		if err := b.authorize(p, rule.checks(req)); err != nil {
			return nil, err
		}
	}
	resp, err := handler(ctx, req)
	if rule.audit != nil && rule.audit(req) {
		b.auditCall(p, rule, req, err)
	}
	if err == nil && rule.filter != nil && b.authz.Enabled() {
		rule.filter(b.authz, p, resp)
	}
	return resp, err
}

// auditCall logs an admin change with the permission it needed.
func (b *Broker) auditCall(p auth.Principal, rule rpcRule, req any, err error) {
	op, res := auth.Operation("admin"), auth.ClusterResource()
	if cs := rule.checks(req); len(cs) > 0 {
		op, res = cs[0].op, cs[0].res
	}
	b.authz.Audit(p, op, res, err)
}

func (b *Broker) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	rule, checked, ok := ruleFor(info.FullMethod)
	if !checked {
		return handler(srv, ss)
	}
	ctx, p, err := b.authenticate(ss.Context())
	if err != nil {
		return err
	}
	if !ok {
		return status.Errorf(codes.PermissionDenied, "%s has no authorization rule: refused", info.FullMethod)
	}
	return handler(srv, &authorizedStream{principalStream: principalStream{ServerStream: ss, ctx: ctx}, b: b, p: p, rule: rule})
}

// principalStream is a stream whose context carries the principal.
type principalStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *principalStream) Context() context.Context { return s.ctx }

// authorizedStream checks each received message against the rule: a
// produce stream's every request names its own topic.
type authorizedStream struct {
	principalStream
	b    *Broker
	p    auth.Principal
	rule rpcRule
}

func (s *authorizedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if !s.b.authz.Enabled() {
		return nil
	}
	return s.b.authorize(s.p, s.rule.checks(m))
}

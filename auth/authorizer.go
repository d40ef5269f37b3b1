package auth

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
)

// Config configures an Authorizer.
type Config struct {
	// Enabled turns ACLs on (--authorizer acl): deny by default. Off, every
	// principal may do everything and nothing is checked.
	Enabled bool
	// SuperUsers may do everything (--super-users).
	SuperUsers []Principal
	// ACLs returns the current ACLs (the controller's); nil: none.
	ACLs func() []ACL
	// Logger receives the audit lines; nil discards them.
	Logger *slog.Logger
}

// Authorizer decides requests and writes the audit log. Its methods are
// safe for concurrent use; a nil *Authorizer allows everything.
type Authorizer struct {
	cfg Config
	log *slog.Logger
	idx atomic.Pointer[aclIndex] // the ACLs by principal, for the last ACL list seen
}

// aclIndex holds, for one ACL list, each principal's rules together with
// the User:* ones, so a decision looks only at the rules that can apply.
type aclIndex struct {
	first *ACL // identifies the list: the controller replaces it on change
	n     int
	by    map[Principal][]ACL
}

// forPrincipal returns the rules that may apply to p.
func (a *Authorizer) forPrincipal(p Principal) []ACL {
	acls := a.cfg.ACLs()
	if len(acls) == 0 {
		return nil
	}
	idx := a.idx.Load()
	if idx == nil || idx.first != &acls[0] || idx.n != len(acls) {
		idx = buildIndex(acls)
		a.idx.Store(idx)
	}
	if rules, ok := idx.by[p]; ok {
		return rules
	}
	return idx.by["User:*"]
}

func buildIndex(acls []ACL) *aclIndex {
	idx := &aclIndex{first: &acls[0], n: len(acls), by: map[Principal][]ACL{}}
	var all []ACL
	for _, a := range acls {
		if a.Principal == "User:*" {
			all = append(all, a)
		}
	}
	for _, a := range acls {
		if a.Principal != "User:*" && idx.by[a.Principal] == nil {
			idx.by[a.Principal] = append([]ACL(nil), all...)
		}
	}
	for _, a := range acls {
		if a.Principal != "User:*" {
			idx.by[a.Principal] = append(idx.by[a.Principal], a)
		}
	}
	idx.by["User:*"] = all
	return idx
}

// NewAuthorizer returns an Authorizer for cfg.
func NewAuthorizer(cfg Config) *Authorizer {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.ACLs == nil {
		cfg.ACLs = func() []ACL { return nil }
	}
	return &Authorizer{cfg: cfg, log: log}
}

// Enabled reports whether ACLs are on.
func (a *Authorizer) Enabled() bool { return a != nil && a.cfg.Enabled }

// IsSuperUser reports whether p is a super user.
func (a *Authorizer) IsSuperUser(p Principal) bool {
	if a == nil {
		return false
	}
	for _, s := range a.cfg.SuperUsers {
		if s == p {
			return true
		}
	}
	return false
}

// Decide is Decide over the current ACLs; with ACLs off everything is
// allowed.
func (a *Authorizer) Decide(p Principal, op Operation, r Resource) Decision {
	if !a.Enabled() {
		return Decision{Allowed: true, Reason: "acls off"}
	}
	return Decide(a.forPrincipal(p), a.cfg.SuperUsers, p, op, r)
}

// AuthorizeAny is Authorize for "op on some resource of type t" (see
// DecideAny); a denial names r.
func (a *Authorizer) AuthorizeAny(p Principal, op Operation, t ResourceType) error {
	if !a.Enabled() {
		return nil
	}
	d := DecideAny(a.forPrincipal(p), a.cfg.SuperUsers, p, op, t)
	if d.Allowed {
		return nil
	}
	r := Resource{Type: t, Name: "*"}
	a.audit(slog.LevelWarn, p, op, r, "denied", "reason", d.Reason)
	return &DeniedError{Principal: p, Operation: op, Resource: r}
}

// Authorize returns nil if p may perform op on r, else a *DeniedError,
// after writing the denial to the audit log.
func (a *Authorizer) Authorize(p Principal, op Operation, r Resource) error {
	d := a.Decide(p, op, r)
	if d.Allowed {
		return nil
	}
	a.audit(slog.LevelWarn, p, op, r, "denied", "reason", d.Reason)
	return &DeniedError{Principal: p, Operation: op, Resource: r}
}

// Audit logs one admin change (a topic created, an ACL added, a group's
// offsets reset): who, what, on what, and the result ("ok", or the error).
func (a *Authorizer) Audit(p Principal, op Operation, r Resource, err error) {
	result := "ok"
	if err != nil {
		result = "failed: " + err.Error()
	}
	a.audit(slog.LevelInfo, p, op, r, result)
}

func (a *Authorizer) audit(level slog.Level, p Principal, op Operation, r Resource, result string, extra ...any) {
	if a == nil {
		return
	}
	args := append([]any{"principal", string(p), "operation", string(op), "resource", r.String(), "result", result}, extra...)
	a.log.Log(context.Background(), level, "audit", args...)
}

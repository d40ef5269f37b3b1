package auth

import (
	"fmt"
	"slices"
)

// Decision is the outcome of one authorization and why.
type Decision struct {
	Allowed bool
	// Reason says which rule decided: "super user", "allowed by <acl>",
	// "denied by <acl>", "no acl allows it", "acls off".
	Reason string
}

// Decide is the authorization rule, a pure function: super users may do
// anything; otherwise a matching deny ACL wins over any allow; otherwise a
// matching allow ACL allows; otherwise the answer is no (deny by default).
// cluster_action is allowed to super users only.
func Decide(acls []ACL, supers []Principal, p Principal, op Operation, r Resource) Decision {
	if slices.Contains(supers, p) {
		return Decision{Allowed: true, Reason: "super user"}
	}
	var allow *ACL
	for i := range acls {
		a := &acls[i]
		if !a.matches(p, op, r) {
			continue
		}
		if a.Deny {
			return Decision{Reason: "denied by " + a.String()}
		}
		if allow == nil {
			allow = a
		}
	}
	if allow != nil {
		return Decision{Allowed: true, Reason: "allowed by " + allow.String()}
	}
	return Decision{Reason: "no acl allows it"}
}

// DeniedError is a refused operation; its message names the principal,
// the operation and the resource.
type DeniedError struct {
	Principal Principal
	Operation Operation
	Resource  Resource
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("%s is not authorized to %s %s", e.Principal, e.Operation, e.Resource)
}

// DecideAny reports whether p may perform op on some resource of type t:
// a super user, or one allow ACL of p (or User:*) for that type and
// operation. It answers requests that name no resource but need one, such
// as allocating an idempotent producer id (write on some topic, as in
// Kafka). Deny ACLs are weighed when the resource is used.
func DecideAny(acls []ACL, supers []Principal, p Principal, op Operation, t ResourceType) Decision {
	if slices.Contains(supers, p) {
		return Decision{Allowed: true, Reason: "super user"}
	}
	for _, a := range acls {
		if !a.Deny && (a.Principal == p || a.Principal == "User:*") && a.Type == t && implies(a.Operation, op, false) {
			return Decision{Allowed: true, Reason: "allowed by " + a.String()}
		}
	}
	return Decision{Reason: "no acl allows it"}
}

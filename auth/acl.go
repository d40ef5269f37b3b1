package auth

import (
	"fmt"
	"strings"
)

// Operation is what a caller does to a resource.
type Operation string

// The operations an ACL can name. ClusterAction is what brokers do to each
// other and to the internal topics: no ACL grants it, only super users (and
// the brokers, which are super users) have it.
const (
	Read          Operation = "read"
	Write         Operation = "write"
	Create        Operation = "create"
	Delete        Operation = "delete"
	Describe      Operation = "describe"
	Alter         Operation = "alter"
	All           Operation = "all"
	ClusterAction Operation = "cluster_action"
)

// ParseOperation parses an ACL's operation (not cluster_action).
func ParseOperation(s string) (Operation, error) {
	switch op := Operation(strings.ToLower(s)); op {
	case Read, Write, Create, Delete, Describe, Alter, All:
		return op, nil
	}
	return "", fmt.Errorf("operation %q: want read, write, create, delete, describe, alter or all", s)
}

// ResourceType is the kind of thing an operation acts on.
type ResourceType string

// The resource types.
const (
	Topic   ResourceType = "topic"
	Group   ResourceType = "group"
	Cluster ResourceType = "cluster"
)

// Resource is one topic, one group or the cluster.
type Resource struct {
	Type ResourceType
	Name string // empty for the cluster
}

// TopicResource, GroupResource and ClusterResource build Resources.
func TopicResource(name string) Resource { return Resource{Type: Topic, Name: name} }
func GroupResource(name string) Resource { return Resource{Type: Group, Name: name} }
func ClusterResource() Resource          { return Resource{Type: Cluster} }

func (r Resource) String() string {
	if r.Type == Cluster {
		return "cluster"
	}
	if r.Name == "*" {
		return "any " + string(r.Type)
	}
	return fmt.Sprintf("%s %q", r.Type, r.Name)
}

// ACL allows (or, with Deny, forbids) Principal to perform Operation on
// the resources it names: one of Type with Name, every one whose name
// starts with Name when Prefix is set, or every one of Type when Name is
// "*". Principal "User:*" is every principal, ANONYMOUS included.
type ACL struct {
	Principal Principal    `json:"principal"`
	Operation Operation    `json:"operation"`
	Type      ResourceType `json:"resource_type"`
	Name      string       `json:"name,omitempty"`
	Prefix    bool         `json:"prefix,omitempty"`
	Deny      bool         `json:"deny,omitempty"`
}

// Validate checks an ACL is one a user could mean.
func (a ACL) Validate() error {
	if _, err := ParsePrincipal(string(a.Principal)); err != nil {
		return err
	}
	if _, err := ParseOperation(string(a.Operation)); err != nil {
		return err
	}
	switch a.Type {
	case Topic, Group:
		if a.Name == "" {
			return fmt.Errorf("acl: a %s needs a name (or a prefix, or \"*\" for every %s)", a.Type, a.Type)
		}
		if a.Prefix && a.Name == "*" {
			return fmt.Errorf("acl: prefix \"*\" would match only names starting with '*': use the name \"*\" for every %s", a.Type)
		}
		return checkName(string(a.Type)+" name", a.Name)
	case Cluster:
		if a.Name != "" || a.Prefix {
			return fmt.Errorf("acl: the cluster resource has no name")
		}
		return nil
	}
	return fmt.Errorf("acl: resource type %q: want topic, group or cluster", a.Type)
}

func (a ACL) String() string {
	verb := "allow"
	if a.Deny {
		verb = "deny"
	}
	res := "cluster"
	switch {
	case a.Type == Cluster:
	case a.Prefix:
		res = fmt.Sprintf("%s prefix %q", a.Type, a.Name)
	default:
		res = fmt.Sprintf("%s %q", a.Type, a.Name)
	}
	return fmt.Sprintf("%s %s %s on %s", verb, a.Principal, a.Operation, res)
}

// matches reports whether a applies to p doing op on r.
func (a ACL) matches(p Principal, op Operation, r Resource) bool {
	if a.Principal != p && a.Principal != "User:*" {
		return false
	}
	if a.Type != r.Type {
		return false
	}
	switch {
	case a.Type == Cluster:
	case a.Prefix:
		if !strings.HasPrefix(r.Name, a.Name) {
			return false
		}
	case a.Name != "*" && a.Name != r.Name:
		return false
	}
	return implies(a.Operation, op, a.Deny)
}

// implies reports whether an ACL naming have covers op. As in Kafka, an
// allow of read, write, delete or alter also allows describe; all covers
// every operation but cluster_action. A deny covers only what it names
// (and all).
func implies(have, op Operation, deny bool) bool {
	if op == ClusterAction {
		return false
	}
	if have == All || have == op {
		return true
	}
	if deny || op != Describe {
		return false
	}
	return have == Read || have == Write || have == Delete || have == Alter
}

package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/skeinlog/skein/auth"
)

// Controller commands of the security state: SCRAM users and ACLs.
const (
	opPutUser    = "put_user"
	opDeleteUser = "delete_user"
	opAddACL     = "add_acl"
	opRemoveACL  = "remove_acl"
)

// Errors of the security state.
var (
	ErrUnknownUser = errors.New("unknown user")
	ErrUnknownACL  = errors.New("no such acl")
)

// securityCommand is the part of a command that carries users and ACLs.
type securityCommand struct {
	Credentials []auth.Credential `json:"credentials,omitempty"`
	ACL         *auth.ACL         `json:"acl,omitempty"`
}

// applySecurity applies the security commands; ok is false for any other.
func applySecurity(s *Snapshot, c *command) (res applyResult, ok bool) {
	switch c.Op {
	case opPutUser:
		return applyResult{err: putUser(s, c.Name, c.Credentials)}, true
	case opDeleteUser:
		if _, ok := s.Users[c.Name]; !ok {
			return applyResult{err: fmt.Errorf("%w %q", ErrUnknownUser, c.Name)}, true
		}
		s.Users = maps.Clone(s.Users)
		delete(s.Users, c.Name)
	case opAddACL:
		if c.ACL == nil {
			return applyResult{err: errors.New("add_acl without an acl")}, true
		}
		if err := c.ACL.Validate(); err != nil {
			return applyResult{err: err}, true
		}
		if !slices.Contains(s.ACLs, *c.ACL) {
			s.ACLs = append(slices.Clone(s.ACLs), *c.ACL)
		}
	case opRemoveACL:
		if c.ACL == nil {
			return applyResult{err: errors.New("remove_acl without an acl")}, true
		}
		i := slices.Index(s.ACLs, *c.ACL)
		if i < 0 {
			return applyResult{err: fmt.Errorf("%w: %s", ErrUnknownACL, c.ACL)}, true
		}
		s.ACLs = slices.Delete(slices.Clone(s.ACLs), i, i+1)
	default:
		return applyResult{}, false
	}
	return applyResult{}, true
}

// putUser sets (adds or replaces) a user's credentials, one per mechanism;
// mechanisms not given keep theirs.
func putUser(s *Snapshot, name string, creds []auth.Credential) error {
	if err := auth.CheckUserName(name); err != nil {
		return err
	}
	if len(creds) == 0 {
		return errors.New("put_user without credentials")
	}
	next := maps.Clone(s.Users[name])
	if next == nil {
		next = map[auth.Mechanism]auth.Credential{}
	}
	for _, cr := range creds {
		if err := cr.Validate(); err != nil {
			return err
		}
		next[cr.Mechanism] = cr
	}
	s.Users = maps.Clone(s.Users)
	if s.Users == nil {
		s.Users = map[string]map[auth.Mechanism]auth.Credential{}
	}
	s.Users[name] = next
	return nil
}

// Credential returns a user's credential for a mechanism.
func (s *Snapshot) Credential(user string, m auth.Mechanism) (auth.Credential, bool) {
	c, ok := s.Users[user][m]
	return c, ok
}

// UserNames returns the users, sorted, with their mechanisms.
func (s *Snapshot) UserNames() []string {
	return slices.Sorted(maps.Keys(s.Users))
}

// PutUser sets a user's SCRAM credentials (salted keys: the controller
// never sees a password). created is false when the user existed.
func (c *Controller) PutUser(ctx context.Context, name string, creds []auth.Credential) (created bool, err error) {
	if err := auth.CheckUserName(name); err != nil {
		return false, err
	}
	for _, cr := range creds {
		if err := cr.Validate(); err != nil {
			return false, err
		}
	}
	_, existed := c.Snapshot().Users[name]
	_, err = c.propose(ctx, &command{Op: opPutUser, Name: name, securityCommand: securityCommand{Credentials: creds}})
	return !existed, err
}

// DeleteUser removes a user and all its credentials.
func (c *Controller) DeleteUser(ctx context.Context, name string) error {
	if _, ok := c.Snapshot().Users[name]; !ok {
		return fmt.Errorf("%w %q", ErrUnknownUser, name)
	}
	_, err := c.propose(ctx, &command{Op: opDeleteUser, Name: name})
	return err
}

// AddACL adds an ACL; adding one that exists changes nothing.
func (c *Controller) AddACL(ctx context.Context, a auth.ACL) error {
	if err := a.Validate(); err != nil {
		return err
	}
	_, err := c.propose(ctx, &command{Op: opAddACL, securityCommand: securityCommand{ACL: &a}})
	return err
}

// RemoveACL removes an ACL equal to a.
func (c *Controller) RemoveACL(ctx context.Context, a auth.ACL) error {
	if !slices.Contains(c.Snapshot().ACLs, a) {
		return fmt.Errorf("%w: %s", ErrUnknownACL, a)
	}
	_, err := c.propose(ctx, &command{Op: opRemoveACL, securityCommand: securityCommand{ACL: &a}})
	return err
}

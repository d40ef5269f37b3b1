package client

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	"github.com/skeinlog/skein/proto/skeinv1"
)

// ScramCredential is a SCRAM secret as the broker stores it: the salt, the
// iteration count (at least 4096), StoredKey and ServerKey. Derive it from
// a password on the client side (the broker command does, with package
// auth's NewCredential) so the password never reaches a broker.
type ScramCredential struct {
	Mechanism  string // SCRAM-SHA-256 or SCRAM-SHA-512
	Salt       []byte
	Iterations int
	StoredKey  []byte
	ServerKey  []byte
}

// UserInfo is one SCRAM user: its name and mechanisms.
type UserInfo struct {
	Name       string
	Mechanisms []string
}

// ACL is an access rule: Principal ("User:alice", "User:*") may (or, with
// Deny, may not) perform Operation (read, write, create, delete, describe,
// alter, all) on the ResourceType (topic, group, cluster) named Name (a
// prefix with Prefix; "*" for every one; empty for the cluster).
type ACL struct {
	Principal    string
	Operation    string
	ResourceType string
	Name         string
	Prefix       bool
	Deny         bool
}

func (a ACL) toPB() *skeinv1.ACL {
	return &skeinv1.ACL{Principal: a.Principal, Operation: a.Operation, ResourceType: a.ResourceType, Name: a.Name, Prefix: a.Prefix, Deny: a.Deny}
}

// callSecurity runs fn against the Security service of any broker.
func (c *Client) callSecurity(ctx context.Context, what string, fn func(context.Context, skeinv1.SecurityClient) error) error {
	err := c.callAnyConn(ctx, c.meta.candidates(c.cfg.brokers), what, func(ctx context.Context, cc grpc.ClientConnInterface) error {
		return fn(ctx, skeinv1.NewSecurityClient(cc))
	})
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// PutUser creates a SCRAM user, or replaces its credential for each
// mechanism given. created is false when the user existed.
func (c *Client) PutUser(ctx context.Context, name string, creds []ScramCredential) (created bool, err error) {
	req := &skeinv1.PutUserRequest{Name: name}
	for _, cr := range creds {
		req.Credentials = append(req.Credentials, &skeinv1.ScramCredential{Mechanism: cr.Mechanism, Salt: cr.Salt,
			Iterations: int32(cr.Iterations), StoredKey: cr.StoredKey, ServerKey: cr.ServerKey})
	}
	err = c.callSecurity(ctx, "put user "+name, func(ctx context.Context, s skeinv1.SecurityClient) error {
		resp, err := s.PutUser(ctx, req)
		created = resp.GetCreated()
		return err
	})
	return created, err
}

// DeleteUser removes a SCRAM user.
func (c *Client) DeleteUser(ctx context.Context, name string) error {
	return c.callSecurity(ctx, "delete user "+name, func(ctx context.Context, s skeinv1.SecurityClient) error {
		_, err := s.DeleteUser(ctx, &skeinv1.DeleteUserRequest{Name: name})
		return err
	})
}

// ListUsers lists the SCRAM users.
func (c *Client) ListUsers(ctx context.Context) ([]UserInfo, error) {
	var out []UserInfo
	err := c.callSecurity(ctx, "list users", func(ctx context.Context, s skeinv1.SecurityClient) error {
		resp, err := s.ListUsers(ctx, &skeinv1.ListUsersRequest{})
		out = out[:0]
		for _, u := range resp.GetUsers() {
			out = append(out, UserInfo{Name: u.GetName(), Mechanisms: u.GetMechanisms()})
		}
		return err
	})
	return out, err
}

// AddACL adds an access rule (adding one that exists changes nothing).
func (c *Client) AddACL(ctx context.Context, a ACL) error {
	return c.callSecurity(ctx, "add acl", func(ctx context.Context, s skeinv1.SecurityClient) error {
		_, err := s.AddACL(ctx, &skeinv1.AddACLRequest{Acl: a.toPB()})
		return err
	})
}

// RemoveACL removes an access rule equal to a.
func (c *Client) RemoveACL(ctx context.Context, a ACL) error {
	return c.callSecurity(ctx, "remove acl", func(ctx context.Context, s skeinv1.SecurityClient) error {
		_, err := s.RemoveACL(ctx, &skeinv1.RemoveACLRequest{Acl: a.toPB()})
		return err
	})
}

// ListACLs lists every access rule.
func (c *Client) ListACLs(ctx context.Context) ([]ACL, error) {
	var out []ACL
	err := c.callSecurity(ctx, "list acls", func(ctx context.Context, s skeinv1.SecurityClient) error {
		resp, err := s.ListACLs(ctx, &skeinv1.ListACLsRequest{})
		out = out[:0]
		for _, a := range resp.GetAcls() {
			out = append(out, ACL{Principal: a.GetPrincipal(), Operation: a.GetOperation(), ResourceType: a.GetResourceType(),
				Name: a.GetName(), Prefix: a.GetPrefix(), Deny: a.GetDeny()})
		}
		return err
	})
	return out, err
}

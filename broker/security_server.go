package broker

import (
	"context"
	"errors"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/skeinlog/skein/auth"
	"github.com/skeinlog/skein/cluster"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// securityServer implements the Security service: SCRAM users and ACLs in
// the controller's state. Changes are committed by the controller; another
// broker forwards them to it.
type securityServer struct {
	pb.UnimplementedSecurityServer
	b *Broker
}

// securityError maps the errors of users and ACLs to a status.
func securityError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, cluster.ErrUnknownUser), errors.Is(err, cluster.ErrUnknownACL):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, errInvalidRequest):
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return toStatus(err)
}

// commit runs change on the controller, or forwards call to it.
func (s *securityServer) commit(ctx context.Context, change func() error, call func(context.Context, pb.SecurityClient) error) error {
	err := change()
	if errors.Is(err, cluster.ErrNotController) {
		return s.b.forwardConn(ctx, func(ctx context.Context, c *grpc.ClientConn) error { return call(ctx, pb.NewSecurityClient(c)) })
	}
	return securityError(err)
}

func (s *securityServer) PutUser(ctx context.Context, req *pb.PutUserRequest) (*pb.PutUserResponse, error) {
	if err := auth.CheckUserName(req.Name); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	if len(req.Credentials) == 0 {
		return nil, status.Error(codes.InvalidArgument, "no credentials: give at least one SCRAM credential")
	}
	creds := make([]auth.Credential, 0, len(req.Credentials))
	for _, c := range req.Credentials {
		cr := auth.Credential{Mechanism: auth.Mechanism(c.Mechanism), Salt: c.Salt, Iterations: int(c.Iterations), StoredKey: c.StoredKey, ServerKey: c.ServerKey}
		if err := cr.Validate(); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		creds = append(creds, cr)
	}
	resp := &pb.PutUserResponse{}
	err := s.commit(ctx, func() (err error) {
		resp.Created, err = s.b.ctrl.PutUser(ctx, req.Name, creds)
		return err
	}, func(ctx context.Context, c pb.SecurityClient) (err error) {
		resp, err = c.PutUser(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	s.b.awaitMetadata(ctx, func(snap *cluster.Snapshot) bool {
		cur, ok := snap.Credential(req.Name, creds[0].Mechanism)
		return ok && string(cur.StoredKey) == string(creds[0].StoredKey)
	})
	return resp, nil
}

func (s *securityServer) DeleteUser(ctx context.Context, req *pb.DeleteUserRequest) (*pb.DeleteUserResponse, error) {
	err := s.commit(ctx, func() error { return s.b.ctrl.DeleteUser(ctx, req.Name) },
		func(ctx context.Context, c pb.SecurityClient) error { _, err := c.DeleteUser(ctx, req); return err })
	if err != nil {
		return nil, err
	}
	s.b.awaitMetadata(ctx, func(snap *cluster.Snapshot) bool { _, ok := snap.Users[req.Name]; return !ok })
	return &pb.DeleteUserResponse{}, nil
}

func (s *securityServer) ListUsers(ctx context.Context, req *pb.ListUsersRequest) (*pb.ListUsersResponse, error) {
	snap := s.b.ctrl.Snapshot()
	resp := &pb.ListUsersResponse{}
	for _, name := range snap.UserNames() {
		u := &pb.UserInfo{Name: name}
		for m := range snap.Users[name] {
			u.Mechanisms = append(u.Mechanisms, string(m))
		}
		slices.Sort(u.Mechanisms)
		resp.Users = append(resp.Users, u)
	}
	return resp, nil
}

// aclFromPB converts and validates an ACL.
func aclFromPB(a *pb.ACL) (auth.ACL, error) {
	if a == nil {
		return auth.ACL{}, status.Error(codes.InvalidArgument, "no acl given")
	}
	acl := auth.ACL{Principal: auth.Principal(a.Principal), Operation: auth.Operation(a.Operation), Type: auth.ResourceType(a.ResourceType), Name: a.Name, Prefix: a.Prefix, Deny: a.Deny}
	if err := acl.Validate(); err != nil {
		return auth.ACL{}, status.Error(codes.InvalidArgument, err.Error())
	}
	return acl, nil
}

func aclToPB(a auth.ACL) *pb.ACL {
	return &pb.ACL{Principal: string(a.Principal), Operation: string(a.Operation), ResourceType: string(a.Type), Name: a.Name, Prefix: a.Prefix, Deny: a.Deny}
}

func (s *securityServer) AddACL(ctx context.Context, req *pb.AddACLRequest) (*pb.AddACLResponse, error) {
	acl, err := aclFromPB(req.Acl)
	if err != nil {
		return nil, err
	}
	err = s.commit(ctx, func() error { return s.b.ctrl.AddACL(ctx, acl) },
		func(ctx context.Context, c pb.SecurityClient) error { _, err := c.AddACL(ctx, req); return err })
	if err != nil {
		return nil, err
	}
	s.b.awaitMetadata(ctx, func(snap *cluster.Snapshot) bool { return slices.Contains(snap.ACLs, acl) })
	return &pb.AddACLResponse{}, nil
}

func (s *securityServer) RemoveACL(ctx context.Context, req *pb.RemoveACLRequest) (*pb.RemoveACLResponse, error) {
	acl, err := aclFromPB(req.Acl)
	if err != nil {
		return nil, err
	}
	err = s.commit(ctx, func() error { return s.b.ctrl.RemoveACL(ctx, acl) },
		func(ctx context.Context, c pb.SecurityClient) error { _, err := c.RemoveACL(ctx, req); return err })
	if err != nil {
		return nil, err
	}
	s.b.awaitMetadata(ctx, func(snap *cluster.Snapshot) bool { return !slices.Contains(snap.ACLs, acl) })
	return &pb.RemoveACLResponse{}, nil
}

func (s *securityServer) ListACLs(ctx context.Context, req *pb.ListACLsRequest) (*pb.ListACLsResponse, error) {
	resp := &pb.ListACLsResponse{}
	for _, a := range s.b.ctrl.Snapshot().ACLs {
		resp.Acls = append(resp.Acls, aclToPB(a))
	}
	return resp, nil
}

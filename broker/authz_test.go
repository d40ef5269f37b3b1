package broker

import (
	"testing"

	"google.golang.org/grpc"

	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// TestEveryRPCHasARule fails when a public RPC is added without an entry in
// rpcRules (the interceptor would refuse it), and when the table names an
// RPC that no longer exists.
func TestEveryRPCHasARule(t *testing.T) {
	served := map[string]bool{}
	for _, sd := range []grpc.ServiceDesc{pb.Skein_ServiceDesc, pb.Groups_ServiceDesc, pb.Security_ServiceDesc} {
		for _, m := range sd.Methods {
			served["/"+sd.ServiceName+"/"+m.MethodName] = true
		}
		for _, s := range sd.Streams {
			served["/"+sd.ServiceName+"/"+s.StreamName] = true
		}
	}
	for m := range served {
		r, ok := rpcRules[m]
		if !ok {
			t.Errorf("%s has no authorization rule in rpcRules", m)
			continue
		}
		if r.checks == nil {
			t.Errorf("%s: rule without checks (use none to say it needs none)", m)
		}
	}
	for m := range rpcRules {
		if !served[m] {
			t.Errorf("rpcRules names %s, which no service has", m)
		}
	}
}

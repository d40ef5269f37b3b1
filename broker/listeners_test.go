package broker

import (
	"strings"
	"testing"

	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// The client listeners serve no inter-broker method, and the inter-broker
// listener serves every one of them and nothing of the public API.
func TestClientListenerServesNoInternalMethod(t *testing.T) {
	cfg := DefaultConfig()
	cfg.DataDir, cfg.HTTPAddr = t.TempDir(), ""
	cfg.Addr, cfg.GossipAddr, cfg.RaftAddr, cfg.PeerAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	cfg.ExternalAddr, cfg.ExternalAdvertiseAddr = "127.0.0.1:0", "localhost:1"
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	internal := pb.Internal_ServiceDesc.ServiceName
	client := b.grpc.GetServiceInfo()
	if _, ok := client[internal]; ok {
		t.Errorf("the client server registers %s", internal)
	}
	inter := map[string]bool{}
	for _, m := range pb.Internal_ServiceDesc.Methods {
		inter[m.MethodName] = true
	}
	for name, info := range client {
		for _, m := range info.Methods {
			if inter[m.Name] {
				t.Errorf("client server: %s/%s is an inter-broker method", name, m.Name)
			}
		}
	}
	if _, ok := client[pb.Skein_ServiceDesc.ServiceName]; !ok {
		t.Errorf("the client server lacks %s: %v", pb.Skein_ServiceDesc.ServiceName, client)
	}
	peer := b.peer.GetServiceInfo()
	if got, want := len(peer[internal].Methods), len(pb.Internal_ServiceDesc.Methods)+len(pb.Internal_ServiceDesc.Streams); got != want || want == 0 {
		t.Errorf("the peer server has %d methods of %s, want %d", got, internal, want)
	}
	// The public services are on the peer server too: brokers forward
	// admin requests to the controller there, as brokers.
	if _, ok := peer[pb.Skein_ServiceDesc.ServiceName]; !ok {
		t.Errorf("the peer server lacks %s, which brokers forward to the controller on", pb.Skein_ServiceDesc.ServiceName)
	}
	if b.PeerAddr() == b.Addr() || b.PeerAddr() == b.ExternalListenAddr() {
		t.Errorf("peer listener %s shares a client listener (%s, %s)", b.PeerAddr(), b.Addr(), b.ExternalListenAddr())
	}
}

func TestPeerAdvertised(t *testing.T) {
	for _, tc := range []struct {
		peerAdv, clientAdv, bound, want, err string
	}{
		{"", "10.0.0.1:9420", "127.0.0.1:9424", "127.0.0.1:9424", ""},
		{"", "broker1:9420", "0.0.0.0:9424", "broker1:9424", ""},
		{"", "broker1:9420", "[::]:5555", "broker1:5555", ""},
		{"peer1:1", "broker1:9420", "0.0.0.0:9424", "peer1:1", ""},
		{"", "0.0.0.0:9420", "0.0.0.0:9424", "", "--peer-advertise-addr"},
	} {
		got, err := peerAdvertised(Config{PeerAddr: tc.bound, PeerAdvertiseAddr: tc.peerAdv}, tc.clientAdv, tc.bound)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: err %v, want one naming %s", tc, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%+v: got %q, %v; want %q", tc, got, err, tc.want)
		}
	}
}

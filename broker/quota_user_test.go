package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/skeinlog/skein/auth"
	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/client"
)

// A quota set for a user applies to the authenticated principal, and all
// of its client ids share it.
func TestUserQuotaIsSharedByItsClientIDs(t *testing.T) {
	b := brokertest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	admin, err := client.New(client.Brokers(b.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	cred, err := auth.NewCredential(auth.SCRAMSHA256, "secret", 4096)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.PutUser(ctx, "alice", []client.ScramCredential{{Mechanism: string(cred.Mechanism), Salt: cred.Salt,
		Iterations: cred.Iterations, StoredKey: cred.StoredKey, ServerKey: cred.ServerKey}}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CreateTopic(ctx, "u", client.TopicConfig{Partitions: 1}); err != nil {
		t.Fatal(err)
	}
	if err := admin.AlterQuota(ctx, client.QuotaEntity{User: "alice"}, client.QuotaLimits{ProduceBytesPerSec: 64 << 10}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"a1", "a2"} {
		cl, err := client.New(client.Brokers(b.Addr()), client.UserPassword("alice", "secret"), client.ClientID(id))
		if err != nil {
			t.Fatal(err)
		}
		p, err := cl.NewProducer()
		if err != nil {
			t.Fatal(err)
		}
		for range 4 {
			if err := p.ProduceSync(ctx, &client.Record{Topic: "u", Value: make([]byte, 60<<10)}); err != nil {
				t.Fatal(err)
			}
		}
		p.Close()
		cl.Close()
	}
	// One bucket for alice, whichever client id; none per client id.
	if got := metric(t, b.HTTPAddr(), `skein_quota_throttle_seconds_total{client_id="",kind="produce",user="alice"}`); got == "" || strings.HasSuffix(got, " 0") {
		t.Fatalf("alice's throttle: %q", got)
	}
	if got := metric(t, b.HTTPAddr(), `skein_quota_rate{client_id="a1"`); got != "" {
		t.Fatalf("a per-client-id bucket under a user quota: %q", got)
	}
}

package client

import (
	"context"
	"fmt"

	"github.com/skeinlog/skein/proto/skeinv1"
)

// QuotaEntity names whom a client quota applies to: a user (the
// authenticated principal's name), a client id (ClientID), or both; each
// may be the default instead, which applies to every user or client id
// without a quota of its own. A broker picks, per rate, the most specific
// entity with that rate set, in Kafka's order: user and client id, user
// and default client id, user, default user and client id, default user
// and default client id, default user, client id, default client id.
type QuotaEntity struct {
	User          string
	DefaultUser   bool
	ClientID      string
	DefaultClient bool
}

// QuotaLimits are an entity's rates; 0 is not set.
type QuotaLimits struct {
	ProduceBytesPerSec int64
	FetchBytesPerSec   int64
	RequestsPerSec     float64
}

// QuotaKind names one of the rates, to remove it.
type QuotaKind int

const (
	QuotaProduceBytes QuotaKind = iota + 1
	QuotaFetchBytes
	QuotaRequests
)

// Quota is one entity's limits.
type Quota struct {
	Entity QuotaEntity
	Limits QuotaLimits
}

// AlterQuota sets the non-zero rates of set and removes the rates in remove
// for one entity, on every broker (kept across restarts). A caller over a
// quota is throttled: its answers are delayed by the time that brings its
// rate back under the quota. A bad entity or rate fails with
// ErrInvalidRequest and changes nothing.
func (c *Client) AlterQuota(ctx context.Context, e QuotaEntity, set QuotaLimits, remove ...QuotaKind) error {
	req := &skeinv1.AlterQuotaRequest{
		Entity: &skeinv1.QuotaEntity{User: e.User, DefaultUser: e.DefaultUser, ClientId: e.ClientID, DefaultClient: e.DefaultClient},
		Set:    &skeinv1.QuotaLimits{ProduceBytesPerSec: set.ProduceBytesPerSec, FetchBytesPerSec: set.FetchBytesPerSec, RequestsPerSec: set.RequestsPerSec},
	}
	for _, k := range remove {
		req.Remove = append(req.Remove, skeinv1.QuotaKind(k))
	}
	err := c.callAny(ctx, "alter quota", func(ctx context.Context, cl skeinv1.SkeinClient) error {
		_, err := cl.AlterQuota(ctx, req)
		return err
	})
	if err != nil {
		return fmt.Errorf("alter quota: %w", err)
	}
	return nil
}

// Quotas lists every client quota.
func (c *Client) Quotas(ctx context.Context) ([]Quota, error) {
	var resp *skeinv1.ListQuotasResponse
	err := c.callAny(ctx, "list quotas", func(ctx context.Context, cl skeinv1.SkeinClient) error {
		var err error
		resp, err = cl.ListQuotas(ctx, &skeinv1.ListQuotasRequest{})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list quotas: %w", err)
	}
	var out []Quota
	for _, q := range resp.GetQuotas() {
		e, l := q.GetEntity(), q.GetLimits()
		out = append(out, Quota{
			Entity: QuotaEntity{User: e.GetUser(), DefaultUser: e.GetDefaultUser(), ClientID: e.GetClientId(), DefaultClient: e.GetDefaultClient()},
			Limits: QuotaLimits{ProduceBytesPerSec: l.GetProduceBytesPerSec(), FetchBytesPerSec: l.GetFetchBytesPerSec(), RequestsPerSec: l.GetRequestsPerSec()},
		})
	}
	return out, nil
}

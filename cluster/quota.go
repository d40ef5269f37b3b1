package cluster

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/skeinlog/skein/internal/byterate"
)

// Client quotas, as Kafka's: a produce byte rate, a fetch byte rate and a
// request rate, set for a user (the authenticated principal's name), a
// client id, or both, each of which may be "the default" (every user or
// client id without a quota of its own). The controller stores them; every
// broker enforces them on its own traffic by throttling.

// ErrInvalidQuota is a quota entity or value that cannot be stored.
var ErrInvalidQuota = errors.New("invalid quota")

// QuotaEntity names whom a quota applies to. A part is absent when its
// name is empty and its Default flag unset.
type QuotaEntity struct {
	User          string `json:"user,omitempty"`
	DefaultUser   bool   `json:"default_user,omitempty"`
	ClientID      string `json:"client_id,omitempty"`
	DefaultClient bool   `json:"default_client,omitempty"`
}

// String is the entity as "user=alice,client-id=<default>".
func (e QuotaEntity) String() string {
	var parts []string
	switch {
	case e.DefaultUser:
		parts = append(parts, "user=<default>")
	case e.User != "":
		parts = append(parts, "user="+e.User)
	}
	switch {
	case e.DefaultClient:
		parts = append(parts, "client-id=<default>")
	case e.ClientID != "":
		parts = append(parts, "client-id="+e.ClientID)
	}
	return strings.Join(parts, ",")
}

func (e QuotaEntity) hasUser() bool   { return e.User != "" || e.DefaultUser }
func (e QuotaEntity) hasClient() bool { return e.ClientID != "" || e.DefaultClient }

// QuotaLimits are the rates of one entity; 0 is "not set".
type QuotaLimits struct {
	ProduceBytesPerSec int64   `json:"produce_bytes_per_sec,omitempty"`
	FetchBytesPerSec   int64   `json:"fetch_bytes_per_sec,omitempty"`
	RequestsPerSec     float64 `json:"requests_per_sec,omitempty"`
}

// IsZero reports whether no rate is set.
func (l QuotaLimits) IsZero() bool { return l == QuotaLimits{} }

// Quota is one entity's limits.
type Quota struct {
	Entity QuotaEntity `json:"entity"`
	Limits QuotaLimits `json:"limits"`
}

// QuotaKind is one of the three rates.
type QuotaKind int

const (
	QuotaProduce QuotaKind = iota
	QuotaFetch
	QuotaRequest
)

// QuotaKinds lists every kind, in a stable order.
var QuotaKinds = []QuotaKind{QuotaProduce, QuotaFetch, QuotaRequest}

// String names the kind as the CLI and metrics do.
func (k QuotaKind) String() string {
	switch k {
	case QuotaProduce:
		return "produce"
	case QuotaFetch:
		return "fetch"
	case QuotaRequest:
		return "request"
	}
	return "unknown"
}

// Limit returns the rate of kind (0: not set).
func (l QuotaLimits) Limit(k QuotaKind) float64 {
	switch k {
	case QuotaProduce:
		return float64(l.ProduceBytesPerSec)
	case QuotaFetch:
		return float64(l.FetchBytesPerSec)
	case QuotaRequest:
		return l.RequestsPerSec
	}
	return 0
}

// QuotaChange alters one entity's limits: the non-zero rates of Set are
// set, the kinds in Remove are removed, the others are kept. An entity left
// without rates is removed.
type QuotaChange struct {
	Entity QuotaEntity `json:"entity"`
	Set    QuotaLimits `json:"set"`
	Remove []QuotaKind `json:"remove,omitempty"`
}

// Bounds of names and rates.
const (
	maxQuotaNameBytes = 255
	// MaxRequestsPerSec bounds a request rate quota.
	MaxRequestsPerSec = 1e9
)

// ValidateQuotaEntity checks an entity names a user, a client id or both,
// with names of at most 255 bytes of printable UTF-8.
func ValidateQuotaEntity(e QuotaEntity) error {
	if !e.hasUser() && !e.hasClient() {
		return fmt.Errorf("%w: name a client id, a user, or both (or their defaults)", ErrInvalidQuota)
	}
	if e.User != "" && e.DefaultUser {
		return fmt.Errorf("%w: user %q and the default user at once: choose one", ErrInvalidQuota, e.User)
	}
	if e.ClientID != "" && e.DefaultClient {
		return fmt.Errorf("%w: client id %q and the default client id at once: choose one", ErrInvalidQuota, e.ClientID)
	}
	if err := checkQuotaName("user", e.User); err != nil {
		return err
	}
	return checkQuotaName("client id", e.ClientID)
}

func checkQuotaName(what, s string) error {
	if len(s) > maxQuotaNameBytes {
		return fmt.Errorf("%w: %s of %d bytes: at most %d", ErrInvalidQuota, what, len(s), maxQuotaNameBytes)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s %q is not UTF-8", ErrInvalidQuota, what, s)
	}
	for i, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %s %q has control character %U at byte %d", ErrInvalidQuota, what, s, r, i)
		}
	}
	return nil
}

// ValidateQuotaChange checks a change before it is committed: a valid
// entity, rates that are positive where set, something to do, and no kind
// both set and removed.
func ValidateQuotaChange(c QuotaChange) error {
	if err := ValidateQuotaEntity(c.Entity); err != nil {
		return err
	}
	l := c.Set
	if l.ProduceBytesPerSec < 0 || l.FetchBytesPerSec < 0 {
		return fmt.Errorf("%w: a byte rate must be positive (produce %d, fetch %d)", ErrInvalidQuota, l.ProduceBytesPerSec, l.FetchBytesPerSec)
	}
	if math.IsNaN(l.RequestsPerSec) || l.RequestsPerSec < 0 || l.RequestsPerSec > MaxRequestsPerSec {
		return fmt.Errorf("%w: request rate %v: want a positive number of requests per second, at most %g", ErrInvalidQuota, l.RequestsPerSec, float64(MaxRequestsPerSec))
	}
	if l.IsZero() && len(c.Remove) == 0 {
		return fmt.Errorf("%w: nothing to change for %s: give a produce, fetch or request rate, or remove one", ErrInvalidQuota, c.Entity)
	}
	for _, k := range c.Remove {
		if k < QuotaProduce || k > QuotaRequest {
			return fmt.Errorf("%w: unknown quota kind %d", ErrInvalidQuota, k)
		}
		if l.Limit(k) != 0 {
			return fmt.Errorf("%w: the %s rate is both set and removed", ErrInvalidQuota, k)
		}
	}
	return nil
}

// applyQuotaChange merges c into quotas (kept sorted by entity) and
// returns the result. Pure.
func applyQuotaChange(quotas []Quota, c QuotaChange) ([]Quota, error) {
	if err := ValidateQuotaChange(c); err != nil {
		return quotas, err
	}
	out := slices.Clone(quotas)
	i := slices.IndexFunc(out, func(q Quota) bool { return q.Entity == c.Entity })
	var l QuotaLimits
	if i >= 0 {
		l = out[i].Limits
	}
	for _, k := range c.Remove {
		switch k {
		case QuotaProduce:
			l.ProduceBytesPerSec = 0
		case QuotaFetch:
			l.FetchBytesPerSec = 0
		case QuotaRequest:
			l.RequestsPerSec = 0
		}
	}
	if c.Set.ProduceBytesPerSec > 0 {
		l.ProduceBytesPerSec = c.Set.ProduceBytesPerSec
	}
	if c.Set.FetchBytesPerSec > 0 {
		l.FetchBytesPerSec = c.Set.FetchBytesPerSec
	}
	if c.Set.RequestsPerSec > 0 {
		l.RequestsPerSec = c.Set.RequestsPerSec
	}
	switch {
	case i >= 0 && l.IsZero():
		out = slices.Delete(out, i, i+1)
	case i >= 0:
		out[i].Limits = l
	case !l.IsZero():
		out = append(out, Quota{Entity: c.Entity, Limits: l})
	}
	slices.SortFunc(out, func(a, b Quota) int { return strings.Compare(a.Entity.String(), b.Entity.String()) })
	return out, nil
}

// QuotaIndex finds the quota that applies to a caller, as Kafka resolves
// client quotas.
type QuotaIndex map[QuotaEntity]QuotaLimits

// NewQuotaIndex indexes quotas by entity.
func NewQuotaIndex(quotas []Quota) QuotaIndex {
	ix := make(QuotaIndex, len(quotas))
	for _, q := range quotas {
		ix[q.Entity] = q.Limits
	}
	return ix
}

// Resolve returns the limit of kind for a caller (user "" when it is not
// authenticated) and the bucket it counts against, the entity whose quota
// applies with its defaults replaced by the caller's names: a quota set
// for a user is shared by all of the user's client ids; a default quota
// gives each user or client id a bucket of its own. The first entity with
// a rate of kind set wins, in Kafka's order:
//
//	user+client-id, user+default client-id, user,
//	default user+client-id, default user+default client-id, default user,
//	client-id, default client-id.
//
// User entities are skipped for a caller without a user. ok is false when
// no quota applies.
func (ix QuotaIndex) Resolve(user, clientID string, kind QuotaKind) (bucket QuotaEntity, limit float64, ok bool) {
	if len(ix) == 0 {
		return QuotaEntity{}, 0, false
	}
	for _, e := range resolutionOrder(user, clientID) {
		l, found := ix[e]
		if !found || l.Limit(kind) <= 0 {
			continue
		}
		b := QuotaEntity{}
		if e.hasUser() {
			b.User = user
		}
		if e.hasClient() {
			b.ClientID = clientID
		}
		return b, l.Limit(kind), true
	}
	return QuotaEntity{}, 0, false
}

// resolutionOrder lists the entities that may apply to a caller, most
// specific first.
func resolutionOrder(user, clientID string) []QuotaEntity {
	order := make([]QuotaEntity, 0, 8)
	if user != "" {
		if clientID != "" {
			order = append(order, QuotaEntity{User: user, ClientID: clientID})
		}
		order = append(order, QuotaEntity{User: user, DefaultClient: true}, QuotaEntity{User: user})
		if clientID != "" {
			order = append(order, QuotaEntity{DefaultUser: true, ClientID: clientID})
		}
		order = append(order, QuotaEntity{DefaultUser: true, DefaultClient: true}, QuotaEntity{DefaultUser: true})
	}
	if clientID != "" {
		order = append(order, QuotaEntity{ClientID: clientID})
	}
	return append(order, QuotaEntity{DefaultClient: true})
}

// ParseByteRate parses a byte rate such as "10MB/s", "512KiB/s" or
// "1000000" (bytes per second): see byterate.Parse. At least 1 byte/s.
func ParseByteRate(s string) (int64, error) {
	r, err := byterate.Parse(s)
	if err != nil {
		return 0, err
	}
	if r < 1 {
		return 0, fmt.Errorf("byte rate %q: want at least 1 byte per second", s)
	}
	return r, nil
}

// ParseRequestRate parses a request rate in requests per second ("100",
// "0.5", "100/s").
func ParseRequestRate(s string) (float64, error) {
	t := strings.TrimSuffix(strings.TrimSpace(s), "/s")
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("request rate %q: want a positive number of requests per second, like 100 or 0.5", s)
	}
	if v <= 0 || v > MaxRequestsPerSec {
		return 0, fmt.Errorf("request rate %q: want more than 0 and at most %g requests per second", s, float64(MaxRequestsPerSec))
	}
	return v, nil
}

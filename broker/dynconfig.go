package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/skeinlog/skein/cluster"
	pb "github.com/skeinlog/skein/proto/skeinv1"
)

// Broker settings that are safe to change at run time ("broker config
// set"). A value set is controller state, applied by every broker as it
// applies the metadata, and kept across restarts; removing it brings each
// broker back to its start-up value (flag, environment or default).

// dynamicSetting is one run-time setting.
type dynamicSetting struct {
	name, doc string
	check     func(v string) error            // validates a value
	startup   func(b *Broker) string          // the value the broker started with
	apply     func(b *Broker, v string) error // makes v current
}

var dynamicSettings = []dynamicSetting{
	{
		name: "log.level", doc: "the broker's log level: debug, info, warn or error",
		check: func(v string) error { _, err := parseLevel(v); return err },
		startup: func(b *Broker) string {
			if b.cfg.LogLevel == nil {
				return "info"
			}
			return strings.ToLower(b.cfg.LogLevel.Level().String())
		},
		apply: func(b *Broker, v string) error {
			lv, err := parseLevel(v)
			if err != nil {
				return err
			}
			if b.cfg.LogLevel == nil {
				return errors.New("this broker's logger has a fixed level")
			}
			b.cfg.LogLevel.Set(lv)
			return nil
		},
	},
	{
		name: "retention.check.interval", doc: "how often retention deletes old segments (Go duration, at least 1s)",
		check:   func(v string) error { _, err := parseRetentionInterval(v); return err },
		startup: func(b *Broker) string { return b.cfg.RetentionCheckInterval.String() },
		apply: func(b *Broker, v string) error {
			d, err := parseRetentionInterval(v)
			if err != nil {
				return err
			}
			b.dyn.setRetentionEvery(d)
			return nil
		},
	},
}

func parseLevel(v string) (slog.Level, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(v)); err != nil {
		return lv, fmt.Errorf("%q: want debug, info, warn or error", v)
	}
	return lv, nil
}

func parseRetentionInterval(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d < time.Second || d > 24*time.Hour {
		return 0, fmt.Errorf("%q: want a duration between 1s and 24h, like 30s or 5m", v)
	}
	return d, nil
}

func init() { dynamicSettings = append(dynamicSettings, throttleSettingDef) }

func settingNamed(name string) (dynamicSetting, bool) {
	i := slices.IndexFunc(dynamicSettings, func(s dynamicSetting) bool { return s.name == name })
	if i < 0 {
		return dynamicSetting{}, false
	}
	return dynamicSettings[i], true
}

// checkBrokerConfig validates a run-time setting; value "" removes it.
func checkBrokerConfig(name, value string) error {
	s, ok := settingNamed(name)
	if !ok {
		names := make([]string, len(dynamicSettings))
		for i, s := range dynamicSettings {
			names[i] = s.name
		}
		return invalid("unknown broker setting %q: the settings that change at run time are %s", name, strings.Join(names, ", "))
	}
	if value == "" {
		return nil
	}
	if err := s.check(value); err != nil {
		return invalid("%s %v", name, err)
	}
	return nil
}

// initDynamic records b's start-up values of the run-time settings.
func (b *Broker) initDynamic() {
	d := &b.dyn
	d.startup, d.applied = map[string]string{}, map[string]string{}
	d.retentionEvery, d.retentionReset = b.cfg.RetentionCheckInterval, make(chan struct{}, 1)
	for _, s := range dynamicSettings {
		d.startup[s.name] = s.startup(b)
		d.applied[s.name] = d.startup[s.name]
	}
}

// dynamicState is what the broker has applied of the run-time settings.
type dynamicState struct {
	mu             sync.Mutex        // guards the fields below
	startup        map[string]string // name → the value the broker started with
	applied        map[string]string // name → the value made current
	retentionEvery time.Duration
	retentionReset chan struct{} // signalled when retentionEvery changes
}

func (d *dynamicState) setRetentionEvery(v time.Duration) {
	d.mu.Lock()
	d.retentionEvery = v
	d.mu.Unlock()
	select {
	case d.retentionReset <- struct{}{}:
	default:
	}
}

// current is the value of a setting in effect.
func (d *dynamicState) current(name string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.applied[name]
}

func (d *dynamicState) retentionInterval() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.retentionEvery
}

// applyDynamicConfig makes each run-time setting's value in snap (or the
// start-up value when snap has none) current, where it changed.
func (b *Broker) applyDynamicConfig(snap *cluster.Snapshot) {
	for _, s := range dynamicSettings {
		want, ok := snap.BrokerConfig[s.name]
		if !ok {
			want = b.dyn.startup[s.name]
		}
		b.dyn.mu.Lock()
		same := b.dyn.applied[s.name] == want
		b.dyn.mu.Unlock()
		if same {
			continue
		}
		if err := s.apply(b, want); err != nil {
			b.log.Warn("broker setting not applied", "setting", s.name, "value", want, "err", err)
			continue
		}
		b.dyn.mu.Lock()
		b.dyn.applied[s.name] = want
		b.dyn.mu.Unlock()
		if ok {
			b.log.Info("broker setting applied", "setting", s.name, "value", want)
		}
	}
}

// SetBrokerConfig validates a setting and commits it through the
// controller (forwarding to it), then waits until this broker applied it.
func (s *server) SetBrokerConfig(ctx context.Context, req *pb.SetBrokerConfigRequest) (*pb.SetBrokerConfigResponse, error) {
	if err := checkBrokerConfig(req.Name, req.Value); err != nil {
		return nil, toStatus(err)
	}
	_, _, err := atController(s.b, ctx, func() (*pb.SetBrokerConfigResponse, error) {
		return nil, s.b.ctrl.SetBrokerConfig(ctx, req.Name, req.Value)
	}, func(ctx context.Context, c pb.SkeinClient) (*pb.SetBrokerConfigResponse, error) {
		return c.SetBrokerConfig(ctx, req)
	})
	if err != nil {
		return nil, err
	}
	s.b.awaitMetadata(ctx, func(snap *cluster.Snapshot) bool {
		v, ok := snap.BrokerConfig[req.Name]
		return v == req.Value && ok == (req.Value != "") // an unset: the setting is gone
	})
	s.b.awaitApplied(ctx, req.Name, req.Value)
	s.b.log.Info("broker setting changed", "setting", req.Name, "value", req.Value)
	return &pb.SetBrokerConfigResponse{}, nil
}

// awaitApplied waits (up to 10 s, or ctx) until this broker has made value
// (its start-up value for "") the current one of the setting name: the
// metadata carries it first, the broker applies it as it reconciles.
func (b *Broker) awaitApplied(ctx context.Context, name, value string) {
	if value == "" {
		value = b.dyn.startup[name]
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.dyn.current(name) != value && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
}

// GetBrokerConfig lists this broker's run-time settings.
func (s *server) GetBrokerConfig(ctx context.Context, req *pb.GetBrokerConfigRequest) (*pb.GetBrokerConfigResponse, error) {
	snap := s.b.snapshot()
	resp := &pb.GetBrokerConfigResponse{BrokerId: s.b.self.ID}
	for _, d := range dynamicSettings {
		e := &pb.BrokerConfigEntry{Name: d.name, Value: s.b.dyn.startup[d.name], Source: "start-up", Doc: d.doc}
		if v, ok := snap.BrokerConfig[d.name]; ok {
			e.Value, e.Source = v, "run-time"
		}
		resp.Entries = append(resp.Entries, e)
	}
	return resp, nil
}

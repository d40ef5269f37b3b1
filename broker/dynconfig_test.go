package broker_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/skeinlog/skein/broker"
	"github.com/skeinlog/skein/broker/brokertest"
	"github.com/skeinlog/skein/client"
)

// Run-time broker settings: the log level and the retention interval
// change on a running broker, are listed with their source, survive a
// restart, and go back to the start-up value when unset; unknown settings
// and bad values are refused, naming what is allowed.
func TestBrokerConfigAtRunTime(t *testing.T) {
	level := new(slog.LevelVar) // info
	dir := t.TempDir()
	b := brokertest.Start(t, brokertest.WithDataDir(dir), brokertest.WithConfig(func(c *broker.Config) {
		c.LogLevel = level
		c.SegmentBytes = 4096
		c.RetentionCheckInterval = time.Hour
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := newClient(t, []string{b.Addr()})

	for _, bad := range []struct{ name, value, want string }{
		{"log.levle", "debug", `unknown broker setting "log.levle": the settings that change at run time are log.level, retention.check.interval`},
		{"log.level", "loud", `log.level "loud": want debug, info, warn or error`},
		{"retention.check.interval", "10ms", "want a duration between 1s and 24h"},
	} {
		err := c.SetBrokerConfig(ctx, bad.name, bad.value)
		if !errors.Is(err, client.ErrInvalidRequest) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("set %s=%s: err %v, want an invalid request saying %q", bad.name, bad.value, err, bad.want)
		}
	}
	if err := c.SetBrokerConfig(ctx, "log.level", "debug"); err != nil {
		t.Fatal(err)
	}
	if level.Level() != slog.LevelDebug {
		t.Fatalf("log level %v after set debug", level.Level())
	}
	_, settings, err := c.BrokerConfig(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]client.BrokerSetting{}
	for _, s := range settings {
		got[s.Name] = s
	}
	if s := got["log.level"]; s.Value != "debug" || s.Source != "run-time" {
		t.Errorf("log.level listed as %+v", s)
	}
	if s := got["retention.check.interval"]; s.Value != "1h0m0s" || s.Source != "start-up" {
		t.Errorf("retention.check.interval listed as %+v", s)
	}

	// The retention interval applies at once: old segments go within seconds
	// instead of the hour the broker started with.
	if _, err := c.CreateTopic(ctx, "old", client.TopicConfig{Partitions: 1, RetentionMs: 1}); err != nil {
		t.Fatal(err)
	}
	p, err := c.NewProducer()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if err := p.ProduceSync(ctx, &client.Record{Topic: "old", Value: bytes.Repeat([]byte("r"), 200)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.SetBrokerConfig(ctx, "retention.check.interval", "1s"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		d, err := c.DescribeTopic(ctx, "old")
		if err != nil {
			t.Fatal(err)
		}
		if d.Status[0].LogStartOffset > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("retention did not run after its interval was lowered to 1s")
		}
		time.Sleep(200 * time.Millisecond)
	}

	// Kept across a restart; unset goes back to the start-up value.
	level.Set(slog.LevelInfo)
	b.Restart()
	c2 := newClient(t, []string{b.Addr()})
	for deadline := time.Now().Add(20 * time.Second); level.Level() != slog.LevelDebug; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the run-time log level was not applied after a restart")
		}
	}
	if err := c2.SetBrokerConfig(ctx, "log.level", ""); err != nil {
		t.Fatal(err)
	}
	if level.Level() != slog.LevelInfo {
		t.Fatalf("log level %v after unset, want the start-up info", level.Level())
	}
}

package main

import (
	"context"
	"errors"
	"io"

	"github.com/skeinlog/skein/client"
)

// exitNoRecord: --key found no record of the key.
const exitNoRecord = 3

// checkKey checks --key and the flags that go with it.
func (cfg *config) checkKey(key string, set map[string]bool) error {
	switch {
	case key == "":
		return errors.New("--key: give a key")
	case cfg.group.name != "":
		return errors.New("--key looks one key up: drop -G")
	case len(cfg.partitions) > 1:
		return errors.New("--key: give at most one partition with -p")
	case set["o"] || set["e"] || set["c"]:
		return errors.New("--key prints one record: drop -o, -e and -c")
	}
	cfg.key = []byte(key)
	return nil
}

// lookupKey prints the key's latest committed record (--key).
func lookupKey(ctx context.Context, c *client.Client, cfg *config, stdout io.Writer, logf func(string, ...any)) int {
	part := client.AnyPartition
	if len(cfg.partitions) == 1 {
		part = cfg.partitions[0]
	}
	kv, err := c.GetKey(ctx, cfg.topic, part, cfg.key)
	if err != nil {
		logf("%v", err)
		return exitFailed
	}
	if !kv.Found {
		logf("key %q has no record in topic %s", cfg.key, cfg.topic)
		return exitNoRecord
	}
	var buf []byte
	if cfg.json {
		b, _ := kv.Record.MarshalJSON()
		buf = append(b, '\n')
	} else {
		buf = render(nil, cfg.format, &kv.Record)
	}
	if _, err := stdout.Write(buf); err != nil {
		logf("write: %v", err)
		return exitFailed
	}
	return exitOK
}

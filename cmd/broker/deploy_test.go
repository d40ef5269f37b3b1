package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// The files under deploy/ configure the broker through SKEIN_* variables,
// and the broker ignores a variable it does not know: a misspelt one would
// silently do nothing. Each variable they set must be one a flag reads.
func TestDeployFilesSetOnlyKnownVariables(t *testing.T) {
	var help bytes.Buffer
	for _, args := range [][]string{{"-h"}, {"cluster", "-h"}, {"healthcheck", "-h"}} {
		run(context.Background(), args, &help, &help)
	}
	known := map[string]bool{}
	for _, m := range regexp.MustCompile(`\(env (SKEIN_[A-Z0-9_]+)[,)]`).FindAllStringSubmatch(help.String(), -1) {
		known[m[1]] = true
	}
	if len(known) < 20 || !known["SKEIN_DATA_DIR"] || !known["SKEIN_BROKERS"] {
		t.Fatalf("found only %d variables in the help text: %v", len(known), known)
	}

	deploy := filepath.Join("..", "..", "deploy")
	for _, f := range []struct {
		path string
		re   string // first group: a variable the file sets
		min  int
	}{
		{"Dockerfile", `(?m)\b(SKEIN_[A-Z0-9_]+)=`, 5},
		{"docker-compose.yml", `(?m)^\s+(SKEIN_[A-Z0-9_]+):`, 7},
		{"docker-compose.secure.yml", `(?m)^\s+(SKEIN_[A-Z0-9_]+):`, 5},
		{"kubernetes/statefulset.yaml", `(?m)^\s*- name: (SKEIN_[A-Z0-9_]+)\s*$`, 6},
		{"systemd/skein-broker.env", `(?m)^#?(SKEIN_[A-Z0-9_]+)=`, 10},
	} {
		data, err := os.ReadFile(filepath.Join(deploy, f.path))
		if err != nil {
			t.Fatal(err)
		}
		ms := regexp.MustCompile(f.re).FindAllStringSubmatch(string(data), -1)
		if len(ms) < f.min {
			t.Errorf("%s: found %d SKEIN_ variables, expected at least %d: is the pattern stale?", f.path, len(ms), f.min)
		}
		for _, m := range ms {
			if !known[m[1]] {
				t.Errorf("%s sets %s, which no broker flag reads", f.path, m[1])
			}
		}
	}
}

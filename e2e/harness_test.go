// Package e2e is the multi-process test tier: it runs the real broker,
// produce and consume binaries on 127.0.0.1 and drives them as a user would.
// It runs only with SKEIN_E2E=1 (make test sets it); SKEIN_BIN names a
// directory with the binaries, else they are built once per run. The
// harness is internal/proctest, shared with the fault-injection suite.
package e2e

#!/usr/bin/env bash
# The test command of the README (`make test`), and what CI runs.
#   1. static checks: gofmt, go vet, staticcheck (when installed; CI installs it)
#   2. unit tier: every package with -race
#   3. benchmarks, briefly, so they stay compiled and working
#   4. multi-process tier: the real broker, produce and consume binaries
#   5. fault-injection tier (cmd/chaos, needs root): four seeded 40 s runs
#      (process faults, network partitions, storage damage, the mix with a
#      full disk), each checked for every anomaly of RELIABILITY.md, and a
#      20 s run of the mix with TLS, mutual TLS, ACLs and SCRAM clients
#   6. container tier (scripts/test-deploy.sh): deploy/ validated, the image
#      built, the docker-compose cluster run, a broker killed and restarted
# Set SKEIN_SKIP_E2E=1 to stop after the unit tier, SKEIN_SKIP_CHAOS=1 to
# skip the fault-injection tier, SKEIN_SKIP_DEPLOY=1 to skip the container
# tier.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf '\n=== %s (%s)\n' "$1" "$(date +%T)"; }

step "static checks"
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed:"; echo "$unformatted"; exit 1; fi
go vet ./...
go mod tidy -diff >/dev/null || { echo "go.mod/go.sum are not tidy: run 'go mod tidy' and commit"; go mod tidy -diff; exit 1; }
if command -v staticcheck >/dev/null; then staticcheck ./...; else echo "staticcheck not installed; skipped (CI installs it)"; fi

step "unit tier (-race)"
go test -race -count=1 -timeout 15m ./...

step "benchmarks (short)"
go test -run '^$' -bench . -benchtime 5x -timeout 10m ./... >/tmp/skein-bench.txt || { cat /tmp/skein-bench.txt; exit 1; }
grep -E '^(Benchmark|ok|FAIL)' /tmp/skein-bench.txt | sed 's/^/  /' | head -60

if [ "${SKEIN_SKIP_E2E:-}" = 1 ]; then echo "multi-process tier skipped (SKEIN_SKIP_E2E=1)"; exit 0; fi
# The fault-injection tier's runs: `make chaos` runs the same.
CHAOS_CI_ARGS="-seed 1 -runs 4 -duration 40s -scenario process,partition,storage,mix"
CHAOS_CI_SECURE_ARGS="-secure -seed 5 -runs 1 -duration 20s -scenario mix"

step "multi-process tier"
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
CGO_ENABLED=0 go build -trimpath -o "$bin/" ./cmd/...
SKEIN_E2E=1 SKEIN_BIN="$bin" go test -count=1 -timeout 20m -v ./e2e/... 2>&1 | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+\S+_test.go)' || { echo "multi-process tier failed"; exit 1; }

if [ "${SKEIN_SKIP_CHAOS:-}" = 1 ]; then
  echo "fault-injection tier skipped (SKEIN_SKIP_CHAOS=1)"
else
  step "fault-injection tier"
  chaosdir=$(mktemp -d)
  trap 'rm -rf "$bin" "$chaosdir"' EXIT
  { "$bin/chaos" -bin "$bin" -dir "$chaosdir" $CHAOS_CI_ARGS && "$bin/chaos" -bin "$bin" -dir "$chaosdir" $CHAOS_CI_SECURE_ARGS; } || {
    echo "fault-injection tier failed: the failed runs' histories and broker logs are under $chaosdir"
    trap 'rm -rf "$bin"' EXIT
    exit 1
  }
fi

if [ "${SKEIN_SKIP_DEPLOY:-}" = 1 ]; then
  echo "container tier skipped (SKEIN_SKIP_DEPLOY=1)"
else
  step "container tier"
  ./scripts/test-deploy.sh || { echo "container tier failed"; exit 1; }
fi
step "all tiers passed"

#!/usr/bin/env bash
# The container tier (make test runs it after the multi-process tier).
#   1. static: docker-compose config; the Kubernetes manifests rendered by
#      kubectl kustomize and decoded strictly (deploy/kubernetes/manifests_test,
#      its own Go module); systemd-analyze verify on the unit
#   2. live, on the Docker engine: build the image under a throwaway tag, run
#      deploy/docker-compose.yml under a unique project name, host ports and
#      subnet, and drive it (deploy/compose_test.go): produce and consume from
#      the host and from the network, kill a broker, restart it, stop and start
#      the cluster. Containers, networks, volumes and the image are removed
#      afterwards, on failure too.
#   3. with SKEIN_DEPLOY_SECURE=1 (make test-deploy-secure), also
#      deploy/docker-compose.secure.yml: TLS, ACLs, a SCRAM user made with the
#      admin certificate, produce and consume as it, plaintext and
#      unauthenticated clients refused (about 2 minutes more)
# Without docker-compose or a reachable Docker engine the live part says so
# and is skipped; with CI=true that is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."
step() { printf -- '--- %s (%s)\n' "$1" "$(date +%T)"; }
missing() { # what: skip here, fail in CI
  if [ "${CI:-}" = true ]; then echo "container tier: $1 (CI=true: failing)" >&2; exit 1; fi
  echo "container tier: $1: skipped"
}

step "Kubernetes manifests: kubectl kustomize, strict decode"
(
  cd deploy/kubernetes/manifests_test
  unformatted=$(gofmt -l .)
  if [ -n "$unformatted" ]; then echo "gofmt needed: $unformatted"; exit 1; fi
  go vet ./...
  if command -v staticcheck >/dev/null; then staticcheck ./...; fi
  go test -count=1 -v ./... 2>&1 | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+\S+_test.go)'
  [ "${PIPESTATUS[0]}" = 0 ]
)

step "secure Kubernetes variant: kubectl kustomize deploy/kubernetes-secure"
if command -v kubectl >/dev/null; then
  out=$(kubectl kustomize deploy/kubernetes-secure)
  for want in SKEIN_TLS_CERT_FILE SKEIN_GOSSIP_KEY_FILE 'value: acl' 'scheme: HTTPS' 'secretName: skein-broker-tls'; do
    grep -q "$want" <<<"$out" || { echo "deploy/kubernetes-secure renders without $want"; exit 1; }
  done
  if grep -q 'grpc:' <<<"$out"; then echo "deploy/kubernetes-secure keeps a gRPC probe (it cannot speak TLS)"; exit 1; fi
  echo "ok"
else
  missing "kubectl is not installed"
fi

if command -v systemd-analyze >/dev/null; then
  step "systemd unit: systemd-analyze verify"
  tmp=$(mktemp -d)
  CGO_ENABLED=0 go build -trimpath -o "$tmp/" ./cmd/broker
  # verify wants ExecStart to exist: point it at a freshly built broker.
  sed "s|^ExecStart=/usr/local/bin/broker|ExecStart=$tmp/broker|" deploy/systemd/skein-broker.service >"$tmp/skein-broker.service"
  out=$(systemd-analyze verify "$tmp/skein-broker.service" 2>&1) || { echo "$out"; rm -rf "$tmp"; exit 1; }
  rm -rf "$tmp"
  if [ -n "$out" ]; then echo "$out"; exit 1; fi
  echo "ok"
else
  echo "systemd-analyze not installed: systemd unit not verified"
fi

if ! command -v docker-compose >/dev/null || ! command -v docker >/dev/null; then
  missing "docker or docker-compose is not installed"; exit 0
fi
step "docker-compose config"
docker-compose -f deploy/docker-compose.yml config -q
docker-compose -f deploy/docker-compose.yml -f deploy/docker-compose.secure.yml config -q
echo "ok"
if ! timeout 20 docker info >/dev/null 2>&1; then
  missing "no Docker engine is reachable (docker info failed)"; exit 0
fi

project=skeintest$(date +%s)$$
image=skein:test-$project
bin=$(mktemp -d)
cleanup() {
  set +e
  ids=$(docker ps -aq --filter "label=skein.test=$project")
  [ -n "$ids" ] && docker rm -f -v $ids >/dev/null
  # Everything compose made for the project, whatever state the test left.
  SKEIN_IMAGE=$image docker-compose -p "$project" -f deploy/docker-compose.yml down -v --remove-orphans -t 10 >/dev/null 2>&1
  SKEIN_IMAGE=$image docker-compose -p "${project}s" -f deploy/docker-compose.yml -f deploy/docker-compose.secure.yml \
    down -v --remove-orphans -t 10 >/dev/null 2>&1
  docker image inspect "$image" >/dev/null 2>&1 && docker rmi -f "$image" >/dev/null
  rm -rf "$bin"
}
trap cleanup EXIT

step "image (scripts/images.sh $image)"
start=$(date +%s)
./scripts/images.sh "$image" 2>&1 | grep -v -e 'legacy builder is deprecated' -e 'buildx component' -e 'docs.docker.com/go/buildx' -e '^\s*$' || true
docker image inspect "$image" >/dev/null
echo "built in $(($(date +%s) - start)) s"
CGO_ENABLED=0 go build -trimpath -o "$bin/" ./cmd/...

step "compose cluster ($project)"
log=$(mktemp /tmp/skein-deploy-test.XXXXXX.log)
if SKEIN_DEPLOY_PROJECT=$project SKEIN_IMAGE=$image SKEIN_BIN=$bin \
  go test -count=1 -timeout 15m -v ./deploy/ >"$log" 2>&1; then
  grep -E '^(=== RUN|--- |PASS|ok)|figure:|every acknowledged one' "$log" | sed 's/^ *compose_test.go:[0-9]*: /    /'
  rm -f "$log"
else
  tail -n 250 "$log"
  echo "container tier failed (whole log: $log)"
  exit 1
fi

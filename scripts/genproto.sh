#!/usr/bin/env bash
# Regenerates proto/skeinv1 from proto/skein/v1/*.proto with pinned plugins.
# Needs protoc (Debian: protobuf-compiler); installs the Go plugins itself.
set -euo pipefail
cd "$(dirname "$0")/.."
PROTOC_GEN_GO_VERSION=v1.36.12
PROTOC_GEN_GO_GRPC_VERSION=v1.6.2
bin="$PWD/.bin"
mkdir -p "$bin"
if [ ! -x "$bin/protoc-gen-go" ] || ! "$bin/protoc-gen-go" --version 2>/dev/null | grep -q "$PROTOC_GEN_GO_VERSION"; then
  GOBIN="$bin" go install "google.golang.org/protobuf/cmd/protoc-gen-go@$PROTOC_GEN_GO_VERSION"
fi
if [ ! -x "$bin/protoc-gen-go-grpc" ] || ! "$bin/protoc-gen-go-grpc" --version 2>/dev/null | grep -q "${PROTOC_GEN_GO_GRPC_VERSION#v}"; then
  GOBIN="$bin" go install "google.golang.org/grpc/cmd/protoc-gen-go-grpc@$PROTOC_GEN_GO_GRPC_VERSION"
fi
command -v protoc >/dev/null || { echo "protoc not found: apt-get install -y protobuf-compiler" >&2; exit 1; }
protoc -I proto \
  --plugin=protoc-gen-go="$bin/protoc-gen-go" --plugin=protoc-gen-go-grpc="$bin/protoc-gen-go-grpc" \
  --go_out=. --go_opt=module=github.com/skeinlog/skein \
  --go-grpc_out=. --go-grpc_opt=module=github.com/skeinlog/skein \
  proto/skein/v1/*.proto

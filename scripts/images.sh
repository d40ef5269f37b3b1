#!/usr/bin/env bash
# Builds the Skein container image (make images): static binaries compiled
# here, copied into a FROM scratch image with a non-root user and a /data
# volume. No base image is pulled.
#   scripts/images.sh [IMAGE]    default: $SKEIN_IMAGE, else skein:latest
set -euo pipefail
cd "$(dirname "$0")/.."
image=${1:-${SKEIN_IMAGE:-skein:latest}}
uid=10001

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/usr/local/bin" "$root/etc" "$root/tmp" "$ctx/data" "$ctx/certs"
chmod 1777 "$root/tmp"
chmod 0755 "$ctx/data" "$ctx/certs"

CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$root/usr/local/bin/" ./cmd/...
# The user has no shell and owns only /data.
echo "root:x:0:0:root:/:/sbin/nologin
skein:x:$uid:$uid:skein:/data:/sbin/nologin" >"$root/etc/passwd"
echo "root:x:0:
skein:x:$uid:" >"$root/etc/group"
echo "hosts: files dns" >"$root/etc/nsswitch.conf"
cp deploy/Dockerfile "$ctx/Dockerfile"

version=$(git describe --tags --always --dirty 2>/dev/null || echo dev)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
docker build -q -t "$image" --build-arg VERSION="$version" --build-arg REVISION="$revision" "$ctx" >/dev/null
size=$(docker image inspect -f '{{.Size}}' "$image")
echo "built $image ($((size / 1024 / 1024)) MiB; $version): broker, produce, consume"

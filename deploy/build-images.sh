#!/usr/bin/env bash
# build-images.sh: build the local images kdsync:local, kdsim:local and
# nats:local FROM scratch.
#
# It compiles three static binaries (CGO_ENABLED=0) into a temporary build
# context, copies the host's CA bundle next to them, and runs docker build
# with deploy/Dockerfile, deploy/kdsim.Dockerfile and deploy/nats.Dockerfile.
# No base image is pulled, so it works without a registry.
#
#   deploy/build-images.sh                 # all three
#   deploy/build-images.sh kdsync          # only some: kdsync, kdsim, nats
#
# Environment: VERSION (default: git describe), TAG (default: local),
# GOARCH (default: the host's), CA_BUNDLE (default:
# /etc/ssl/certs/ca-certificates.crt), DOCKER (default: docker).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"

TAG=${TAG:-local}
DOCKER=${DOCKER:-docker}
CA_BUNDLE=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
images=("$@")
[ ${#images[@]} -gt 0 ] || images=(kdsync kdsim nats)

if [ ! -s "$CA_BUNDLE" ]; then
  echo "build-images: no CA bundle at $CA_BUNDLE (apt-get install ca-certificates, or set CA_BUNDLE)" >&2
  exit 1
fi

ctx=$(mktemp -d "${TMPDIR:-/tmp}/kdsync-images.XXXXXX")
trap 'rm -rf "$ctx"' EXIT

export CGO_ENABLED=0 GOOS=linux
gobuild() { # gobuild OUT PACKAGE [LDFLAGS]
  echo "build-images: go build -o $1 $2"
  go build -trimpath -ldflags "-s -w ${3:-}" -o "$1" "$2"
}

for img in "${images[@]}"; do
  dir=$ctx/$img
  mkdir -p "$dir"
  cp "$CA_BUNDLE" "$dir/ca-certificates.crt"
  case $img in
    kdsync)
      gobuild "$dir/kdsync" ./cmd/kdsync "-X main.version=$VERSION"
      dockerfile=deploy/Dockerfile version=$VERSION ;;
    kdsim)
      gobuild "$dir/kdsim" ./cmd/kdsim
      dockerfile=deploy/kdsim.Dockerfile version=$VERSION ;;
    nats)
      # The nats-server version go.mod pins, built from its module.
      gobuild "$dir/nats-server" github.com/nats-io/nats-server/v2
      mkdir -p "$dir/data"
      dockerfile=deploy/nats.Dockerfile
      version=$(go list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2) ;;
    *)
      echo "build-images: unknown image $img (want kdsync, kdsim or nats)" >&2
      exit 2 ;;
  esac
  echo "build-images: $DOCKER build -f $dockerfile -t $img:$TAG ($version)"
  "$DOCKER" build -q -f "$dockerfile" --build-arg "VERSION=$version" -t "$img:$TAG" "$dir"
done
"$DOCKER" image ls --format '{{.Repository}}:{{.Tag}}  {{.Size}}' | grep -E "^($(IFS='|'; echo "${images[*]}")):$TAG " || true

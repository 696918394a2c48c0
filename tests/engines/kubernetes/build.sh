#!/bin/bash
# Build Kubernetes v1.20.2 binaries from Debian bookworm's source package (apt-get source kubernetes;
# it ships vendor/) with Debian's Go 1.19, in GOPATH mode as k8s 1.20's own hack/lib/golang.sh does.
set -e
. "$(dirname "$0")/common.sh"
SRC=${SRC:?}
OUT=${OUT:-$B}
GP=${GP:?}
mkdir -p "$GP/src/k8s.io" "$OUT"
[ -L "$GP/src/k8s.io/kubernetes" ] || ln -s "$SRC" "$GP/src/k8s.io/kubernetes"
export PATH=/usr/lib/go-1.19/bin:$PATH
export GO111MODULE=off GOPATH="$GP" GOFLAGS= GOPROXY=off GOCACHE=${GOCACHE:?}
LD="-s -w"
for p in k8s.io/kubernetes/vendor/k8s.io/component-base/version k8s.io/kubernetes/vendor/k8s.io/client-go/pkg/version; do
  LD="$LD -X $p.gitVersion=v1.20.2 -X $p.gitMajor=1 -X $p.gitMinor=20 -X $p.gitTreeState=clean -X $p.buildDate=2021-01-13T00:00:00Z"
done
cd "$GP/src/k8s.io/kubernetes"
for t in "$@"; do
  echo "=== building $t $(date +%T)"
  s=$(date +%s)
  # into a temporary name first: an interrupted build must not leave a binary that looks complete
  CGO_ENABLED=${CGO_ENABLED:-0} nice -n 19 go build -ldflags "$LD" -o "$OUT/.$t.part" k8s.io/kubernetes/cmd/$t
  mv "$OUT/.$t.part" "$OUT/$t"
  echo "=== built $t in $(( $(date +%s) - s ))s"
done

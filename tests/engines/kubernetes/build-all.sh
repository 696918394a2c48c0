#!/bin/bash
# Build the real-Kubernetes test harness's binaries and images ONCE per machine into $CACHE
# (default /var/cache/jupyter-neo/k8s-1.20.2, keyed by version), and make sure the runtime packages are installed.
# Idempotent: with the cache complete it only checks the packages (~0.1 s). Fresh: ~8-10 min on 2 cores.
# Kubernetes v1.20.2 is built from Debian bookworm's source package (it ships vendor/; no Go module proxy needed).
# Needs root (apt-get, /var/cache). Exit 3 = this machine cannot build it (not root / not Debian).
set -euo pipefail
. "$(dirname "$0")/common.sh"
t() { echo "[$(date +%T)] k8s harness: $*"; }
[ "$(id -u)" = 0 ] || { echo "k8s harness: not root, cannot install packages or build into $CACHE" >&2; exit 3; }
command -v apt-get >/dev/null || { echo "k8s harness: no apt-get (Debian needed)" >&2; exit 3; }
RUNTIME_PKGS="etcd-server containerd runc containernetworking-plugins iptables iproute2 util-linux openssl curl"
BUILD_PKGS="golang-1.19-go golang-github-modern-go-reflect2-dev mmdebstrap rsync gcc libc6-dev"
missing() { local p m=""; for p in "$@"; do dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || m="$m $p"; done; echo "$m"; }
APT_OPTS=(-y -qq -o DPkg::Lock::Timeout=600)
install() { # packages...
  [ -n "$*" ] || return 0
  t "apt-get install$*"
  apt-get update -qq -o DPkg::Lock::Timeout=600 >/dev/null
  # shellcheck disable=SC2068
  DEBIAN_FRONTEND=noninteractive apt-get install "${APT_OPTS[@]}" $@ >"$CACHE.apt.log" 2>&1 \
    || { tail -20 "$CACHE.apt.log" >&2; exit 1; }
}
mkdir -p "$(dirname "$CACHE")"
BINS="kube-apiserver kube-scheduler kube-controller-manager kubelet kubectl"
complete() { local b; for b in $BINS; do [ -x "$B/$b" ] || return 1; done
  [ -f "$CACHE/.complete" ] && [ -f "$IMG/$PY_IMAGE_TAR" ] && [ -f "$IMG/pause-image.tar" ]; }
bins_missing() { local b; for b in $BINS; do [ -x "$B/$b" ] || return 0; done; return 1; }
if complete; then
  install $(missing $RUNTIME_PKGS)
  exit 0
fi
T0=$(date +%s)
W=$CACHE/build; mkdir -p "$W"/{deb-src,src} "$CACHE/logs" "$B" "$IMG"
MIRROR=$(debian_mirror); [ -n "$MIRROR" ] || { echo "k8s harness: no Debian mirror found in apt sources" >&2; exit 3; }
if ! grep -qs '^Types: deb-src' /etc/apt/sources.list.d/neo-k8s-src.sources; then
  printf 'Types: deb-src\nURIs: %s\nSuites: bookworm\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$MIRROR" > /etc/apt/sources.list.d/neo-k8s-src.sources
  rm -f "$CACHE.apt-updated"
fi
install $(missing $RUNTIME_PKGS $BUILD_PKGS)
if bins_missing; then
t "kubernetes source (Debian source package kubernetes 1.20.5+really1.20.2)"
[ -f "$W"/deb-src/kubernetes_1.20.5+really1.20.2.orig.tar.gz ] || (cd "$W/deb-src" && apt-get source --download-only kubernetes >/dev/null 2>&1)
SRC=$W/src/kubernetes-$K8S_VERSION
if [ ! -f "$SRC/pkg/generated/openapi/zz_generated.openapi.go" ]; then
  rm -rf "$SRC"; tar xzf "$W"/deb-src/kubernetes_1.20.5+really1.20.2.orig.tar.gz -C "$W/src"
  # the vendored reflect2 v1.0.1 crashes with Go >= 1.18: use Debian's 1.0.2 source
  rm -rf "$SRC/vendor/github.com/modern-go/reflect2"; mkdir "$SRC/vendor/github.com/modern-go/reflect2"
  cp /usr/share/gocode/src/github.com/modern-go/reflect2/*.go /usr/share/gocode/src/github.com/modern-go/reflect2/*.s \
    "$SRC/vendor/github.com/modern-go/reflect2/"
  rm -f "$SRC"/vendor/github.com/modern-go/reflect2/*_test.go
  t "generate pkg/generated/openapi (not in the tarball)"
  (cd "$SRC" && PATH=/usr/lib/go-1.19/bin:$PATH GOCACHE=$W/gocache GOFLAGS= GOPROXY=off nice -n 19 make gen_openapi \
    >"$CACHE/logs/gen-openapi.log" 2>&1)
fi
t "go build"
for bin in $BINS; do
  [ -x "$B/$bin" ] || SRC=$SRC GP=$W/gopath GOCACHE=$W/gocache "$HERE/build.sh" "$bin"
done
fi
t "images"
if [ ! -f "$IMG/$PY_IMAGE_TAR" ]; then
  # full python3 (the stdlib: asyncio, zipimport...), not python3-minimal; libstdc++6 for torch's
  # wheels, which the tests mount from the host venv instead of baking into an image
  nice -n 19 mmdebstrap --variant=essential --include=python3,coreutils,procps,libstdc++6 \
    --dpkgopt='path-exclude=/usr/share/{doc,man,locale,info}/*' bookworm "$W/python-rootfs.tar" "$MIRROR" \
    >"$CACHE/logs/mmdebstrap.log" 2>&1
  python3 "$HERE/mkimage.py" "$W/python-rootfs.tar" "$PY_IMAGE" "$IMG/$PY_IMAGE_TAR.part" --cmd python3
  mv "$IMG/$PY_IMAGE_TAR.part" "$IMG/$PY_IMAGE_TAR"
  rm -f "$IMG/python-image.tar"   # an older image of an earlier harness version
fi
if [ ! -f "$IMG/pause-image.tar" ]; then
  mkdir -p "$W/pause" && gcc -Os -static -o "$W/pause/pause" "$HERE/images/pause.c" && strip "$W/pause/pause"
  tar -C "$W/pause" -cf "$W/pause-rootfs.tar" --owner=0 --group=0 pause
  python3 "$HERE/mkimage.py" "$W/pause-rootfs.tar" localhost/pause:3.2 "$IMG/pause-image.tar.part" --entrypoint /pause
  mv "$IMG/pause-image.tar.part" "$IMG/pause-image.tar"
fi
# the build tree (source, Go build cache: ~3 GB) is not needed to run
rm -rf "$W"
echo "$K8S_VERSION" > "$CACHE/.complete"
t "done in $(( $(date +%s) - T0 ))s: $(du -sh "$CACHE" | cut -f1) in $CACHE"

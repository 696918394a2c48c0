#!/bin/bash
# Start a real single-node Kubernetes v1.20.2 on this machine (build it first with build-all.sh):
#   etcd 3.4 (Debian) + kube-apiserver + kube-controller-manager + kube-scheduler + kubelet (built from Debian's
#   source package) + containerd 1.6 / runc 1.1 (Debian), bridge CNI; the node advertises $FAKE_GPUS nvidia.com/gpu.
# usage: [NODES=2] start-k8s.sh [--no-node] [--nodes 2]   (--no-node: control plane only;
#   NODES=2 / --nodes 2: a second node $N2_NAME (default neo-k8s-n2) with its own containerd, bridge, subnet, kubelet)
# Then: export KUBECONFIG=$K8S_RUN/pki/admin.kubeconfig (default /var/tmp/neo-k8s/pki/admin.kubeconfig)
set -euo pipefail
. "$(dirname "$0")/common.sh"
L=$S/logs; FAKE_GPUS=${FAKE_GPUS:-8}
NODE=1
while [ $# -gt 0 ]; do case $1 in --no-node) NODE=0;; --nodes) NODES=$2; shift;; --nodes=*) NODES=${1#*=};;
  *) echo "unknown argument $1" >&2; exit 2;; esac; shift; done
if [ "$NODE" = 0 ]; then NODES=1; fi; export NODES
# The kubelet listens on 127.0.0.1 only and the apiserver reaches it by the node's Hostname address,
# so the node name must resolve to loopback.
NODE_NAME=${NODE_NAME:-$(hostname)}
[[ "$(getent ahostsv4 "$NODE_NAME" 2>/dev/null)" == 127.* ]] || NODE_NAME=localhost
[ -x "$B/kube-apiserver" ] || { echo "no binaries in $B: run build-all.sh first" >&2; exit 1; }
T0=$(date +%s)
"$HERE/stop-k8s.sh" >/dev/null 2>&1 || true        # leftovers of an earlier run
"$HERE/gen-pki.sh" >/dev/null
write_conf
rm -rf "$ETCD_DIR" "$S/kubelet" "$S/cni-ipam" "$S/apiserver-certs" "$S/pids" "$L" "$S2/kubelet" "$S2/cni-ipam"
mkdir -p "$L" "$S/pids" "$S/kubelet" "$S/containerd"
if [ "$NODES" = 2 ]; then mkdir -p "$S2/kubelet" "$S2/containerd"; fi
export PATH=$B:/usr/lib/cni:$PATH
launch() { local n=$1; shift; setsid "$@" >"$L/$n.log" 2>&1 </dev/null & echo $! >"$S/pids/$n.pid"; }
waitfor() { # name timeout cmd...
  local n=$1 t=$2; shift 2
  for ((i=0; i<t*4; i++)); do "$@" >/dev/null 2>&1 && return 0; sleep 0.25
    kill -0 "$(cat $S/pids/$n.pid 2>/dev/null)" 2>/dev/null || { echo "$n died; tail of $L/$n.log:"; tail -20 "$L/$n.log"; return 1; }
  done; echo "timeout waiting for $n; tail of $L/$n.log:"; tail -20 "$L/$n.log"; return 1; }
TOKEN=$(head -1 "$P/tokens.csv" | cut -d, -f1)
api() { curl -sf --cacert "$P/ca.crt" -H "Authorization: Bearer $TOKEN" "https://127.0.0.1:6443$1" "${@:2}"; }

launch etcd etcd --name neo-k8s --data-dir "$ETCD_DIR" \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
  --initial-cluster neo-k8s=http://127.0.0.1:2380 --initial-cluster-state new \
  --max-request-bytes 10485760 --quota-backend-bytes 4294967296
waitfor etcd 30 curl -sf http://127.0.0.1:2379/health

# The apiserver reaches a kubelet by the node's Hostname address (the kubelet rejects loopback --node-ip), so node 2's
# name must resolve to $N2_IP for the apiserver: it runs in its own mount namespace whose /etc/hosts has that line
# (the machine's /etc/hosts is not touched).
APISERVER_WRAP=()
if [ "$NODES" = 2 ] && [[ "$(getent ahostsv4 "$N2_NAME" 2>/dev/null | awk '{print $1; exit}')" != "$N2_IP" ]]; then
  { cat /etc/hosts; echo "$N2_IP $N2_NAME"; } > "$S/apiserver-hosts"
  APISERVER_WRAP=(unshare --mount --propagation private sh -c 'mount --bind "$0" /etc/hosts && exec "$@"' "$S/apiserver-hosts")
fi
launch kube-apiserver "${APISERVER_WRAP[@]}" kube-apiserver --etcd-servers=http://127.0.0.1:2379 \
  --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port=6443 --insecure-port=0 \
  --cert-dir="$S/apiserver-certs" --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
  --client-ca-file="$P/ca.crt" --token-auth-file="$P/tokens.csv" --authorization-mode=RBAC \
  --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" \
  --api-audiences=https://kubernetes.default.svc.cluster.local \
  --service-cluster-ip-range=10.96.0.0/16 --allow-privileged=true \
  --kubelet-preferred-address-types=Hostname,InternalIP --profiling=false \
  --endpoint-reconciler-type=none
waitfor kube-apiserver 60 api /readyz

KC=$P/admin.kubeconfig
launch kube-controller-manager kube-controller-manager --kubeconfig="$KC" \
  --authentication-kubeconfig="$KC" --authorization-kubeconfig="$KC" --leader-elect=false \
  --bind-address=127.0.0.1 --secure-port=10257 --port=0 --cert-dir="$S/kcm-certs" \
  --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" \
  --cluster-signing-cert-file="$P/ca.crt" --cluster-signing-key-file="$P/ca.key" \
  --use-service-account-credentials=false --allocate-node-cidrs=false --profiling=false
launch kube-scheduler kube-scheduler --kubeconfig="$KC" \
  --authentication-kubeconfig="$KC" --authorization-kubeconfig="$KC" --leader-elect=false \
  --bind-address=127.0.0.1 --secure-port=10259 --port=0 --cert-dir="$S/sched-certs" --profiling=false

startcd() { # name config sock
  launch "$1" containerd --config "$2"; }
images() { # containerd-name sock
  local sock=$2 spec; for spec in "pause-image.tar localhost/pause:3.2" "$PY_IMAGE_TAR $PY_IMAGE"; do
    set -- $spec   # images persist in the containerd root across runs; import only when missing
    ctr -a "$sock" -n k8s.io images ls -q | grep -qx "$2" || ctr -a "$sock" -n k8s.io images import "$IMG/$1" >>"$L/images.log" 2>&1
  done; }
startkubelet() { # name config rootdir sock nodename
  launch "$1" kubelet --config="$2" --kubeconfig="$KC" \
    --container-runtime=remote --container-runtime-endpoint="unix://$4" --image-service-endpoint="unix://$4" \
    --root-dir="$3" --cert-dir="$3/pki" --hostname-override="$5" \
    --pod-infra-container-image=localhost/pause:3.2 --oom-score-adj=0 --v=1; }
nodeready() { api "/api/v1/nodes/$1" | python3 -c 'import json,sys; n=json.load(sys.stdin); c={x["type"]:x["status"] for x in n["status"]["conditions"]}; t=[x["key"] for x in n["spec"].get("taints",[])]; sys.exit(0 if c.get("Ready")=="True" and not t else 1)'; }
# fake GPUs: an extended resource on the node's status (the documented way to advertise one without a device plugin)
patchgpus() { api "/api/v1/nodes/$1/status" -X PATCH -H 'Content-Type: application/json-patch+json' \
    -d "[{\"op\":\"add\",\"path\":\"/status/capacity/nvidia.com~1gpu\",\"value\":\"$FAKE_GPUS\"}]" >/dev/null; }
gpus() { api "/api/v1/nodes/$1" | python3 -c "import json,sys; n=json.load(sys.stdin); sys.exit(0 if n['status'].get('allocatable',{}).get('nvidia.com/gpu')=='$FAKE_GPUS' else 1)"; }
if [ $NODE = 1 ]; then
  launch containerd containerd --config "$C/containerd.toml"
  if [ "$NODES" = 2 ]; then
    # node 2's cgroup root (the kubelet requires it to exist); its pods go under /$N2_CGROUP/kubepods, not /kubepods
    for c in $CG_CTRLS; do d=/sys/fs/cgroup/$c/$N2_CGROUP; mkdir -p "$d"
      if [ $c = cpuset ]; then cat /sys/fs/cgroup/cpuset/cpuset.cpus > "$d/cpuset.cpus"; cat /sys/fs/cgroup/cpuset/cpuset.mems > "$d/cpuset.mems"; fi
    done
    launch containerd-n2 containerd --config "$C2/containerd.toml"
  fi
  waitfor containerd 30 ctr -a "$SOCK" version
  images containerd "$SOCK"
  startkubelet kubelet "$C/kubelet.yaml" "$S/kubelet" "$SOCK" "$NODE_NAME"
  if [ "$NODES" = 2 ]; then
    waitfor containerd-n2 30 ctr -a "$SOCK2" version
    images containerd-n2 "$SOCK2"
    startkubelet kubelet-n2 "$C2/kubelet.yaml" "$S2/kubelet" "$SOCK2" "$N2_NAME"
    # pod traffic between the two bridges is routed by the host (both bridges carry their gateway address)
    sysctl -qw net.ipv4.ip_forward=1
    for r in "-s $POD_SUBNET -d $POD_SUBNET2" "-s $POD_SUBNET2 -d $POD_SUBNET"; do
      iptables -C FORWARD $r -m comment --comment neo-k8s-n2 -j ACCEPT 2>/dev/null || iptables -I FORWARD $r -m comment --comment neo-k8s-n2 -j ACCEPT
    done
  fi
  waitfor kubelet 90 nodeready "$NODE_NAME"; patchgpus "$NODE_NAME"
  if [ "$NODES" = 2 ]; then waitfor kubelet-n2 90 nodeready "$N2_NAME"; patchgpus "$N2_NAME"; fi
  waitfor kubelet 30 gpus "$NODE_NAME"     # the kubelet copies capacity to allocatable on its next status update
  if [ "$NODES" = 2 ]; then waitfor kubelet-n2 30 gpus "$N2_NAME"; fi
fi
# the default service account (made by the controller-manager) must exist before pods can be admitted
waitfor kube-controller-manager 60 api /api/v1/namespaces/default/serviceaccounts/default
NODELIST=$NODE_NAME; if [ "$NODES" = 2 ]; then NODELIST="$NODE_NAME + $N2_NAME"; fi
echo "neo-k8s up in $(( $(date +%s) - T0 ))s (nodes $NODELIST, $FAKE_GPUS nvidia.com/gpu each): export KUBECONFIG=$KC  (logs: $L)"

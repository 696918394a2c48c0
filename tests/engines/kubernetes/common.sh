# sourced by the k8s scripts: where things live
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
K8S_VERSION=1.20.2
# built once per machine, keyed by version (binaries + images; ~350 MB once the build tree is removed)
CACHE=${K8S_CACHE:-/var/cache/jupyter-neo/k8s-$K8S_VERSION}
B=${K8S_BIN:-$CACHE/bin}; IMG=$CACHE/images
R=${K8S_RUN:-/var/tmp/neo-k8s}          # per-machine pki, configs and runtime state
S=$R/state; P=$R/pki; C=$R/conf
# the pods' image: Debian + python3 + the C++ runtime (what torch wheels need from the system);
# bump the tag when its contents change, so an older image in a node's containerd is not reused
PY_IMAGE=localhost/neo-python:v2; PY_IMAGE_TAR=python-image-v2.tar
ETCD_DIR=${ETCD_DIR:-/dev/shm/neo-k8s-etcd}
SOCK=$S/containerd/containerd.sock
BRIDGE=${K8S_BRIDGE:-neok8s0}; POD_SUBNET=${K8S_POD_SUBNET:-10.88.0.0/16}
# optional second node (NODES=2): its own containerd (root, state, socket), CNI bridge + pod subnet, kubelet
# (root dir, address, ports, cgroup root); its name resolves to N2_IP only inside the apiserver's mount namespace
NODES=${NODES:-1}
N2_NAME=${NODE2_NAME:-neo-k8s-n2}; N2_IP=${NODE2_IP:-127.0.0.2}; N2_PORT=${NODE2_PORT:-11250}; N2_HZPORT=${NODE2_HEALTHZ_PORT:-11248}
S2=$S/n2; C2=$C/n2; SOCK2=$S2/containerd/containerd.sock
BRIDGE2=${K8S_BRIDGE2:-neok8s1}; POD_SUBNET2=${K8S_POD_SUBNET2:-10.89.0.0/16}
N2_CGROUP=${NODE2_CGROUP:-neo-k8s-n2}     # kubelet cgroupRoot /$N2_CGROUP (node 1 keeps /kubepods)
CG_CTRLS="blkio cpu cpuacct cpuset devices freezer memory pids systemd"
# the Debian mirror this machine already uses (never written down here)
debian_mirror() {
  local u
  u=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null)
  [ -n "$u" ] || u=$(awk '$1=="deb" && $3 ~ /^bookworm$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
  echo "$u"
}
# per-run config files, with this run's paths
write_node_conf() {  # statedir confdir sock bridge subnet netname [other node's pod subnet]
  local st=$1 cf=$2 sock=$3 br=$4 sub=$5 net=$6 routes=""
  # isGateway gives the bridge its gateway address but adds no route in the pod: a pod reaches the other node's
  # pod subnet through its bridge's gateway (the host routes between the bridges)
  [ -n "${7:-}" ] && routes=", \"routes\": [{\"dst\": \"$7\"}]"
  mkdir -p "$cf/cni"
  cat > "$cf/containerd.toml" <<TOML
version = 2
root = "$st/containerd/root"
state = "$st/containerd/state"
[grpc]
  address = "$sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:3.2"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  # the sandbox lacks CAP_SYS_RESOURCE: a negative oom_score_adj (pause: -998) fails in runc's nsexec
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$cf/cni"
TOML
  cat > "$cf/cni/10-$net.conflist" <<JSON
{"cniVersion": "0.4.0", "name": "$net", "plugins": [{"type": "bridge", "bridge": "$br", "isGateway": true,
 "ipMasq": false, "hairpinMode": true,
 "ipam": {"type": "host-local", "dataDir": "$st/cni-ipam", "ranges": [[{"subnet": "$sub"}]]$routes}}]}
JSON
}
write_conf() {
  mkdir -p "$C"
  cp "$HERE/conf/kubelet.yaml" "$C/kubelet.yaml"
  if [ "$NODES" != 2 ]; then write_node_conf "$S" "$C" "$SOCK" "$BRIDGE" "$POD_SUBNET" neo-k8s
  else
    write_node_conf "$S" "$C" "$SOCK" "$BRIDGE" "$POD_SUBNET" neo-k8s "$POD_SUBNET2"
    mkdir -p "$C2"
    sed -e "s/^address: .*/address: $N2_IP/" -e "s/^port: .*/port: $N2_PORT/" \
        -e "s/^healthzBindAddress: .*/healthzBindAddress: $N2_IP/" -e "s/^healthzPort: .*/healthzPort: $N2_HZPORT/" \
        "$HERE/conf/kubelet.yaml" > "$C2/kubelet.yaml"
    echo "cgroupRoot: /$N2_CGROUP" >> "$C2/kubelet.yaml"
    write_node_conf "$S2" "$C2" "$SOCK2" "$BRIDGE2" "$POD_SUBNET2" neo-k8s-n2 "$POD_SUBNET"
  fi
}

#!/usr/bin/env bash
# tests/engines/slurm/stop.sh - stop what start.sh started, by PID only (never by name).
#   (default)   stop every process in the node namespaces (slurmd, slurmstepd, job tasks),
#               slurmctld, munged (only if start.sh started it); delete the netns/veth/bridge
#   --keep-net  leave namespaces/bridge in place (slightly faster next start)
#   --purge     also delete $SLURM_RUN (state, logs, spool, generated configs)
# Same knobs as start.sh: SLURM_RUN, SLURM_CONF_DIR, SLURM_NS_PREFIX, SLURM_BRIDGE.
# Safe to run when nothing is running; always exits 0 unless a process refuses SIGKILL.
set -uo pipefail
RUN=${SLURM_RUN:-/var/tmp/jupyter-neo-slurm}
CONF_DIR=${SLURM_CONF_DIR:-$RUN/etc}
NS_PREFIX=${SLURM_NS_PREFIX:-neoslurm-n}
BR=${SLURM_BRIDGE:-neoslurm0}
KEEP_NET=0; PURGE=0
for a in "$@"; do
  case $a in
    --keep-net) KEEP_NET=1 ;;
    --purge) PURGE=1 ;;
    *) echo "usage: $0 [--keep-net] [--purge]" >&2; exit 2 ;;
  esac
done
log() { echo "[slurm-stop $(date +%T)] $*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root"; exit 3; }

alive() { local p; [ -s "$1" ] || return 1; p=$(cat "$1")
  [ -d "/proc/$p" ] && [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ] &&
    ! grep -qs '^State:.*Z' "/proc/$p/status"; }
running() { local st; st=$(awk '/^State:/{print $2}' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]; }
wait_gone() { # wait_gone SECONDS PID...
  local t=$(( $1 * 10 )); shift
  for _ in $(seq "$t"); do
    # a zombie counts as gone: PID 1 in some sandboxes reaps orphans only every ~2 s
    local any=0; for p in "$@"; do running "$p" && any=1; done
    [ $any = 0 ] && return 0; sleep 0.1
  done
  for p in "$@"; do running "$p" && { log "SIGKILL $p"; kill -9 "$p" 2>/dev/null; }; done
  return 0
}
our_netns() { local f; for f in /run/netns/"${NS_PREFIX}"*; do
  [ -e "$f" ] && [[ "${f##*/"$NS_PREFIX"}" =~ ^[0-9]+$ ]] && echo "${f##*/}"; done; }

# 1. everything running inside our node namespaces: slurmd, slurmstepd, job tasks.
#    (`ip netns pids` lists the PIDs whose network namespace is that node's.)
pids=()
for ns in $(our_netns); do
  mapfile -t -O "${#pids[@]}" pids < <(ip netns pids "$ns" 2>/dev/null)
done
# plus any slurmd from our pid files whose namespace is already gone
for pf in "$RUN"/run/slurmd-*.pid; do alive "$pf" slurmd && pids+=("$(cat "$pf")"); done
if ((${#pids[@]})); then
  log "SIGTERM ${#pids[@]} processes in ${NS_PREFIX}* (slurmd, slurmstepd, tasks)"
  kill "${pids[@]}" 2>/dev/null
  wait_gone 10 "${pids[@]}"
fi

# 2. slurmctld (slurmscriptd is its child and exits with it); shutdown takes up to ~5-10 s
if alive "$RUN/run/slurmctld.pid" slurmctld; then
  p=$(cat "$RUN/run/slurmctld.pid"); log "SIGTERM slurmctld $p"
  kill "$p"; wait_gone 20 "$p"
fi

# 3. munged, only if start.sh started it
if [ -e "$RUN/run/munged.ours" ]; then
  if alive /run/munge/munged.pid munged; then
    p=$(cat /run/munge/munged.pid); log "SIGTERM munged $p"
    kill "$p"; wait_gone 5 "$p"
  fi
  rm -f "$RUN/run/munged.ours"
fi

# 4. network (veth pairs die with their netns)
if [ $KEEP_NET = 0 ]; then
  for ns in $(our_netns); do
    ip netns del "$ns"; rm -rf "/etc/netns/$ns"
  done
  if ip link show "$BR" >/dev/null 2>&1; then ip link del "$BR"; fi
  rmdir /etc/netns 2>/dev/null || true
  log "network removed"
fi

# 5. purge
if [ $PURGE = 1 ]; then
  for f in slurm.conf gres.conf cgroup.conf; do
    grep -qs 'jupyter-neo tests/engines/slurm/start.sh' "$CONF_DIR/$f" && rm -f "$CONF_DIR/$f"
  done
  rmdir "$CONF_DIR" 2>/dev/null || true
  case $RUN in /|/var|/var/tmp|/tmp|"") log "refusing to purge SLURM_RUN=$RUN" ;; *) rm -rf "$RUN" ;; esac
  log "purged $RUN"
fi
log "done"
exit 0

#!/usr/bin/env bash
# tests/engines/ssh/stop.sh - stop what start.sh started: every process in the neossh-* network
# namespaces (sshd, sessions, agents), by PID; then the namespaces, veths and bridges.
#   --purge  also delete $NEOSSH_RUN (keys, configs, logs, lease directories)
# Safe to run when nothing is running.
set -uo pipefail
RUN=${NEOSSH_RUN:-/var/tmp/neossh}
PURGE=0
[ "${1:-}" = --purge ] && PURGE=1
log() { echo "[neossh-stop $(date +%T)] $*" >&2; }
[ "$(id -u)" = 0 ] || { log "must run as root"; exit 3; }

running() { local st; st=$(awk '/^State:/{print $2}' "/proc/$1/status" 2>/dev/null) || return 1
  [ -n "$st" ] && [ "$st" != Z ]; }
our_netns() { local f; for f in /run/netns/neossh-*; do [ -e "$f" ] && echo "${f##*/}"; done; }

pids=()
for ns in $(our_netns); do mapfile -t -O "${#pids[@]}" pids < <(ip netns pids "$ns" 2>/dev/null); done
if ((${#pids[@]})); then
  log "SIGTERM ${#pids[@]} processes in neossh-*"
  kill "${pids[@]}" 2>/dev/null
  for _ in $(seq 50); do
    any=0; for p in "${pids[@]}"; do running "$p" && any=1; done
    [ $any = 0 ] && break; sleep 0.1
  done
  for p in "${pids[@]}"; do running "$p" && kill -9 "$p" 2>/dev/null; done
fi
for ns in $(our_netns); do ip netns del "$ns"; rm -rf "/etc/netns/$ns"; done
for br in neossh0 neossh1; do ip link show "$br" >/dev/null 2>&1 && ip link del "$br"; done
rmdir /etc/netns 2>/dev/null || true
if [ $PURGE = 1 ]; then
  case $RUN in /|/var|/var/tmp|/tmp|"") log "refusing to purge NEOSSH_RUN=$RUN" ;; *) rm -rf "$RUN" ;; esac
fi
log "done"
exit 0

#!/usr/bin/env bash
# tests/engines/slurm/smoke.sh - quick shell-level check of the cluster from start.sh (needs >= 3
# nodes with gpu:8). Prints one PASS/FAIL line per check and "N passed, N failed"; exit 1 on a failure.
# The pytest suite (tests/test_slurm_harness.py) covers the same ground; this is for humans and CI logs.
# ok/bad always succeed, so `test && ok || bad` is a safe if-then-else here; the single-quoted
# bash -c body is expanded on the node, on purpose.
# shellcheck disable=SC2015,SC2016
set -uo pipefail
RUN=${SLURM_RUN:-/var/tmp/jupyter-neo-slurm}
export SLURM_CONF=${SLURM_CONF:-${SLURM_CONF_DIR:-$RUN/etc}/slurm.conf}
pass=0; fail=0
ok()  { echo "PASS $*"; pass=$((pass+1)); }
bad() { echo "FAIL $*"; fail=$((fail+1)); }
jid() { sed -n 's/.*Granted job allocation \([0-9]*\).*/\1/p'; }
TAG=smoke-$$
N=$(sinfo -h -N -o %N | wc -l)
[ "$N" -ge 3 ] && ok "3+ nodes ($N)" || bad "nodes=$N"
[ "$(sinfo -h -N -o %G | sort -u)" = "gpu:8" ] && ok "gres gpu:8 on all nodes" || bad "gres"
J1=$(salloc -N2 --gres=gpu:8 --no-shell -J "$TAG-a" 2>&1 | jid)
[ -n "$J1" ] && ok "salloc -N2 --gres=gpu:8 --no-shell -> job $J1" || bad "salloc"
out=$(srun --jobid="$J1" --overlap -N2 --ntasks-per-node=1 \
  bash -c 'echo $(hostname),$(getent hosts $(hostname) | cut -d" " -f1),$CUDA_VISIBLE_DEVICES' | sort)
[ "$(echo "$out" | cut -d, -f1 | sort -u | wc -l)" = 2 ] && ok "srun -N2 on 2 distinct hosts: ${out//$'\n'/ }" \
  || bad "srun hosts: $out"
[[ "$(echo "$out" | cut -d, -f2)" != *127.* && "$(echo "$out" | cut -d, -f2 | grep -c .)" = 2 ]] \
  && ok "each node resolves its own hostname to its bridge address" || bad "own-name resolution: $out"
[[ "$out" == *"0,1,2,3,4,5,6,7"* ]] && ok "CUDA_VISIBLE_DEVICES=0..7 in step" || bad "CVD: $out"
# gang: 2 held, ask for N-1 (> free nodes) -> must pend, and the free nodes stay idle
salloc -N$((N-1)) --gres=gpu:8 --no-shell -J "$TAG-gang" >/dev/null 2>&1 &
SP=$!
st=""; for _ in $(seq 30); do st=$(squeue -h -n "$TAG-gang" -o '%T %R'); [[ "$st" == *"(Resources)"* ]] && break; sleep 0.1; done
idle=$(sinfo -h -N -t idle -o %N | wc -l)
[[ "$st" == "PENDING (Resources)" ]] && ok "gang -N$((N-1)) pends: $st" || bad "gang state: $st"
[ "$idle" -ge $((N-2)) ] && ok "no partial allocation ($idle nodes still idle)" || bad "idle=$idle"
scancel -n "$TAG-gang"; wait $SP 2>/dev/null
salloc -N$((N+1)) --no-shell -J "$TAG-big" >/dev/null 2>&1 && bad "oversize accepted" \
  || ok "oversize -N$((N+1)) rejected at submit"
scancel "$J1"
for _ in $(seq 30); do [ -z "$(squeue -h -j "$J1" -t R 2>/dev/null)" ] && break; sleep 0.1; done
[ -z "$(squeue -h -j "$J1" -t R 2>/dev/null)" ] && ok "scancel $J1" || bad "scancel"
OUTD=$(mktemp -d)
B=$(sbatch --parsable -N2 --wrap 'srun hostname' -o "$OUTD/smoke-%j.out")
for _ in $(seq 100); do [ -z "$(squeue -h -j "$B" 2>/dev/null)" ] && break; sleep 0.1; done
got=$(sort "$OUTD/smoke-$B.out" 2>/dev/null | tr '\n' ' ')
[ "$(echo "$got" | wc -w)" = 2 ] && ok "sbatch -N2 --wrap 'srun hostname': $got" \
  || bad "sbatch: $(cat "$OUTD/smoke-$B.out" 2>/dev/null)"
rm -rf "$OUTD"
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]

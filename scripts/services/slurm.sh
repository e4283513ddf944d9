#!/usr/bin/env bash
# A single-node SLURM cluster on loopback, for the tests.
#
#   scripts/services/slurm.sh install   # apt-get slurm-wlm + munge, only if missing
#   scripts/services/slurm.sh start     # munged, slurmctld, slurmd as root, no systemd
#   scripts/services/slurm.sh status    # exit 0 when the node answers and is usable
#   scripts/services/slurm.sh stop      # cancel jobs, then stop what `start` started
#   scripts/services/slurm.sh env       # print `export SLURM_CONF=...` for a shell
#
# Everything (slurm.conf, munge key and socket, spool, logs, pid files) lives in
# .services/slurm/ under the repository, which git ignores. Nothing is written to /etc:
# client commands find the cluster through SLURM_CONF, which the tests set themselves.
# `stop` only signals the processes whose pid files `start` wrote.
#
# Environment: LAZYRASTER_SLURM_STATE (state directory), LAZYRASTER_SLURMCTLD_PORT
# (default 6817), LAZYRASTER_SLURMD_PORT (default 6818), LAZYRASTER_SLURM_PARTITION
# (default "debug").
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
STATE="${LAZYRASTER_SLURM_STATE:-$ROOT/.services/slurm}"
CTLD_PORT="${LAZYRASTER_SLURMCTLD_PORT:-6817}"
SLURMD_PORT="${LAZYRASTER_SLURMD_PORT:-6818}"
PARTITION="${LAZYRASTER_SLURM_PARTITION:-debug}"
CONF="$STATE/etc/slurm.conf"
RUN="$STATE/run"
LOG="$STATE/log"
MUNGE_SOCKET="$STATE/munge/munge.socket"
export SLURM_CONF="$CONF"

say() { printf 'slurm.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

have_binaries() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
    command -v sbatch >/dev/null && command -v munged >/dev/null
}

cmd_install() {
  if have_binaries; then
    say "slurm and munge are installed already"
    return 0
  fi
  [ "$(id -u)" = 0 ] || die "install needs root (apt-get)"
  # Keep the packages' maintainer scripts from starting daemons of their own: we run
  # ours from .services/slurm. The policy file is removed again if we created it.
  local policy=/usr/sbin/policy-rc.d created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
  fi
  local status=0
  export DEBIAN_FRONTEND=noninteractive
  { apt-get update -qq && apt-get install -y -qq --no-install-recommends slurm-wlm munge \
      >/dev/null; } || status=$?
  if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi
  [ "$status" = 0 ] || die "apt-get install slurm-wlm munge failed ($status)"
  have_binaries || die "slurm-wlm/munge installed but slurmctld, slurmd, sbatch or munged is missing"
  say "installed: $(slurmctld -V) and munge $(munged --version 2>&1 | head -1)"
}

pid_alive() {  # pid_alive NAME: the pid file exists and names a live process called NAME
  local file="$RUN/$1.pid" pid
  [ -s "$file" ] || return 1
  pid="$(cat "$file")"
  [ -d "/proc/$pid" ] || return 1
  grep -q "$1" "/proc/$pid/comm" 2>/dev/null
}

write_config() {
  local host node_line
  host="$(hostname -s)"
  mkdir -p "$STATE/etc" "$STATE/spool/ctld" "$STATE/spool/d" "$STATE/munge" "$RUN" "$LOG"
  chmod 700 "$STATE/munge"
  # `slurmd -C` reports the real topology and memory; a node configured with more
  # than it has is drained, and without RealMemory every --mem request is rejected.
  node_line="$(slurmd -C | head -1)"
  case "$node_line" in NodeName=*) ;; *) die "slurmd -C failed: $node_line" ;; esac
  node_line="${node_line/NodeName=$host /NodeName=$host NodeAddr=127.0.0.1 NodeHostname=$host }"
  cat >"$CONF" <<CONF
# Written by scripts/services/slurm.sh: a single-node cluster on loopback for the tests.
ClusterName=lazyraster
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$MUNGE_SOCKET
StateSaveLocation=$STATE/spool/ctld
SlurmdSpoolDir=$STATE/spool/d
SlurmctldPidFile=$RUN/slurmctld.pid
SlurmdPidFile=$RUN/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=600
$node_line State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
}

start_munged() {
  if pid_alive munged; then return 0; fi
  local key="$STATE/munge/munge.key"
  if [ ! -s "$key" ]; then
    dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
    chmod 400 "$key"
  fi
  munged --force --key-file="$key" --socket="$MUNGE_SOCKET" --pid-file="$RUN/munged.pid" \
    --log-file="$LOG/munged.log" --seed-file="$STATE/munge/munged.seed"
  for _ in $(seq 50); do [ -S "$MUNGE_SOCKET" ] && return 0; sleep 0.1; done
  die "munged did not create $MUNGE_SOCKET; see $LOG/munged.log"
}

cmd_start() {
  have_binaries || die "slurm is not installed; run: $0 install"
  [ "$(id -u)" = 0 ] || die "start needs root (slurmd runs jobs as their user)"
  if pid_alive slurmctld && pid_alive slurmd && pid_alive munged; then
    say "already running (SLURM_CONF=$CONF)"
    return 0
  fi
  write_config
  start_munged
  pid_alive slurmctld || slurmctld -f "$CONF" -c  # -c: no jobs from an earlier run
  pid_alive slurmd || slurmd -f "$CONF"
  local state=""
  for _ in $(seq 150); do
    state="$(sinfo -h -o %t 2>/dev/null | head -1 || true)"
    case "$state" in idle | mix | alloc) break ;; esac
    sleep 0.2
  done
  case "$state" in
    idle | mix | alloc) say "node $(hostname -s) is $state; export SLURM_CONF=$CONF" ;;
    *) say "node state is '${state:-unknown}' after 30 s"; tail -n 20 "$LOG"/slurm*.log >&2
       exit 1 ;;
  esac
}

stop_pid() {  # stop_pid NAME: TERM the process of our pid file, KILL it after 10 s
  local file="$RUN/$1.pid" pid
  pid_alive "$1" || { rm -f "$file"; return 0; }
  pid="$(cat "$file")"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 100); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
  if [ -d "/proc/$pid" ]; then kill -KILL "$pid" 2>/dev/null || true; fi
  rm -f "$file"
  say "stopped $1 ($pid)"
}

cmd_stop() {
  if [ -f "$CONF" ] && pid_alive slurmctld; then
    # Job processes outlive slurmd: cancel every job and wait for them to end first.
    local jobs
    jobs="$(squeue -h -o %i 2>/dev/null || true)"
    if [ -n "$jobs" ]; then
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      for _ in $(seq 100); do
        [ -z "$(squeue -h -o %i -t PD,R,CG,CF,S 2>/dev/null || true)" ] && break
        sleep 0.2
      done
      say "cancelled jobs: $(echo $jobs)"
    fi
  fi
  stop_pid slurmd
  stop_pid slurmctld
  stop_pid munged
}

cmd_status() {
  local ok=0 name
  for name in munged slurmctld slurmd; do
    if pid_alive "$name"; then echo "$name: running (pid $(cat "$RUN/$name.pid"))"
    else echo "$name: not running"; ok=3; fi
  done
  if [ "$ok" = 0 ]; then
    echo "SLURM_CONF=$CONF"
    sinfo -N -o '%N %t %c %m %P' || ok=3
    squeue || ok=3
  fi
  return "$ok"
}

case "${1:-}" in
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 install|start|stop|status|env" >&2; exit 2 ;;
esac

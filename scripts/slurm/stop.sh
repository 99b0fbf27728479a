#!/usr/bin/env bash
# scripts/slurm/stop.sh - tear down a cluster started by scripts/slurm/start.sh.
# Usage: stop.sh [DIR] [--purge]     (default DIR: ${TMPDIR:-/tmp}/cryocloud-slurm)
#   Cancels all jobs, stops slurmctld/slurmd, kills leftover slurmstepd/job
#   processes that belong to DIR, stops the private munged.  Only PIDs taken
#   from DIR's pid files (checked against /proc/PID/cmdline) or processes whose
#   cwd/open files are inside DIR are signalled.  --purge also deletes DIR.
#   Idempotent: safe to call when nothing is running.
set -uo pipefail

DIR=${TMPDIR:-/tmp}/cryocloud-slurm
PURGE=0
for a in "$@"; do
    case "$a" in --purge) PURGE=1;; *) DIR=$a;; esac
done
case "$DIR" in /*) ;; *) DIR="$(pwd)/$DIR";; esac
DIR=${DIR%/}
PATH=/usr/sbin:/sbin:$PATH
export SLURM_CONF="$DIR/slurm.conf"
log() { echo "[slurm/stop.sh] $*" >&2; }

pid_if_ours() {  # pid_if_ours PIDFILE STRING -> prints pid if alive & cmdline contains STRING
    local f=$1 s=$2 p
    [ -s "$f" ] || return 1
    p=$(cat "$f" 2>/dev/null) || return 1
    [ -r "/proc/$p/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$p/cmdline" | grep -qF -- "$s" || return 1
    # zombies count as gone
    [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" = Z ] && return 1
    echo "$p"
}
alive() { [ -d "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }
wait_gone() {  # wait_gone SECONDS PID...
    local t=$1; shift
    local end=$(( $(date +%s) + t )) p any
    while :; do
        any=0
        for p in "$@"; do alive "$p" && any=1; done
        [ $any = 0 ] && return 0
        [ "$(date +%s)" -ge "$end" ] && return 1
        sleep 0.2
    done
}

CTLD=$(pid_if_ours "$DIR/slurmctld.pid" "$SLURM_CONF" || true)
SLURMD=$(pid_if_ours "$DIR/slurmd.pid" "$SLURM_CONF" || true)
MUNGED=$(pid_if_ours "$DIR/munge/munged.pid" "$DIR/munge/" || true)

# 1. cancel every job while the daemons still run, so job processes get killed
if [ -n "$CTLD" ] && [ -f "$SLURM_CONF" ]; then
    ids=$(squeue -h -o %F 2>/dev/null | sort -u)
    if [ -n "$ids" ]; then
        log "cancelling jobs: $(echo $ids)"
        # shellcheck disable=SC2086
        scancel $ids 2>/dev/null || true
        end=$(( $(date +%s) + 30 ))
        while [ -n "$(squeue -h -o %i 2>/dev/null)" ] && [ "$(date +%s)" -lt "$end" ]; do sleep 0.5; done
    fi
    # 2. orderly shutdown of slurmctld + slurmd
    scontrol shutdown >/dev/null 2>&1 || true
fi
pids=(); [ -n "$CTLD" ] && pids+=("$CTLD"); [ -n "$SLURMD" ] && pids+=("$SLURMD")
if [ ${#pids[@]} -gt 0 ]; then
    if ! wait_gone 20 "${pids[@]}"; then
        log "daemons still alive, SIGTERM ${pids[*]}"
        kill -TERM "${pids[@]}" 2>/dev/null
        wait_gone 10 "${pids[@]}" || { log "SIGKILL ${pids[*]}"; kill -KILL "${pids[@]}" 2>/dev/null; }
    fi
fi

# 3. leftover slurmstepd (survive slurmd shutdown) and their job processes.
#    A slurmstepd of this cluster has its cwd or an open fd inside DIR.
for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$(cat "$d/comm" 2>/dev/null)" = slurmstepd ] || continue
    mine=0
    case "$(readlink "$d/cwd" 2>/dev/null)" in "$DIR"|"$DIR"/*) mine=1;; esac
    if [ $mine = 0 ]; then
        for fd in "$d"/fd/*; do
            case "$(readlink "$fd" 2>/dev/null)" in "$DIR"/*) mine=1; break;; esac
        done
    fi
    [ $mine = 1 ] || continue
    sid=$(awk '{print $6}' "$d/stat" 2>/dev/null)
    kids=$(ps -eo pid=,sid= | awk -v s="$sid" -v me="$p" '$2==s && $1!=me {print $1}')
    log "killing leftover slurmstepd $p and job processes: $(echo $kids)"
    if [ -n "$kids" ]; then
        # shellcheck disable=SC2086
        kill -TERM $kids 2>/dev/null
        # shellcheck disable=SC2086
        wait_gone 5 $kids || kill -KILL $kids 2>/dev/null
    fi
    kill -KILL "$p" 2>/dev/null   # slurmstepd ignores SIGTERM without slurmd
done

# 4. private munged
if [ -n "$MUNGED" ]; then
    kill -TERM "$MUNGED" 2>/dev/null
    wait_gone 10 "$MUNGED" || kill -KILL "$MUNGED" 2>/dev/null
fi

rm -f "$DIR/slurmctld.pid" "$DIR/slurmd.pid" "$DIR/munge/munged.pid" "$DIR/munge/munge.socket" \
      "$DIR/munge/munge.socket.lock" 2>/dev/null
if [ $PURGE = 1 ]; then
    case "$DIR" in /|/tmp|/root|/home|"") log "refusing to purge $DIR";; *) rm -rf "$DIR"; log "removed $DIR";; esac
fi
log "stopped ($DIR)"
exit 0

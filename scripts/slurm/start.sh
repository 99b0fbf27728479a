#!/usr/bin/env bash
# scripts/slurm/start.sh - start a throw-away single-node Slurm (Debian slurm-wlm 22.05) on 127.0.0.1
# for cryocloud's tests and benchmarks.  No systemd, no slurmdbd, no cgroups.  Must run as root.
# (Adapted from the team's notes/slurm/start-slurm.sh; stop it with scripts/slurm/stop.sh DIR.)
#
# Usage: start.sh [DIR]        (default: ${TMPDIR:-/tmp}/cryocloud-slurm)
#   Everything (config, munge key/socket, state, spool, logs, pid files) lives
#   in DIR.  The script wipes DIR's contents first, so each run is a fresh cluster.
#   Afterwards:  source DIR/env.sh   (exports SLURM_CONF) and use sbatch/squeue/...
#
# Environment knobs (all optional):
#   SLURM_AUTH=munge|none   munge (default): private munged on DIR/munge/munge.socket
#                           none: auth/none + cred/none, no munge at all (works in 22.05;
#                           re-check on newer Slurm releases)
#   SLURM_NCPUS=N           CPUs advertised for the node (default: nproc). May exceed
#                           the real core count (config_overrides) for more concurrency.
#   SLURM_REALMEM=MB        RealMemory (default: what `slurmd -C` reports)
#   SLURMCTLD_PORT, SLURMD_PORT   default: two free ports picked from 17000-29999 (never the default
#                           6817/6818), so parallel test runs do not collide; written to DIR/env.sh
#   SLURM_MINJOBAGE=300     seconds a finished job stays visible in scontrol/squeue
#   SLURM_START_TIMEOUT=60  seconds to wait for the node to become idle
#   SLURM_SKIP_INSTALL=1    never call apt-get
#   SLURM_PROBE=1           after the node is idle, submit `sbatch --wrap true` and wait
#                           for COMPLETED (default 1; costs ~3 s because slurmctld's
#                           scheduler only starts ~3 s after launch). 0 = skip.
set -euo pipefail

DIR=${1:-${TMPDIR:-/tmp}/cryocloud-slurm}
AUTH=${SLURM_AUTH:-munge}
CTLD_PORT=${SLURMCTLD_PORT:-}
D_PORT=${SLURMD_PORT:-}
MINJOBAGE=${SLURM_MINJOBAGE:-300}
TIMEOUT=${SLURM_START_TIMEOUT:-60}
T_START=$(date +%s.%N)

log() { echo "[slurm/start.sh] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (slurmd has to run as root)"
case "$AUTH" in munge|none) ;; *) die "SLURM_AUTH must be munge or none";; esac
case "$DIR" in /*) ;; *) DIR="$(pwd)/$DIR";; esac

# ---------------------------------------------------------------- packages
need=()
for b in slurmctld slurmd sbatch squeue scontrol sinfo scancel sacct; do
    command -v "$b" >/dev/null 2>&1 || need+=("$b")
done
if [ "$AUTH" = munge ]; then
    command -v munged >/dev/null 2>&1 || need+=(munged)
fi
if [ ${#need[@]} -gt 0 ]; then
    [ "${SLURM_SKIP_INSTALL:-0}" = 1 ] && die "missing: ${need[*]} (and SLURM_SKIP_INSTALL=1)"
    log "installing slurm-wlm munge (missing: ${need[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q slurm-wlm munge
fi
PATH=/usr/sbin:/sbin:$PATH   # daemons live in /usr/sbin

# ---------------------------------------------------------------- refuse to clobber a live cluster
alive_with() {  # alive_with PIDFILE STRING : pid alive and its cmdline contains STRING
    local f=$1 s=$2 p
    [ -s "$f" ] || return 1
    p=$(cat "$f" 2>/dev/null) || return 1
    [ -r "/proc/$p/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$p/cmdline" | grep -qF -- "$s"
}
if alive_with "$DIR/slurmctld.pid" "$DIR/slurm.conf" || alive_with "$DIR/slurmd.pid" "$DIR/slurm.conf" \
   || alive_with "$DIR/munge/munged.pid" "$DIR/munge/"; then
    die "a cluster is already running in $DIR; run scripts/slurm/stop.sh $DIR first"
fi

port_busy() {  # 0 if something listens on 127.0.0.1:$1
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
free_port() {  # a port nobody listens on, from a range away from Slurm's defaults
    local p i
    for i in $(seq 200); do
        p=$(( 17000 + (RANDOM * 32768 + RANDOM) % 13000 ))
        [ "$p" = "${CTLD_PORT:-}" ] && continue
        port_busy "$p" || { echo "$p"; return 0; }
    done
    return 1
}
[ -n "$CTLD_PORT" ] || CTLD_PORT=$(free_port) || die "no free port found for slurmctld"
[ -n "$D_PORT" ] || D_PORT=$(free_port) || die "no free port found for slurmd"
for p in "$CTLD_PORT" "$D_PORT"; do
    port_busy "$p" && die "port $p already in use (set SLURMCTLD_PORT/SLURMD_PORT)"
done

# ---------------------------------------------------------------- fresh directory
mkdir -p "$DIR"
rm -rf "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/munge" "$DIR/slurm.conf" "$DIR/env.sh" \
       "$DIR"/*.pid
# munged refuses world-writable parents without the sticky bit (and group/other
# access to the key); slurmstepd/job processes need to traverse DIR.
chmod 755 "$DIR"
mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log"
chmod 755 "$DIR/state" "$DIR/spool"
chmod 1777 "$DIR/log"      # job output of non-root users may be written here

# ---------------------------------------------------------------- munge
if [ "$AUTH" = munge ]; then
    install -d -m 755 "$DIR/munge"       # socket dir must be o+x (munged checks)
    if command -v mungekey >/dev/null 2>&1; then
        mungekey --create --keyfile="$DIR/munge/munge.key"
    else
        dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    fi
    chmod 600 "$DIR/munge/munge.key"     # must not be group/other readable
    munged --key-file="$DIR/munge/munge.key" \
           --socket="$DIR/munge/munge.socket" \
           --pid-file="$DIR/munge/munged.pid" \
           --log-file="$DIR/munge/munged.log" \
           --seed-file="$DIR/munge/munged.seed" \
        || { cat "$DIR/munge/munged.log" >&2 || true; die "munged failed"; }
    end=$(( $(date +%s) + TIMEOUT ))  # the socket appears once munged is up: a loaded machine takes longer
    until [ -S "$DIR/munge/munge.socket" ] || [ "$(date +%s)" -ge "$end" ]; do sleep 0.1; done
    munge -n -S "$DIR/munge/munge.socket" | unmunge -S "$DIR/munge/munge.socket" >/dev/null \
        || die "munge self-test failed"
    AUTH_LINES="AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket"
else
    AUTH_LINES="AuthType=auth/none
CredType=cred/none"
fi

# ---------------------------------------------------------------- node sizing
NCPUS=${SLURM_NCPUS:-$(nproc)}
if [ -n "${SLURM_REALMEM:-}" ]; then
    REALMEM=$SLURM_REALMEM
else
    REALMEM=$(slurmd -C 2>/dev/null | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' | head -1)
    [ -n "$REALMEM" ] || REALMEM=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 ))
fi

# ---------------------------------------------------------------- slurm.conf
cat >"$DIR/slurm.conf" <<EOF
# generated by cryocloud scripts/slurm/start.sh
ClusterName=ci
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$CTLD_PORT
SlurmdPort=$D_PORT
$AUTH_LINES
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$DIR/log/jobcomp.txt
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
DependencyParameters=kill_invalid_depend
SlurmdParameters=config_overrides
MpiDefault=none
MailProg=/bin/true
ReturnToService=2
MinJobAge=$MINJOBAGE
KillWait=5
InactiveLimit=0
SlurmdTimeout=300
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$NCPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$NCPUS ThreadsPerCore=1 RealMemory=$REALMEM State=UNKNOWN
# Real preemption for the requeue tests: a job in 'urgent' that needs the node cancels what runs in 'debug'
# (its end state is PREEMPTED, as on a facility's preemptible partition).
PreemptType=preempt/partition_prio
PreemptMode=CANCEL
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=urgent Nodes=localhost MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
EOF
{ printf 'export SLURM_CONF=%q\n' "$DIR/slurm.conf"
  printf 'export SLURMCTLD_PORT=%q SLURMD_PORT=%q\n' "$CTLD_PORT" "$D_PORT"; } >"$DIR/env.sh"
export SLURM_CONF="$DIR/slurm.conf"

# ---------------------------------------------------------------- daemons
# Both daemonize (no -D) and write their pid files.  -c = cold start (no old state).
slurmctld -c -f "$SLURM_CONF" || die "slurmctld failed to start"
# -N localhost: do not derive the node name from `hostname`.
slurmd -N localhost -f "$SLURM_CONF" || die "slurmd failed to start"

state=""
deadline=$(( $(date +%s) + TIMEOUT ))
while [ "$(date +%s)" -lt "$deadline" ]; do
    state=$(sinfo -h -N -n localhost -p debug -o %T 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.2
done
if [ "$state" != idle ]; then
    log "node state '$state' after ${TIMEOUT}s; last log lines:"
    tail -n 30 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
    exit 1
fi
if [ "${SLURM_PROBE:-1}" = 1 ]; then
    # (sbatch --wait polls at 2,4,8.. s intervals, so poll scontrol ourselves)
    pj=$(sbatch --parsable -Q -J probe -o /dev/null --wrap true) || die "probe sbatch failed"
    pst=""
    while [ "$(date +%s)" -lt "$deadline" ]; do
        pst=$(scontrol -o show job "$pj" 2>/dev/null | grep -oE 'JobState=[A-Z_]+' | cut -d= -f2)
        case "$pst" in COMPLETED) break;; FAILED|CANCELLED|TIMEOUT|NODE_FAIL|BOOT_FAIL|OUT_OF_MEMORY) break;; esac
        sleep 0.2
    done
    if [ "$pst" != COMPLETED ]; then
        tail -n 30 "$DIR/log/slurmctld.log" "$DIR/log/slurmd.log" >&2 || true
        die "probe job $pj ended as '$pst'"
    fi
fi
log "cluster up in $DIR (auth=$AUTH cpus=$NCPUS mem=${REALMEM}M) after $(awk -v a="$T_START" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')s"
log "use: source $DIR/env.sh"
echo "export SLURM_CONF=$DIR/slurm.conf"

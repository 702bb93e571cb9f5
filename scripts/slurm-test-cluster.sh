#!/usr/bin/env bash
# A single-node Slurm cluster on this machine, for the Slurm spawner's tests.
#
#   scripts/slurm-test-cluster.sh start    install what is missing (apt), write the configuration,
#                                          start munged, slurmctld and slurmd, wait until the node
#                                          takes jobs
#   scripts/slurm-test-cluster.sh stop     stop the three daemons (jobs still queued are lost)
#   scripts/slurm-test-cluster.sh status   exit 0 if the cluster answers and its node takes jobs
#
# `start` is idempotent and safe to run concurrently (a lock serialises callers): when the
# cluster already runs with this configuration it returns at once. Runs as root on Debian 12 (no
# systemd needed). Accounting is off, so jobs are watched with squeue/scontrol, never sacct.
#
# The cluster, named `jhrs-test`, has one node (this machine's short host name) that claims
# $JHRS_SLURM_CPUS CPUs whatever the hardware has, so parallel tests do not queue behind each
# other, and two partitions:
#   debug   the default; runs jobs at once
#   closed  State=DOWN: accepts jobs and never runs them (tests of jobs that never start)
#
# /etc/slurm/slurm.conf is written only when it is missing or was written by this script (it
# then starts with the marker line below); an operator's own configuration is never replaced.
#
# Environment:
#   JHRS_SLURM_CPUS   CPUs the node claims (default 16)
set -euo pipefail

MARKER="# Written by jupyterhub-rs scripts/slurm-test-cluster.sh: test cluster, not for real use."
CONF=/etc/slurm/slurm.conf
LOG_DIR=/var/log/slurm
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid
CPUS="${JHRS_SLURM_CPUS:-16}"
APT_PACKAGES=(munge slurmctld slurmd slurm-client)

log() { printf '[slurm-test-cluster] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ "$(id -u)" == 0 ]] || die "must run as root (it installs packages and starts daemons)"

node_name() { hostname -s; }

install_packages() {
    local missing=() pkg
    for pkg in "${APT_PACKAGES[@]}"; do
        if ! dpkg -s "$pkg" 2>/dev/null | grep '^Status: install ok installed$' >/dev/null; then
            missing+=("$pkg")
        fi
    done
    if ((${#missing[@]} == 0)); then
        return
    fi
    log "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q </dev/null >&2
    # The packages' own start scripts need systemd, which these machines lack: keep them from
    # starting anything (policy-rc.d), we start the daemons ourselves below.
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        created_policy=1
    fi
    local rc=0
    apt-get install -y -q --no-install-recommends "${missing[@]}" </dev/null >&2 || rc=$?
    if ((created_policy)); then
        rm -f "$policy"
    fi
    ((rc == 0)) || die "apt-get install ${missing[*]} failed"
}

memory_mb() {
    local kb
    kb="$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)"
    # Leave some for the machine itself; the exact figure only has to be below the real one.
    echo $((kb / 1024 * 3 / 4))
}

config_text() {
    local node
    node="$(node_name)"
    cat <<EOF
$MARKER
ClusterName=jhrs-test
SlurmctldHost=$node
AuthType=auth/munge
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
# No cgroups and no systemd on these machines.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# The node claims the CPUs configured below, not what the hardware has.
SlurmdParameters=config_overrides
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
# Finished jobs stay visible to scontrol for five minutes (their state and reason).
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=60
NodeName=$node CPUs=$CPUS RealMemory=$(memory_mb) State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
PartitionName=closed Nodes=$node Default=NO MaxTime=INFINITE State=DOWN
EOF
}

# Writes the configuration; prints "changed" when it differs from what was there.
write_config() {
    local wanted
    wanted="$(config_text)"
    if [[ -f "$CONF" ]]; then
        if ! head -n 1 "$CONF" | grep -qxF "$MARKER"; then
            die "$CONF exists and was not written by this script; not replacing it"
        fi
        if [[ "$(cat "$CONF")" == "$wanted" ]]; then
            return
        fi
    fi
    mkdir -p "$(dirname "$CONF")"
    printf '%s\n' "$wanted" >"$CONF.tmp"
    chmod 644 "$CONF.tmp"
    mv "$CONF.tmp" "$CONF"
    echo changed
}

pid_alive() {
    local file="$1" pid
    [[ -f "$file" ]] || return 1
    pid="$(cat "$file" 2>/dev/null)" || return 1
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null
}

# Waits up to $2 tenths of a second for command $1 (a function name) to succeed.
wait_for() {
    local what="$1" tenths="$2" i
    for ((i = 0; i < tenths; i++)); do
        if "$what"; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

munge_works() { munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    local key=/etc/munge/munge.key
    if [[ ! -s "$key" ]]; then
        log "creating the munge key"
        if command -v mungekey >/dev/null 2>&1; then
            mungekey --create --keyfile="$key" >&2
        else
            dd if=/dev/urandom bs=1 count=1024 of="$key" status=none
        fi
    fi
    chown munge:munge "$key"
    chmod 400 "$key"
    install -d -o munge -g munge -m 0755 /run/munge
    install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
    if pid_alive "$MUNGE_PID" && munge_works; then
        return
    fi
    log "starting munged"
    rm -f /run/munge/munge.socket.2 /run/munge/munge.socket.2.lock "$MUNGE_PID"
    runuser -u munge -- /usr/sbin/munged 9>&- </dev/null >&2
    wait_for munge_works 100 || die "munged does not answer"
}

ctld_answers() { scontrol ping 2>/dev/null | grep -q 'is UP'; }

node_state() { sinfo -h -n "$(node_name)" -o '%t' 2>/dev/null | head -n 1; }

node_idle() {
    local state
    state="$(node_state)"
    # idle, mix, alloc: the node takes jobs. A `*` suffix means not responding.
    [[ "$state" =~ ^(idle|mix|mixed|alloc|allocated)$ ]]
}

start_slurm() {
    local changed="$1"
    install -d -m 0755 "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd
    if [[ -n "$changed" ]] && (pid_alive "$CTLD_PID" || pid_alive "$SLURMD_PID"); then
        log "configuration changed; restarting the Slurm daemons"
        stop_slurm
    fi
    if ! pid_alive "$CTLD_PID"; then
        log "starting slurmctld (log: $LOG_DIR/slurmctld.log)"
        slurmctld 9>&- </dev/null >&2
    fi
    wait_for ctld_answers 300 || {
        tail -n 20 "$LOG_DIR/slurmctld.log" >&2 || true
        die "slurmctld does not answer"
    }
    if ! pid_alive "$SLURMD_PID"; then
        log "starting slurmd (log: $LOG_DIR/slurmd.log)"
        slurmd 9>&- </dev/null >&2
    fi
    if ! wait_for node_idle 150; then
        # A node left down or drained by an earlier run comes back on request.
        log "node state '$(node_state)'; resuming it"
        scontrol update NodeName="$(node_name)" State=RESUME >&2 2>/dev/null || true
        wait_for node_idle 300 || {
            tail -n 20 "$LOG_DIR/slurmd.log" >&2 || true
            die "the node does not take jobs (state '$(node_state)')"
        }
    fi
}

stop_pidfile() {
    local file="$1" name="$2" pid i
    pid_alive "$file" || return 0
    pid="$(cat "$file")"
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 300; i++)); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    log "$name did not stop within 30 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

stop_slurm() {
    stop_pidfile "$SLURMD_PID" slurmd
    stop_pidfile "$CTLD_PID" slurmctld
}

start() {
    install_packages
    local changed
    changed="$(write_config)"
    start_munge
    start_slurm "$changed"
    log "cluster up: node $(node_name), partitions: $(sinfo -h -o '%P' | tr '\n' ' ')"
}

stop() {
    stop_slurm
    stop_pidfile "$MUNGE_PID" munged
}

status() {
    command -v scontrol >/dev/null 2>&1 || return 1
    pid_alive "$CTLD_PID" && pid_alive "$SLURMD_PID" && ctld_answers && node_idle
}

main() {
    local cmd="${1:-}"
    case "$cmd" in
        start | stop)
            exec 9>/run/jhrs-slurm-test-cluster.lock
            flock -w 600 9 || die "timed out waiting for another run of this script"
            "$cmd"
            ;;
        status) status ;;
        *)
            printf 'usage: %s start|stop|status\n' "$0" >&2
            exit 2
            ;;
    esac
}

main "$@"

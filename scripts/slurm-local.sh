#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine (munged + slurmctld + slurmd, no accounting,
# no systemd, no cgroups), for testing the workflow's SLURM profile.  Root only.
#
#   scripts/slurm-local.sh start    install the Debian packages if missing, write slurm.conf,
#                                   start the daemons, wait until the node is idle
#   scripts/slurm-local.sh stop     stop the daemons this script started (by recorded PID)
#   scripts/slurm-local.sh status   exit 0 when all three daemons run and the node answers
#
# Every step is idempotent: `start` on a running cluster only checks it, `stop` on a stopped
# one does nothing.  Exit codes: 0 ok, 1 failed, 2 usage, 3 not root or packages unavailable
# (the test suite skips on 3).
#
# Daemons run in the foreground (-D/-F) in the background of this script, with all stdio
# redirected: a daemon holding the caller's stdout would keep `... | tail` or a CI log pipe
# open forever.  PIDs go to $RUN_DIR; `stop` kills exactly those PIDs, nothing by name.
# Details and pitfalls: docs/cluster.md.

set -euo pipefail
set +m # no job control: background daemons stay non-leaders, so setsid execs in place (PID kept)

RUN_DIR=${SLURM_LOCAL_RUN_DIR:-/run/slurm-local}
LOG_DIR=${SLURM_LOCAL_LOG_DIR:-/var/log/slurm}
CONF=/etc/slurm/slurm.conf
MARKER="# written by actpat scripts/slurm-local.sh"
PACKAGES=(slurmctld slurmd slurm-client munge)
DAEMONS=(munged slurmctld slurmd) # start order; stopped in reverse
START_TIMEOUT_S=20

say() { echo "slurm-local: $*" >&2; }

# A PID is alive when its /proc entry exists, is not a zombie and runs the expected program
# (guards against PID reuse after a reboot or a crash).
alive() { # alive NAME
    local f="$RUN_DIR/$1.pid" pid state comm
    [[ -s $f ]] || return 1
    pid=$(<"$f")
    [[ -r /proc/$pid/stat ]] || return 1
    comm=$(</proc/"$pid"/comm) || return 1
    [[ $comm == "$1" ]] || return 1
    state=$(sed -E 's/^[0-9]+ \(.*\) ([A-Z]).*/\1/' /proc/"$pid"/stat 2>/dev/null) || return 1
    [[ $state != Z && $state != X ]]
}

node_idle() { sinfo -h -o %T 2>/dev/null | grep -Eqx 'idle|mixed|allocated'; }

all_up() {
    local d
    for d in "${DAEMONS[@]}"; do alive "$d" || return 1; done
    node_idle
}

need_root() {
    if [[ $(id -u) -ne 0 ]]; then
        say "must run as root (it installs packages and starts system daemons)"
        exit 3
    fi
}

install_packages() {
    local missing=0 b
    for b in /usr/sbin/munged /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sinfo /usr/bin/sbatch; do
        [[ -x $b ]] || missing=1
    done
    ((missing)) || return 0
    if ! command -v apt-get >/dev/null; then
        say "slurm is not installed and apt-get is unavailable; install ${PACKAGES[*]} by hand"
        exit 3
    fi
    say "installing ${PACKAGES[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    # The packages' postinst scripts try to start the services and fail at policy-rc.d in
    # containers; that is harmless (nothing is started, the daemons are started below).
    if ! apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >"$LOG_DIR/apt.log" 2>&1; then
        apt-get update -q >>"$LOG_DIR/apt.log" 2>&1 || true
        if ! apt-get install -y -q --no-install-recommends "${PACKAGES[@]}" >>"$LOG_DIR/apt.log" 2>&1; then
            tail -n 20 "$LOG_DIR/apt.log" >&2
            say "apt-get could not install ${PACKAGES[*]} (log: $LOG_DIR/apt.log)"
            exit 3
        fi
    fi
}

write_conf() {
    local host cpus mem_mb
    host=$(hostname -s)
    cpus=$(nproc)
    mem_mb=$(($(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 - 1024))
    if [[ -e $CONF ]] && ! grep -qxF "$MARKER" "$CONF"; then
        say "$CONF exists and was not written by this script; refusing to overwrite it"
        say "(move it away, or point SLURM_CONF elsewhere, to use the local test cluster)"
        exit 1
    fi
    mkdir -p "$(dirname "$CONF")"
    # MinJobAge (seconds a finished job stays visible to squeue) must be at least 3x the
    # plugin's --slurm-init-seconds-before-status-checks, or the plugin falls back to sacct,
    # which cannot work without accounting.  DefMemPerCPU keeps a bare sbatch from taking
    # the whole node.  CR_Core_Memory lets jobs share the node by cores and memory.
    cat >"$CONF.tmp" <<EOF
$MARKER
# One-node test cluster: $host, $cpus CPUs, ${mem_mb} MB.  No accounting (sacct does not
# work; use squeue as the status command), no cgroups, no systemd.
ClusterName=localcluster
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=300
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE DefMemPerCPU=512 State=UP
EOF
    mv "$CONF.tmp" "$CONF"
}

show_logs() {
    local f
    for f in munged.out slurmctld.out slurmctld.log slurmd.out slurmd.log; do
        [[ -s $LOG_DIR/$f ]] || continue
        echo "---- $LOG_DIR/$f (last 25 lines)" >&2
        tail -n 25 "$LOG_DIR/$f" >&2
    done
}

launch() { # launch NAME CMD...: start CMD in the background, record its PID
    local name=$1
    shift
    setsid "$@" </dev/null >"$LOG_DIR/$name.out" 2>&1 &
    echo $! >"$RUN_DIR/$name.pid"
}

wait_for() { # wait_for SECONDS CMD...: poll CMD every 0.2 s
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
}

start() {
    need_root
    mkdir -p "$RUN_DIR" "$LOG_DIR"
    if all_up; then
        say "already running (node $(hostname -s) $(sinfo -h -o %T))"
        return 0
    fi
    install_packages
    write_conf
    mkdir -p /run/munge /var/spool/slurmctld /var/spool/slurmd
    if [[ ! -s /etc/munge/munge.key ]]; then
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key /run/munge
    chmod 0400 /etc/munge/munge.key
    chmod 0755 /run/munge

    if ! alive munged; then
        rm -f /run/munge/munge.socket.2
        launch munged setpriv --reuid=munge --regid=munge --init-groups /usr/sbin/munged -F
        if ! wait_for 10 test -S /run/munge/munge.socket.2; then
            show_logs
            say "munged did not create /run/munge/munge.socket.2 within 10 s"
            exit 1
        fi
    fi
    # -c clears saved job state: each start gives an empty queue.
    alive slurmctld || launch slurmctld /usr/sbin/slurmctld -D -c
    alive slurmd || launch slurmd /usr/sbin/slurmd -D
    if ! wait_for "$START_TIMEOUT_S" all_up; then
        show_logs
        say "node not idle after ${START_TIMEOUT_S} s (sinfo: $(sinfo -h -o '%T %E' 2>&1 | head -n 1))"
        exit 1
    fi
    say "running: node $(hostname -s) $(sinfo -h -o '%T, %c CPUs, %m MB'), partition debug"
}

stop() {
    local i name pid
    for ((i = ${#DAEMONS[@]} - 1; i >= 0; i--)); do
        name=${DAEMONS[i]}
        if alive "$name"; then
            pid=$(<"$RUN_DIR/$name.pid")
            kill "$pid" 2>/dev/null || true
            if ! wait_for 15 eval "! alive $name"; then
                say "$name ($pid) ignored SIGTERM for 15 s; sending SIGKILL"
                kill -9 "$pid" 2>/dev/null || true
                wait_for 5 eval "! alive $name" || say "$name ($pid) is still alive"
            fi
            say "stopped $name ($pid)"
        fi
        rm -f "$RUN_DIR/$name.pid"
    done
}

status() {
    local d rc=0
    for d in "${DAEMONS[@]}"; do
        if alive "$d"; then
            echo "$d: running (pid $(<"$RUN_DIR/$d.pid"))"
        else
            echo "$d: stopped"
            rc=3
        fi
    done
    if ((rc == 0)); then
        sinfo -h -o 'node %N: %T, %c CPUs, %m MB, partition %P' || rc=3
    fi
    return $rc
}

case ${1:-} in
start) start ;;
stop) stop ;;
status) status ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac

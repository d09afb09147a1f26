#!/usr/bin/env bash
# A one-node SLURM cluster on this (Debian 12) machine, for trying the `launcher=slurm` path for real:
# this host is the only node and its controller, one partition, no accounting database (as on
# clusters where sacct is absent or off), no cgroups (they are not usable in most containers).
# Run as root; rerunning it restarts the daemons with a freshly written config.
#   sudo tools/slurm_single_node.sh          # then: sinfo; srun hostname
#   sudo tools/slurm_single_node.sh stop     # stops the daemons this script started
# A sweep on it (no GPU here):
#   python -m hardsamples.train experiment=demo launcher=slurm hydra.launcher.gres=null \
#       hydra.launcher.cpus_per_task=1 hydra.launcher.mem_gb=1 hydra.launcher.timeout_min=10 ...
set -euo pipefail

CONF_DIR=/etc/slurm
STATE_DIR=/var/spool/slurmctld
SPOOL_DIR=/var/spool/slurmd
LOG_DIR=/var/log/slurm

stop() {
    # Only the daemons whose pid files this script's config names.
    for pidfile in /run/slurmd.pid /run/slurmctld.pid /run/munge/munged.pid; do
        if [[ -s $pidfile ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
            kill "$(cat "$pidfile")"
        fi
    done
    sleep 1
}

if [[ ${1:-} == stop ]]; then
    stop
    exit 0
fi

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge
fi
stop

# munge: the key every SLURM daemon and client authenticates with.
mkdir -p /etc/munge /run/munge /var/lib/munge /var/log/munge
[[ -s /etc/munge/munge.key ]] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge
chmod 0700 /etc/munge /var/lib/munge /var/log/munge
chmod 0755 /run/munge
chmod 0400 /etc/munge/munge.key
runuser -u munge -- munged --force
munge -n | unmunge >/dev/null   # fails here if munge does not work

# slurm.conf: the node's real CPU count and memory as slurmd sees them (RealMemory in MB, a little
# left for the system so slurmd does not drain the node for having less than it declares).
HOST=$(hostname -s)
CPUS=$(nproc --all)
MEM_MB=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
mkdir -p "$CONF_DIR" "$STATE_DIR" "$SPOOL_DIR" "$LOG_DIR"
chown slurm:slurm "$STATE_DIR" "$LOG_DIR"
cat > "$CONF_DIR/slurm.conf" <<EOF
ClusterName=single
SlurmctldHost=$HOST
AuthType=auth/munge
CredType=cred/munge
SlurmUser=slurm
SlurmdUser=root
StateSaveLocation=$STATE_DIR
SlurmdSpoolDir=$SPOOL_DIR
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
# No cgroups (not usable in a container): processes are tracked by their parent ids, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
# No accounting: sacct has nothing to read, as on clusters without slurmdbd.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
# Short timeouts: a killed job's processes are gone within seconds.
KillWait=5
InactiveLimit=0
MinJobAge=30
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
# select/cons_tres wants a gres.conf only with GRES; none here.

slurmctld -i      # -i: ignore state left by an earlier run (a fresh cluster each time)
slurmd
for _ in $(seq 30); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
        break
    fi
    sleep 1
done
scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true
sinfo
srun -N1 -t 1 hostname

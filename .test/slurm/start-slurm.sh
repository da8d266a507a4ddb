#!/usr/bin/env bash
# A one-node SLURM on this machine, from Debian's packages: munged, slurmctld and
# slurmd, the node `localhost` with the machine's own CPUs and memory (as
# `slurmd -C` reports them) and no GPUs. Run as root (CI runs as root); safe to run
# again: it installs what is missing, rewrites the configuration only when it
# changed, and starts only the daemons that are not running.
#
# No accounting database (slurmdbd): the slurm executor plugin needs none when its
# status command is squeue, which the CI profile sets; finished jobs stay visible
# to squeue and `scontrol show job` for MinJobAge, and every finished job is
# written to $PATCHPNP_SLURM_STATE/jobcomp.txt (jobcomp/filetxt).
#
#   .test/slurm/start-slurm.sh          # start (or check) the cluster
#   .test/slurm/start-slurm.sh --stop   # stop the daemons this script started
set -euo pipefail

STATE=${PATCHPNP_SLURM_STATE:-/var/lib/patchpnp-slurm}
CONF=/etc/slurm/slurm.conf
MARK="# Written by patchpnp's .test/slurm/start-slurm.sh"
export DEBIAN_FRONTEND=noninteractive

die() {
	echo "start-slurm: $*" >&2
	exit 1
}

running() { # pidfile
	[[ -s $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null
}

stop() {
	local pidfile
	for pidfile in "$STATE/run/slurmd.pid" "$STATE/run/slurmctld.pid"; do
		if running "$pidfile"; then
			kill "$(cat "$pidfile")"
			for _ in $(seq 50); do running "$pidfile" || break; sleep 0.2; done
		fi
	done
}

[[ $(id -u) == 0 ]] || die "run me as root (the daemons and /etc/slurm need it)"

if [[ ${1:-} == --stop ]]; then
	stop
	exit 0
fi

# -- packages --------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
	|| ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
	echo "start-slurm: installing slurmctld, slurmd, slurm-client and munge"
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

# -- munge -----------------------------------------------------------------------
if [[ ! -s /etc/munge/munge.key ]]; then
	mungekey --create --keyfile /etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
	runuser -u munge -- /usr/sbin/munged
	for _ in $(seq 50); do
		munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break
		sleep 0.2
	done
	munge -n </dev/null | unmunge >/dev/null || die "munged does not answer"
fi

# -- configuration ---------------------------------------------------------------
# The node as slurmd sees it: CPUs, sockets, cores, threads and RealMemory.
hardware=$(slurmd -C | head -n 1 | sed 's/^NodeName=[^ ]*//')
[[ $hardware == *CPUs=* && $hardware == *RealMemory=* ]] || die "slurmd -C: $hardware"
mkdir -p "$STATE"/{ctld,spool,log,run} /etc/slurm
new=$(mktemp)
cat >"$new" <<EOF
$MARK; do not edit.
ClusterName=patchpnp
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No systemd and no cgroup delegation in a CI container: plain process tracking.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
# CPUs and memory are both consumed: a job that asks for more than the node has is
# refused at submission, as on a real cluster.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# No slurmdbd: squeue and scontrol show a finished job for an hour, and
# jobcomp.txt keeps one line per finished job.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$STATE/jobcomp.txt
MinJobAge=3600
ReturnToService=2
SlurmdTimeout=300
# No GresTypes and no Gres on the node: this cluster has no GPUs.
NodeName=localhost NodeAddr=127.0.0.1 $hardware State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
if [[ -e $CONF ]] && ! head -n 1 "$CONF" | grep -qF "$MARK"; then
	rm -f "$new"
	die "$CONF exists and was not written by this script; not touching it"
fi
if ! cmp -s "$new" "$CONF"; then
	stop
	install -m 0644 "$new" "$CONF"
	echo "start-slurm: wrote $CONF"
fi
rm -f "$new"

# -- daemons ---------------------------------------------------------------------
if ! running "$STATE/run/slurmctld.pid"; then
	slurmctld -i # -i: ignore state saved by an earlier cluster with another config
fi
if ! running "$STATE/run/slurmd.pid"; then
	slurmd -N localhost
fi

# -- wait for the node -----------------------------------------------------------
state=""
for _ in $(seq 120); do
	state=$(sinfo -h -n localhost -o %T 2>/dev/null || true)
	case $state in
	idle | mixed | allocated) break ;;
	drain* | down*) scontrol update NodeName=localhost State=RESUME 2>/dev/null || true ;;
	esac
	sleep 0.5
done
case $state in
idle | mixed | allocated) ;;
*)
	tail -n 30 "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" >&2 || true
	die "the node localhost is '$state', not idle, after 60 s"
	;;
esac
echo "start-slurm: SLURM $(sinfo -V | cut -d' ' -f2) is up: $(sinfo -h -o '%P %D %T %c CPUs %m MB' | head -n 1)"

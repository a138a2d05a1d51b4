#!/bin/bash
# srun-poweroff.sh NAME SCENARIO: what srun and Slurm do when a node of a
# running step is powered off, with production Slurm timeouts. Results and
# their reading: doc/vcluster.md, "srun when a node of its step is powered
# off". Needs root and `make deps`; takes ~8 minutes (Slurm's DOWN after
# SlurmdTimeout=300); several scenarios can run side by side.
#   A plain   B srun -K   C srun --wait=5   D SIGKILL srun   E SIGTERM srun
#   F SIGKILL srun in an --exclusive allocation
# VCLUSTER names the vcluster binary (default: vcluster on PATH); TIMEOUTS=fast
# uses fast Slurm timeouts (DOWN after ~8 s).
sub() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a-b}'; }
N=$1; SC=$2
V="${VCLUSTER:-vcluster} --name $N"; S=/tmp/vcluster-$N/shared
$V up -n 3 --slurm-timeouts ${TIMEOUTS:-production} >/dev/null || exit 1
ALLOC="-N3 -k"; [ $SC = F ] && ALLOC="-N3 -k --exclusive"
J=$($V exec node1 -- salloc $ALLOC --no-shell 2>&1 | sed -n 's/.*Granted job allocation //p')
cd $S
OPT=""; [ $SC = B ] && OPT="-K"; [ $SC = C ] && OPT="--wait=5"
log() { echo "$(printf '%7s' $(sub "$(date +%s.%N)" "$T0")) $*"; }
TASK='touch task.$SLURM_PROCID; if [ $SLURM_PROCID = 0 ] && [ -n "$EXIT75" ]; then while [ ! -e go ]; do sleep 0.05; done; exit 75; fi; exec sleep 900'
EX=""; case $SC in A|B|C) EX=1;; esac
( $V exec node1 -- env EXIT75=$EX srun --jobid=$J $OPT -N2 -n2 -w node2,node3 sh -c "$TASK" > srun.out 2>&1; echo "$? $(date +%s.%N)" > srun.rc ) &
while [ ! -e task.1 ]; do sleep 0.05; done
$V poweroff node3 >/dev/null; T0=$(date +%s.%N); log poweroff
sleep 1
case $SC in
  A|B|C) touch go; log "node2 task told to exit 75";;
  D|F) $V exec node1 -- pkill -KILL -x srun; log "SIGKILL srun";;
  E) $V exec node1 -- pkill -TERM -x srun; log "SIGTERM srun";;
esac
plain() { local t=$(date +%s.%N); local o; o=$(timeout -s KILL $1 $V exec node1 -- srun --jobid=$J -N2 -n2 --exclude=node3 hostname 2>&1 | tr '\n' ' '); log "plain step --exclude=node3 (limit $1 s): rc=$? [$o] took $(sub "$(date +%s.%N)" "$t")"; }
case $SC in D|F) sleep 1; plain 10; $V exec node1 -- scancel $J.0; log "scancel $J.0"; sleep 5; log "steps after scancel: $($V exec head -- squeue -h -s -j $J -o %i | tr '\n' ' ')"; plain 10;; esac
last=""; done_srun=""
for i in $(seq 1 300); do
  if [ -z "$done_srun" ] && [ -e srun.rc ]; then read rc t < srun.rc; log "srun returned rc=$rc at $(sub "$t" "$T0"): $(tr '\n' '|' < srun.out)"; done_srun=1; fi
  st="node3=$($V status | awk '$1=="node3"{print $4}') steps=[$($V exec head -- squeue -h -s -j $J -o %i | tr '\n' ' ')] job=[$($V exec head -- squeue -h -j $J -o '%T %N')]"
  [ "$st" != "$last" ] && log "$st"; last="$st"
  case "$st" in *DOWN*) if [ -z "$down" ]; then down=1; downi=$i; fi;; esac
  if [ -n "$down" ] && [ $((i - downi)) -ge 12 ] && [ -n "$done_srun" ]; then break; fi
  sleep 2
done
[ -z "$done_srun" ] && log "srun still running"
plain 15
log end
$V down

#!/bin/bash
# loop.sh DIR N MODE: see README.md. PKG_CONFIG_PATH defaults to /tmp/inst's.
set -u
dir=$1 n=$2 mode=$3 hang=0 fail=0
cd "$dir" || exit 2
export PKG_CONFIG_PATH=${PKG_CONFIG_PATH:-/tmp/inst/lib/pkgconfig}
scr=$(pkg-config --cflags --libs scr) || exit 2
examples=$(pkg-config --variable=prefix scr)/share/scr/examples
case $mode in
  plain)    mpicc.mpich -o app allreduce.c || exit 2 ;;
  skew)     mpicc.mpich -DSKEW -o app allreduce.c || exit 2 ;;
  linkonly) mpicc.mpich -DLINK_SCR -o app allreduce.c $scr || exit 2 ;;
  *)        mpicc.mpich -O2 -o app "$examples/test_api.c" $scr || exit 2 ;;
esac
case $mode in
  plain|skew|linkonly) cmd="./app" ;;
  *) cmd="./app --size 256k --times 1" ;;
esac
case $mode in
  scrcvar)   export MPIR_CVAR_NO_COLLECTIVE_FINALIZE=1 ;;
  nopreempt) export GODEBUG=asyncpreemptoff=1 ;;
  disabled)  export SCR_ENABLE=0 ;;
esac
for i in $(seq 1 "$n"); do
  rm -rf pfx && mkdir -p pfx
  SCR_PREFIX=$PWD/pfx SCR_FLUSH=0 SCR_COPY_TYPE=XOR SCR_JOB_ID=$mode$i.$$ \
    timeout -s KILL 25 srun --mpi=pmi2 -w node1,node2 -N2 -n2 $cmd > "out.$mode" 2>&1
  rc=$?
  if [ $rc = 137 ]; then
    hang=$((hang+1)); scancel -u "$(id -un)" 2>/dev/null
  elif [ $rc != 0 ]; then
    fail=$((fail+1)); tail -3 "out.$mode"
  fi
done
echo "mode=$mode runs=$n hangs=$hang fails=$fail"

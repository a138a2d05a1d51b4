#!/usr/bin/env python3
"""scr_example.py: a Python MPI program (mpi4py) that checkpoints through
scr-go's scr module, the API of LLNL SCR's Python module.

    mpirun -np 2 python3 scr_example.py [steps]

Each rank's checkpoint depends on (rank, step); on start the newest
checkpoint is read back and checked. Exit status 1 on a failure.
"""
import struct
import sys

from mpi4py import MPI

import scr

comm = MPI.COMM_WORLD
rank = comm.Get_rank()
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 3


def state(step):
    return struct.pack("<4096d", *(rank * 1e6 + step * 1e3 + i / 3.0 for i in range(4096)))


def fname(ckpt):
    return "%s/rank_%d.dat" % (ckpt, rank)


scr.config("SCR_FLUSH=0")
scr.init()
bad = 0
first = 1
name = scr.have_restart()
if name is not None:
    scr.start_restart()
    step = int(name.split(".")[1])
    try:
        with open(scr.route_file(fname(name)), "rb") as f:
            ok = f.read() == state(step)
    except OSError:
        ok = False
    if scr.complete_restart(ok):
        if rank == 0:
            print("restarted from", name, flush=True)
        first = step + 1
    else:
        bad += 1

for step in range(first, first + steps):
    ckpt = "ckpt.%d" % step
    scr.start_output(ckpt, scr.FLAG_CHECKPOINT)
    try:
        with open(scr.route_file(fname(ckpt)), "wb") as f:
            f.write(state(step))
        ok = True
    except OSError:
        ok = False
    if not scr.complete_output(ok):
        bad += 1
    if rank == 0:
        print("checkpoint", ckpt, "written", flush=True)
    if scr.should_exit():
        break

scr.finalize()
sys.exit(1 if bad else 0)

"""`taskset MASK cmd...` on the emulated phone: pins to the mask's CPUs that exist here (all if none do)."""
import os
import sys

mask, argv = int(sys.argv[1], 16), sys.argv[2:]
here = os.sched_getaffinity(0)
cpus = {c for c in here if mask >> c & 1} or here
os.sched_setaffinity(0, cpus)
os.execvp(argv[0], argv)

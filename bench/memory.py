#!/usr/bin/env python3
"""Resident memory of container supervisors, for bench/run.

    memory.py tupp-shim EXE PREFIX COUNT   every process whose /proc/PID/exe is EXE and whose
                                         container directory (argv[2]) is below PREFIX
    memory.py conmon PIDFILE...     the processes named in conmon's pidfiles

Prints one JSON line: per-process Rss and Pss (kB) from /proc/PID/smaps_rollup. Pss
splits shared pages among the processes mapping them, so sum(Pss)/count is the
amortized cost of one more container."""
import json
import os
import sys


def rollup(pid):
    values = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            parts = line.split()
            if parts[0] in ("Rss:", "Pss:"):
                values[parts[0][:-1].lower()] = int(parts[1])
    return values


def main():
    name = sys.argv[1]
    if name == "tupp-shim":
        exe, prefix, expected = sys.argv[2], sys.argv[3], int(sys.argv[4])
        pids = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if os.readlink(f"/proc/{entry}/exe") != exe:
                        continue
                    with open(f"/proc/{entry}/cmdline", "rb") as f:
                        argv = f.read().split(b"\0")
                    if len(argv) > 2 and argv[2].decode().startswith(prefix):
                        pids.append(int(entry))
                except OSError:
                    pass
        if len(pids) != expected:
            sys.exit(f"memory.py: expected {expected} supervisors running {exe}, found {len(pids)}")
    else:
        pids = [int(open(path).read().strip()) for path in sys.argv[2:]]
    samples = [rollup(pid) for pid in pids]
    print(json.dumps({"key": f"memory.{name}", "count": len(samples),
                      "rss_kb": [s["rss"] for s in samples], "pss_kb": [s["pss"] for s in samples]}))


main()

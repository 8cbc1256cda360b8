"""How busy the rest of the machine was while a server was measured.

On a shared machine another job's burst can cut a server's speed by 10x for a few seconds,
which no number of repetitions averages away when there are five of them. So each launch
measures the CPU time that neither the server's process tree nor the bench itself used (steal
time from the hypervisor included), as a share of all CPUs; a launch where it passes a
threshold is repeated, and before each launch the bench waits (boundedly) for a quiet moment.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass

from bench.servers import process_tree

CLK_TCK = os.sysconf("SC_CLK_TCK")
QUIET_WAIT_S = 30.0


@dataclass(frozen=True)
class Snapshot:
    busy_s: float  # all CPUs, all processes
    tree_s: float  # the server's process tree
    own_s: float  # this process
    at: float

    @classmethod
    def take(cls, root: int | None = None) -> Snapshot:
        pids = process_tree(root) if root else []
        tree = sum(_cpu_jiffies(pid) for pid in pids) / CLK_TCK
        return cls(_busy_jiffies() / CLK_TCK, tree, time.process_time(), time.monotonic())


def foreign_share(a: Snapshot, b: Snapshot) -> float:
    """CPU used by other processes between two snapshots, as a share of all CPUs (0..1)."""
    elapsed = (b.at - a.at) * (os.cpu_count() or 1)
    if elapsed <= 0:
        return 0.0
    other = (b.busy_s - a.busy_s) - (b.tree_s - a.tree_s) - (b.own_s - a.own_s)
    return max(0.0, other / elapsed)


def wait_for_quiet(threshold: float, max_wait: float = QUIET_WAIT_S) -> float:
    """Wait until one second passes with others below threshold; return seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < max_wait:
        before = Snapshot.take()
        time.sleep(1.0)
        if foreign_share(before, Snapshot.take()) < threshold:
            break
    return time.monotonic() - started


def _busy_jiffies() -> int:
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    # user nice system idle iowait irq softirq steal (guest time is already within user)
    return sum(fields[:8]) - fields[3] - fields[4]


def _cpu_jiffies(pid: int) -> int:
    with contextlib.suppress(OSError, IndexError, ValueError), open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime
    return 0


"""How many CPU cores this process may use and how many are idle: plain Linux facts, no torch, so a
torch-free start (sampling in numpy) can size its thread pool too."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path


def available_cores(cgroup: str = "/sys/fs/cgroup") -> int:
    """CPU cores this process may use: its affinity set, capped by a container's CPU quota."""
    try:
        cores = max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        cores = max(1, os.cpu_count() or 1)
    quota = cpu_quota(cgroup)
    return cores if quota is None else max(1, min(cores, math.ceil(quota)))


def cpu_quota(cgroup: str = "/sys/fs/cgroup") -> float | None:
    """Cores' worth of CPU time a cgroup allows (`docker --cpus 2`: 2.0), or None when unlimited.

    Affinity alone reports every core of the host inside such a container, and threads beyond the
    quota are throttled in turn.
    """
    for quota_file, period_file in (("cpu.max", None), ("cpu/cpu.cfs_quota_us", "cpu/cpu.cfs_period_us")):
        try:
            fields = Path(cgroup, quota_file).read_text(encoding="ascii").split()
            if period_file is not None:  # cgroup v1: two files, -1 for no quota
                fields.append(Path(cgroup, period_file).read_text(encoding="ascii").strip())
            if fields[0] in ("max", "-1"):
                return None
            return int(fields[0]) / int(fields[1])
        except (OSError, ValueError, IndexError, ZeroDivisionError):
            continue
    return None


def idle_cores(cores: int, busy: float | None, host_cores: int | None) -> int:
    """Of this process's `cores`, how many nobody else is using (at least 1).

    `busy` counts other runnable tasks on the whole host (`busy_cores`); when this process may use
    only some of the host's cores (affinity, a container), they are assumed spread evenly.
    """
    if busy is None:
        return cores
    share = min(1.0, cores / host_cores) if host_cores else 1.0
    return max(1, min(cores, int(cores - busy * share + 0.5)))


def busy_cores(loadavg: str = "/proc/loadavg") -> float | None:
    """How many cores other processes keep busy right now (None: unknown).

    On Linux: the tasks running or runnable besides this one, the least of three readings a
    millisecond apart (a CPU-bound neighbour is in all three, a passing blip rarely). Elsewhere the
    1-minute load average, which trails by a minute: right after a training run it still counts a
    busy core, so a sampler would wrongly take one thread (a 1.4x slower stream).
    """
    try:
        readings = []
        for _ in range(3):
            with open(loadavg, encoding="ascii") as file:
                readings.append(int(file.read().split()[3].split("/")[0]) - 1)
            time.sleep(0.001)
        return float(max(0, min(readings)))
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None

"""Pick the device, the compute dtype and the thread count, and say why."""

from __future__ import annotations

import math
import os
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import torch

from charrnn.choices import DType
from charrnn.errors import ConfigError

DEVICES = ("auto", "cpu", "cuda", "mps")
DTYPES = tuple(dtype.value for dtype in DType)
TORCH_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` takes cuda, then mps, then cpu; an explicit device that is absent is an error."""
    if name not in DEVICES and not name.startswith("cuda:"):
        raise ConfigError(f"--device {name!r}: unknown device; use one of {', '.join(DEVICES)}")
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps and mps.is_available())
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_ok else torch.device("cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is visible to PyTorch; use --device cpu")
    if name == "mps" and not mps_ok:
        raise ConfigError("--device mps: Apple GPU support is not available here; use --device cpu")
    return torch.device(name)


def cpu_supports_fast_bf16() -> bool:
    """True where the CPU has native bf16 matmul (AVX-512 BF16 or AMX), so autocast pays off."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The autocast dtype: `auto` is bf16 on CUDA with bf16 and on CPUs with native bf16, else fp32."""
    if name not in DTYPES:
        raise ConfigError(f"unknown dtype {name!r}; use one of {', '.join(DTYPES)}")
    if name == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        if device.type == "cpu" and cpu_supports_fast_bf16():
            return torch.bfloat16
        return torch.float32
    if name == "fp16" and device.type == "cpu":
        raise ConfigError("--dtype fp16 is not supported on CPU; use bf16 or fp32")
    if name == "bf16" and device.type == "cpu" and not cpu_supports_fast_bf16():
        # Emulated bf16 is ~80x slower than fp32 here (AVX2 EPYC) and oneDNN has no bf16 LSTM for it.
        raise ConfigError("--dtype bf16: this CPU has no native bf16 (AVX-512 BF16 or AMX); use --dtype fp32 or auto")
    return TORCH_DTYPES[name]


def dtype_name(dtype: torch.dtype) -> str:
    return {v: k for k, v in TORCH_DTYPES.items()}[dtype]


def autocast(device: torch.device, dtype: torch.dtype) -> AbstractContextManager[object]:
    """Mixed precision for forward passes; a no-op in fp32. Master weights stay fp32."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


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


def configure_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (default: usable cores) and flush denormals; returns the count."""
    count = threads or available_cores()
    if count < 1:
        raise ConfigError(f"--threads must be at least 1, got {count}")
    torch.set_num_threads(count)
    torch.set_flush_denormal(True)
    return count

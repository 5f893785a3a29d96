"""Pick the device, the compute dtype and the thread count, and say why."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from charrnn.choices import DType
from charrnn.cores import available_cores, busy_cores, cpu_quota, idle_cores  # noqa: F401  (re-exported)
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


def configure_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (default: usable cores) and flush denormals; returns the count."""
    count = threads or available_cores()
    if count < 1:
        raise ConfigError(f"--threads must be at least 1, got {count}")
    torch.set_num_threads(count)
    torch.set_flush_denormal(True)
    return count

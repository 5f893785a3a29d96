"""Helpers shared by the benchmark scripts: the reference corpus, GEMM peaks, result output."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parent.parent
SHAKESPEARE = REPO.parent / "shared" / "corpora" / "tinyshakespeare.txt"
RESULTS = REPO / "benchmarks" / "results"


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so a clock reading means what it says (a no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gemm_peak(dtype: torch.dtype, device: torch.device | None = None, seconds: float = 2.0) -> float:
    """Best FLOP/s of a square matmul in `dtype`, measured now (the machine is shared and noisy)."""
    device = device or torch.device("cpu")
    size = 8192 if device.type == "cuda" else 2048  # big enough to saturate each
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    for _ in range(2):
        a @ b
    synchronize(device)
    best = 0.0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        a @ b
        synchronize(device)
        best = max(best, 2 * size**3 / (time.perf_counter() - start))
    return best


def write_result(name: str, payload: dict[str, Any]) -> Path:
    """benchmarks/results/<name>.json, with the machine facts needed to compare runs."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {
        "benchmark": name,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **payload,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path

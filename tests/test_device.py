from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from charrnn import cores
from charrnn import device as dev
from charrnn.errors import ConfigError
from charrnn.store.checkpoint import load_checkpoint, load_model, save_checkpoint
from charrnn.store.runs import LAST
from charrnn.training.loop import Trainer, train
from charrnn.training.options import TrainOptions


def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dev.resolve_device("auto").type == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert dev.resolve_device("auto").type == "mps"
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert dev.resolve_device("auto").type == "cpu"


def test_explicit_missing_device_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="--device cpu"):
        dev.resolve_device("cuda")
    with pytest.raises(ConfigError, match="unknown device"):
        dev.resolve_device("tpu")


def test_dtype_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dev, "cpu_supports_fast_bf16", lambda: True)
    assert dev.resolve_dtype("auto", torch.device("cpu")) == torch.bfloat16
    monkeypatch.setattr(dev, "cpu_supports_fast_bf16", lambda: False)
    assert dev.resolve_dtype("auto", torch.device("cpu")) == torch.float32
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    assert dev.resolve_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert dev.resolve_dtype("auto", torch.device("mps")) == torch.float32
    assert dev.resolve_dtype("fp32", torch.device("cpu")) == torch.float32
    with pytest.raises(ConfigError, match="fp16"):
        dev.resolve_dtype("fp16", torch.device("cpu"))


def test_explicit_bf16_needs_a_cpu_with_native_bf16(monkeypatch: pytest.MonkeyPatch) -> None:
    """Emulated bf16 is ~80x slower than fp32 and oneDNN has no LSTM for it: refuse, saying what works."""
    monkeypatch.setattr(dev, "cpu_supports_fast_bf16", lambda: False)
    with pytest.raises(ConfigError, match=r"no native bf16.*--dtype fp32"):
        dev.resolve_dtype("bf16", torch.device("cpu"))
    monkeypatch.setattr(dev, "cpu_supports_fast_bf16", lambda: True)
    assert dev.resolve_dtype("bf16", torch.device("cpu")) == torch.bfloat16


def test_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        assert dev.configure_threads(1) == 1 and torch.get_num_threads() == 1
        assert dev.configure_threads(None) == dev.available_cores()
    finally:
        torch.set_num_threads(before)


def test_a_gpu_run_loads_and_resumes_on_cpu(trained_run: Path, tmp_path: Path) -> None:
    """A checkpoint as a CUDA run writes it (CUDA RNG, device cuda) samples and resumes on a CPU-only machine."""
    run = tmp_path / "gpu-run"
    shutil.copytree(trained_run, run)
    ckpt = load_checkpoint(run / LAST)
    meta = {**ckpt.meta, "options": {**ckpt.meta["options"], "device": "cuda"}}
    extra = {**ckpt.extra, "rng.cuda": torch.zeros(16, dtype=torch.uint8)}
    save_checkpoint(run / LAST, ckpt.config, ckpt.vocab, ckpt.weights, meta, extra)
    model = load_model(load_checkpoint(run / LAST), "cpu")
    assert next(model.parameters()).device.type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="--device cpu"):
            Trainer(TrainOptions(corpus=(), resume=str(run)))
    steps = ckpt.meta["step"] + 3
    result = train(TrainOptions(corpus=(), resume=str(run), device="cpu", steps=steps))
    assert result.steps == steps and load_checkpoint(result.last_path).meta["world_size"] == 1


def test_busy_cores_counts_the_other_runnable_tasks(tmp_path: Path) -> None:
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("1.50 0.80 0.40 3/211 4242\n")  # 3 runnable: this process and two others
    assert dev.busy_cores(str(loadavg)) == 2.0
    loadavg.write_text("1.50 0.80 0.40 1/211 4242\n")  # only this process: idle, whatever the average says
    assert dev.busy_cores(str(loadavg)) == 0.0


def test_busy_cores_falls_back_to_the_load_average(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    absent = str(tmp_path / "absent")  # not Linux, or no /proc
    monkeypatch.setattr(cores.os, "getloadavg", lambda: (1.25, 1.0, 0.5))
    assert dev.busy_cores(absent) == 1.25

    def unavailable() -> tuple[float, float, float]:
        raise OSError("no load average here")

    monkeypatch.setattr(cores.os, "getloadavg", unavailable)
    assert dev.busy_cores(absent) is None


def test_cpu_quota_of_a_container(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # cgroup v2, `docker --cpus 1.5`
    assert dev.cpu_quota(str(tmp_path)) == 1.5
    assert dev.available_cores(str(tmp_path)) == min(2, len(os.sched_getaffinity(0)))  # 1.5 cores: 2 threads
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert dev.cpu_quota(str(tmp_path)) is None
    (tmp_path / "cpu.max").unlink()
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("100000\n")  # cgroup v1
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert dev.cpu_quota(str(tmp_path)) == 1.0 and dev.available_cores(str(tmp_path)) == 1
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert dev.cpu_quota(str(tmp_path)) is None
    assert dev.cpu_quota(str(tmp_path / "absent")) is None


@pytest.mark.parametrize(
    ("cores", "busy", "host", "idle"),
    [
        (2, 0.0, 2, 2),
        (2, 1.0, 2, 1),
        (2, 4.0, 2, 1),  # never below one
        (8, 3.0, 8, 5),
        (2, 8.0, 64, 2),  # 2 of 64 cores: 8 busy tasks elsewhere leave ours idle, on average
        (2, 48.0, 64, 1),
        (4, None, 4, 4),  # unknown: all of them
    ],
)
def test_idle_cores_are_ours_minus_our_share_of_the_busy_ones(
    cores: int, busy: float | None, host: int, idle: int
) -> None:
    assert dev.idle_cores(cores, busy, host) == idle

from __future__ import annotations

import pytest
import torch

from charrnn import device as dev
from charrnn.errors import ConfigError


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


def test_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    before = torch.get_num_threads()
    try:
        assert dev.configure_threads(1) == 1 and torch.get_num_threads() == 1
        assert dev.configure_threads(None) == dev.available_cores()
    finally:
        torch.set_num_threads(before)

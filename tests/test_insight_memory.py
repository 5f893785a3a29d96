"""`charrnn memory`: the context curve, the gradient through time and the gate statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_text, run_cli
from insight_models import random_model

from charrnn.insight.memory import ContextCurve, context_curve, contexts_for, gradient_curve
from charrnn.insight.surprisal import score
from charrnn.vocab import Vocab

CPU = torch.device("cpu")


def test_contexts() -> None:
    assert contexts_for(10) == [0, 1, 2, 4, 8]
    assert contexts_for(100_000)[-1] == 1024


def test_gain_context() -> None:
    curve = ContextCurve([0, 1, 2, 4, 8], [5.0, 4.0, 3.0, 2.2, 2.0], 2.0, 10)
    assert curve.gain_context(0.9) == 4
    assert curve.gain_context(1.0) == 8
    assert ContextCurve([0, 1], [2.0, 2.5], 3.0, 1).gain_context() is None


def test_long_context_approaches_the_carried_state() -> None:
    text = make_text(80)
    vocab = Vocab.from_text(text)
    model = random_model("lstm", vocab, hidden=8, layers=1)
    ids = vocab.encode(text)
    curve = context_curve(model, ids, CPU, positions=20)
    # with a random model state hardly lasts 1024 steps: the longest context is the carried state
    assert curve.bits[-1] == pytest.approx(curve.full_bits, abs=1e-3)
    full = score(model, ids, CPU).bits
    assert curve.full_bits < full.max() and len(curve.bits) == len(curve.contexts)


def test_gradient_vanishes_for_a_plain_rnn() -> None:
    vocab = Vocab.from_text("abcd")
    model = random_model("rnn", vocab, hidden=8, layers=1)
    with torch.no_grad():
        model.rnn.weight_hh_l0.mul_(0.1)  # a contracting recurrence
    ids = np.random.default_rng(0).integers(0, 4, 300).astype(np.uint8)
    norms = gradient_curve(model, ids, CPU, span=64, positions=8).norms
    assert len(norms) == 64
    assert norms[0] > 100 * norms[10] > 0


def test_memory_cli(trained_run: Path, tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text(make_text(200), encoding="utf-8")
    result = run_cli("memory", str(text), "-c", str(trained_run), "--json", "--positions", "16", "--span", "32")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["context"]["k"] == [0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024]
    assert len(data["context"]["bits_per_char"]) == 12 and data["context"]["positions"] == 16
    assert data["context"]["context_for_90pct_gain"] in data["context"]["k"] + [None]
    assert len(data["gradient"]["norm"]) == 32
    assert [g["gate"] for g in data["gates"]][:3] == ["input", "forget", "output"]
    png = tmp_path / "m.png"
    shown = run_cli("memory", str(text), "-c", str(trained_run), "--positions", "8", "--span", "16", "-o", str(png))
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout.decode()
    assert "90% of the gain" in out and "gradient through time" in out and "gate saturation" in out
    assert b"\x1b" not in shown.stdout
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    short = run_cli("memory", "the cat", "-c", str(trained_run))
    assert short.returncode == 3 and short.stderr.decode().count("\n") == 1

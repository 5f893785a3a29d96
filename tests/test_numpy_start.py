"""The torch-free start: `charrnn sample` on the CPU reads the checkpoint with numpy and samples
through the same engine; the text of a seed is the torch path's, character for character."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from charrnn.model import CharRNN, ModelConfig
from charrnn.sampling.controls import RunSettings, SampleSettings
from charrnn.sampling.generate import generate_from, generate_many
from charrnn.sampling.numpy_backend import NumpyBackend, open_numpy
from charrnn.sampling.steppers import FastStepper
from charrnn.store.checkpoint import save_checkpoint
from charrnn.store.light import load_light
from charrnn.vocab import Vocab
from tests.conftest import run_cli

VOCAB = Vocab("".join(sorted(set("\n !',.:;?abcdefghijklmnopqrstuvwxyzAEIOU"))))


def saved_model(tmp_path: Path, cell: str, layers: int, scale: float = 0.3) -> tuple[Path, CharRNN]:
    """Random weights; a plain tanh RNN gets smaller ones: at 0.3 and up it is chaotic, and float
    rounding alone (torch against torch) grows past any tolerance within a few hundred steps."""
    scale = min(scale, 0.15) if cell == "rnn" else scale
    torch.manual_seed(layers * 7 + len(cell))
    model = CharRNN(ModelConfig(vocab_size=VOCAB.size, cell=cell, num_layers=layers, hidden_size=24, embed_size=8))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, scale)
    path = tmp_path / f"{cell}{layers}.safetensors"
    save_checkpoint(path, model.config, VOCAB, model.state_dict())
    return path, model.eval()


CASES = [("lstm", 1), ("lstm", 2), ("lstm", 3), ("gru", 1), ("gru", 2), ("gru", 3), ("rnn", 1), ("rnn", 2), ("rnn", 3)]


@pytest.mark.parametrize(("cell", "layers"), CASES)
def test_numpy_logits_follow_torch_for_500_steps(tmp_path: Path, cell: str, layers: int) -> None:
    path, model = saved_model(tmp_path, cell, layers)
    backend = NumpyBackend(load_light(path))
    prime = [VOCAB.index(c) for c in "to be or not"]
    mine, state = backend.prime(prime)
    stepper = backend.stepper()
    stepper.load_state(state)
    with torch.inference_mode():
        logits, theirs_state = model(torch.tensor([prime]))
        theirs = FastStepper(model)
        theirs.load_state(theirs_state)
        reference = logits[:, -1]
        rng = np.random.default_rng(0)
        for _ in range(500):
            np.testing.assert_allclose(mine, reference.numpy(), rtol=0, atol=1e-5)
            ids = rng.integers(0, VOCAB.size, size=1)
            mine, reference = stepper.step_numpy(ids), theirs.step(torch.from_numpy(ids))


@pytest.mark.parametrize(("cell", "layers"), [("lstm", 2), ("gru", 3), ("rnn", 1)])
def test_numpy_and_torch_paths_give_the_same_text(tmp_path: Path, cell: str, layers: int) -> None:
    path, model = saved_model(tmp_path, cell, layers, scale=0.5)
    settings = SampleSettings(temperature=0.9, top_p=0.95, repetition_penalty=1.2)
    run = RunSettings(length=300, num_samples=3, seed=5, stop=("?",))
    numpy_texts = [p.text for p in generate_from(open_numpy(str(path)), VOCAB, "ab", settings, run)]
    torch_texts = [p.text for p in generate_many(model, VOCAB, "ab", settings, run)]
    assert "".join(numpy_texts) == "".join(torch_texts)


def test_the_cli_samples_without_torch(tmp_path: Path) -> None:
    """A `torch` that cannot be imported first on the path: sampling on the CPU does not notice."""
    path, _ = saved_model(tmp_path, "lstm", 2, scale=0.5)
    blocked = tmp_path / "blocked"
    (blocked / "torch").mkdir(parents=True)
    (blocked / "torch" / "__init__.py").write_text("raise ImportError('torch is blocked in this test')\n")
    args = ("sample", "-c", str(path), "--prime", "ab", "--length", "200", "--seed", "3", "-n", "2",
            "--format", "jsonl", "--min-p", "0.02")  # fmt: skip
    without = run_cli(*args, extra_path=blocked)
    assert without.returncode == 0, without.stderr.decode()
    with_torch = run_cli(*args, "--device", "auto")  # the torch path, for the same text
    assert with_torch.returncode == 0, with_torch.stderr.decode()
    texts = [json.loads(line)["text"] for line in without.stdout.decode().splitlines()]
    assert texts == [json.loads(line)["text"] for line in with_torch.stdout.decode().splitlines()]
    assert len(texts) == 2 and all(len(t) == 202 for t in texts)
    blocked_adapt = run_cli("sample", "-c", str(path), "--adapt", "1", "--prime", "ab" * 40, extra_path=blocked)
    assert blocked_adapt.returncode != 0  # --adapt learns with autograd: it needs torch


def test_the_numpy_reader_refuses_what_load_checkpoint_refuses(tmp_path: Path) -> None:
    from charrnn.errors import CheckpointError

    path, _ = saved_model(tmp_path, "gru", 1)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF  # a flipped bit in the last tensor
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="digest mismatch"):
        load_light(broken)
    result = run_cli("sample", "-c", str(broken), "--length", "5")
    assert result.returncode == 3 and "digest mismatch" in result.stderr.decode()

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from charrnn.checkpoint import load_checkpoint, load_model
from charrnn.errors import ConfigError, InputError
from charrnn.sample import SampleSettings, choose, generate


def loaded(run_dir: Path):
    ckpt = load_checkpoint(run_dir / "best.safetensors")
    return load_model(ckpt), ckpt.vocab


def text(run_dir: Path, **kwargs: object) -> str:
    model, vocab = loaded(run_dir)
    return "".join(generate(model, vocab, **kwargs))  # type: ignore[arg-type]


def test_same_seed_same_text(trained_run: Path) -> None:
    a = text(trained_run, length=200, seed=7)
    b = text(trained_run, length=200, seed=7)
    c = text(trained_run, length=200, seed=8)
    assert a == b and len(a) == 200
    assert a != c


def test_samples_only_use_vocab_characters(trained_run: Path) -> None:
    model, vocab = loaded(trained_run)
    out = "".join(generate(model, vocab, length=300, seed=1, settings=SampleSettings(temperature=1.5)))
    assert set(out) <= set(vocab.chars)


def test_greedy_is_argmax_and_ignores_seed(trained_run: Path) -> None:
    greedy = SampleSettings(temperature=0)
    assert text(trained_run, length=100, seed=1, settings=greedy) == text(
        trained_run, length=100, seed=2, settings=greedy
    )
    # top-k 1 and a tiny top-p both reduce sampling to the argmax
    assert text(trained_run, length=100, seed=3, settings=SampleSettings(top_k=1)) == text(
        trained_run, length=100, settings=greedy
    )
    assert text(trained_run, length=100, seed=4, settings=SampleSettings(top_p=1e-6)) == text(
        trained_run, length=100, settings=greedy
    )


def test_greedy_matches_full_forward(trained_run: Path) -> None:
    """Step-by-step generation computes the same logits as one forward over the generated text."""
    model, vocab = loaded(trained_run)
    out = "".join(generate(model, vocab, prime="the ", length=50, settings=SampleSettings(temperature=0)))
    ids = torch.tensor([list(vocab.encode("the " + out))], dtype=torch.long)
    with torch.no_grad():
        logits, _ = model(ids)
    predicted = logits[0, 3:-1].argmax(-1)
    assert predicted.tolist() == ids[0, 4:].tolist()


def test_prime_with_unknown_characters(trained_run: Path) -> None:
    model, vocab = loaded(trained_run)
    with pytest.raises(InputError, match="'Z'"):
        list(generate(model, vocab, prime="Zebra", length=5))


def test_length_zero(trained_run: Path) -> None:
    assert text(trained_run, length=0, seed=1) == ""


def test_top_k_only_picks_top_candidates() -> None:
    logits = torch.tensor([[0.0, 5.0, 4.0, -3.0]]).repeat(500, 1)
    gen = torch.Generator().manual_seed(0)
    picks = choose(logits, SampleSettings(temperature=2.0, top_k=2), gen)
    assert set(picks.tolist()) == {1, 2}


def test_top_p_keeps_smallest_nucleus() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log().repeat(2000, 1)
    gen = torch.Generator().manual_seed(0)
    picks = choose(logits, SampleSettings(top_p=0.75), gen)
    assert set(picks.tolist()) == {0, 1}


@pytest.mark.parametrize("bad", [{"temperature": -0.1}, {"top_p": 0.0}, {"top_p": 1.5}, {"top_k": 0}])
def test_settings_validation(bad: dict) -> None:
    with pytest.raises(ConfigError):
        SampleSettings(**bad)

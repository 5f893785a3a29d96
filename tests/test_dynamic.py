"""Dynamic evaluation and prime adaptation (charrnn.adapt): a copy learns, the model does not; the
order is score-then-learn; the CLI reports both figures apart; sampling uses the adapted weights."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from charrnn.adapt.learn import adapt, evaluate_dynamic
from charrnn.adapt.settings import AdaptSettings
from charrnn.errors import ConfigError, InputError
from charrnn.evaluate import evaluate_ids
from charrnn.model import CharRNN, ModelConfig
from charrnn.sampling.controls import RunSettings
from charrnn.sampling.generate import adapted_model, generate
from charrnn.vocab import Vocab
from tests.conftest import make_text, run_cli
from tests.test_cli import assert_clean_error

CPU = torch.device("cpu")
SEQ = 20


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny one-stream passes: a second thread only waits (and on a busy machine, stalls every step)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(cell: str = "lstm") -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(ModelConfig(vocab_size=7, cell=cell, num_layers=2, hidden_size=16, embed_size=4)).eval()


def repetitive_ids(repeats: int = 40) -> np.ndarray:
    """A random 31-id phrase said over and over: nothing a fresh model knows, everything it can learn."""
    return np.tile(np.random.default_rng(0).integers(0, 7, 31), repeats).astype(np.uint8)


def weights_of(model: CharRNN) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items()}


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_dynamic_learns_the_repetition_the_static_model_cannot(cell: str) -> None:
    model, ids = tiny_model(cell), repetitive_ids()
    static = evaluate_ids(model, ids, CPU)
    dynamic = evaluate_dynamic(model, ids, CPU, AdaptSettings(lr=0.01, seq=SEQ))
    assert dynamic.chars == static.chars == ids.size - 1
    assert dynamic.loss < static.loss - 0.5, (static.loss, dynamic.loss)


def test_the_loaded_model_is_unchanged() -> None:
    model, ids = tiny_model(), repetitive_ids()
    model.train()  # whatever mode it was in comes back unchanged too
    before = weights_of(model)
    evaluate_dynamic(model, ids, CPU, AdaptSettings(lr=0.01, seq=SEQ))
    adapted = adapt(model, ids, 10, AdaptSettings(lr=0.01, seq=SEQ))
    assert model.training
    assert all(torch.equal(before[name], value) for name, value in model.state_dict().items())
    assert not all(torch.equal(before[name], value) for name, value in adapted.state_dict().items())
    assert not adapted.training


def test_a_segment_is_scored_before_it_is_learned_from() -> None:
    """Segment 0 scores as the untouched model; segment 1 as the model after one step on segment 0 alone,
    continuing from the state the untouched model ended segment 0 in."""
    model, ids = tiny_model(), repetitive_ids()
    settings = AdaptSettings(lr=0.01, seq=SEQ)
    first = evaluate_dynamic(model, ids[: SEQ + 1], CPU, settings)
    assert math.isclose(first.loss, evaluate_ids(model, ids[: SEQ + 1], CPU, streams=1).loss, rel_tol=1e-6)

    two = evaluate_dynamic(model, ids[: 2 * SEQ + 1], CPU, settings)
    stepped = adapt(model, ids[: SEQ + 1], 1, settings)  # one update on segment 0: the same rule
    x = torch.from_numpy(ids.astype(np.int64))[None]
    with torch.no_grad():
        _, state = model(x[:, :SEQ])
        logits, _ = stepped(x[:, SEQ : 2 * SEQ], state)
        second = F.cross_entropy(logits[0], x[0, SEQ + 1 : 2 * SEQ + 1], reduction="sum").item()
    assert math.isclose(two.loss * 2 * SEQ, first.loss * SEQ + second, rel_tol=1e-5)


def test_the_same_text_gives_the_same_loss() -> None:
    model, ids = tiny_model(), repetitive_ids(10)
    settings = AdaptSettings(lr=0.01, seq=SEQ)
    assert evaluate_dynamic(model, ids, CPU, settings) == evaluate_dynamic(model, ids, CPU, settings)
    one, two = (adapt(model, ids, 7, settings).state_dict() for _ in range(2))
    assert all(torch.equal(one[name], two[name]) for name in one)


def test_bad_settings_and_short_texts_are_domain_errors() -> None:
    with pytest.raises(ConfigError, match="--dynamic-lr"):
        AdaptSettings(lr=0)
    with pytest.raises(ConfigError, match="--dynamic-lr"):
        AdaptSettings(lr=float("nan"))
    with pytest.raises(ConfigError, match="--dynamic-seq"):
        AdaptSettings(seq=0)
    model = tiny_model()
    with pytest.raises(InputError, match="at least 2 characters"):
        evaluate_dynamic(model, np.array([1], dtype=np.uint8), CPU)
    with pytest.raises(InputError, match=f"at least {SEQ + 1} characters"):
        adapt(model, repetitive_ids()[:SEQ], 3, AdaptSettings(seq=SEQ))
    with pytest.raises(ConfigError, match="--adapt"):
        adapt(model, repetitive_ids(), -1)


# -- sampling from the adapted weights ----------------------------------------------------------

VOCAB = Vocab("abcdefg")
PRIME = VOCAB.decode(repetitive_ids(8).tolist())  # 248 characters of a phrase the model never saw


def test_fast_steppers_sample_from_the_adapted_weights() -> None:
    model = tiny_model()
    copy = adapted_model(model, VOCAB, PRIME, 30, AdaptSettings(lr=0.01, seq=SEQ))
    assert adapted_model(model, VOCAB, PRIME, 0) is model

    def text(m: CharRNN, engine: str) -> str:
        return "".join(generate(m, VOCAB, PRIME, run=RunSettings(length=120, seed=3), engine=engine, threads=1))

    fast, reference = text(copy, "fast"), text(copy, "module")
    assert fast == reference  # numpy steps and nn.LSTM agree on the adapted weights
    assert fast != text(model, "fast")
    assert fast == text(adapted_model(model, VOCAB, PRIME, 30, AdaptSettings(lr=0.01, seq=SEQ)), "fast")
    with pytest.raises(InputError, match="prime"):
        adapted_model(model, VOCAB, "", 5)
    with pytest.raises(InputError, match="never saw"):
        adapted_model(model, VOCAB, PRIME + "z", 5)


# -- the CLI and the API --------------------------------------------------------------------------


def test_api_evaluate_dynamic_and_generate_adapt(trained_run: Path) -> None:
    import charrnn

    model = charrnn.load(trained_run)
    text = make_text(60)
    static = model.evaluate(text)
    dynamic = model.evaluate_dynamic(text, lr=0.002, seq=40)
    assert dynamic.chars == static.chars and dynamic.loss != static.loss
    assert model.evaluate(text) == static  # the loaded model did not learn
    prime = make_text(30)
    adapted = model.generate(prime=prime, length=80, seed=5, adapt=20)
    assert adapted.startswith(prime) and len(adapted) == len(prime) + 80
    assert adapted == model.generate(prime=prime, length=80, seed=5, adapt=20)
    with pytest.raises(ConfigError, match="--dynamic-seq"):
        model.evaluate_dynamic(text, seq=0)


def test_eval_dynamic_reports_beside_the_static_figure(trained_run: Path, tmp_path: Path) -> None:
    held_out = tmp_path / "held_out.txt"
    held_out.write_text(make_text(30), encoding="utf-8")
    ckpt = str(trained_run)
    static = json.loads(run_cli("eval", str(held_out), "-c", ckpt, "--json").stdout)
    both = json.loads(run_cli("eval", str(held_out), "-c", ckpt, "--json", "--dynamic").stdout)
    assert {key: both[key] for key in static} == static  # the static keys as they were
    assert set(both) == {*static, "dynamic"}
    assert set(both["dynamic"]) == {"loss", "bpc", "perplexity", "chars", "lr", "seq"}
    assert both["dynamic"]["chars"] == static["chars"] and both["dynamic"]["loss"] != static["loss"]

    text = run_cli("eval", str(held_out), "-c", ckpt, "--dynamic", "--dynamic-lr", "0.003", "--dynamic-seq", "40")
    assert text.returncode == 0, text.stderr.decode()
    assert text.stderr == b""
    static_line, dynamic_line = text.stdout.decode().splitlines()
    assert static_line == (
        f"loss {static['loss']:.4f} nats/char  bpc {static['bpc']:.4f}  "
        f"perplexity {static['perplexity']:.3f}  ({static['chars']:,} chars)"
    )
    assert dynamic_line.startswith("dynamic loss ") and dynamic_line.endswith("(lr 0.003, seq 40)")


def test_eval_and_sample_bad_values_are_one_line(trained_run: Path, tmp_path: Path) -> None:
    held_out = tmp_path / "held_out.txt"
    held_out.write_text(make_text(10), encoding="utf-8")
    ckpt = str(trained_run)
    assert_clean_error(run_cli("eval", str(held_out), "-c", ckpt, "--dynamic", "--dynamic-lr", "0"), 2, "--dynamic-lr")
    assert_clean_error(run_cli("eval", str(held_out), "-c", ckpt, "--dynamic", "--dynamic-seq", "0"), 2, "-seq")
    (tmp_path / "one.txt").write_text("a", encoding="utf-8")
    assert_clean_error(run_cli("eval", str(tmp_path / "one.txt"), "-c", ckpt, "--dynamic"), 3, "2 characters")
    assert_clean_error(run_cli("sample", "-c", ckpt, "--prime", "the cat", "--adapt", "3"), 3, "--adapt", "51")
    assert_clean_error(run_cli("sample", "-c", ckpt, "--adapt", "3"), 3, "--prime")
    assert_clean_error(run_cli("sample", "-c", ckpt, "--adapt", "-1"), 2, "--adapt")
    assert_clean_error(run_cli("sample", "-c", ckpt, "--adapt-lr", "-1"), 2, "--adapt-lr")


def test_sample_adapt_changes_the_text_and_repeats_it(trained_run: Path, tmp_path: Path) -> None:
    # Words the model knows, in an order it never saw: adapting to it changes what comes next.
    prime = tmp_path / "prime.txt"
    prime.write_text("the fog sat on the grain, is the box true?\n" * 12, encoding="utf-8")

    def sample(*extra: str) -> bytes:
        args = ("-c", str(trained_run), "--prime-file", str(prime), "--length", "200", "--seed", "9")
        proc = run_cli("sample", *args, "--no-include-prime", *extra)
        assert proc.returncode == 0, proc.stderr.decode()
        assert proc.stderr == b""
        return proc.stdout

    adapted = sample("--adapt", "20")
    assert len(adapted.decode()) == 200
    assert adapted != sample()
    assert adapted == sample("--adapt", "20")

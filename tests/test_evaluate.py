from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from charrnn.errors import InputError
from charrnn.evaluate import chunked_pass, evaluate_ids
from charrnn.model import CharRNN, ModelConfig


def tiny_model() -> CharRNN:
    torch.manual_seed(0)
    return CharRNN(ModelConfig(vocab_size=7, hidden_size=12, embed_size=4)).eval()


def test_single_stream_is_exact_cross_entropy() -> None:
    model = tiny_model()
    ids = np.random.default_rng(0).integers(0, 7, 700).astype(np.uint8)
    result = evaluate_ids(model, ids, torch.device("cpu"), streams=1)
    x = torch.from_numpy(ids[:-1].astype(np.int64))[None]
    y = torch.from_numpy(ids[1:].astype(np.int64))
    with torch.no_grad():
        logits, _ = model(x)
    expected = F.cross_entropy(logits[0], y).item()
    assert result.chars == 699
    assert math.isclose(result.loss, expected, rel_tol=1e-5)
    assert math.isclose(result.bpc, expected / math.log(2), rel_tol=1e-5)
    assert math.isclose(result.perplexity, math.exp(expected), rel_tol=1e-5)


def test_parallel_streams_with_burn_in_match_one_pass() -> None:
    model = tiny_model()
    ids = np.random.default_rng(1).integers(0, 7, 5000).astype(np.uint8)
    one = evaluate_ids(model, ids, torch.device("cpu"), streams=1)
    many = evaluate_ids(model, ids, torch.device("cpu"), streams=8, burn_in=64)
    assert many.chars == one.chars
    assert abs(many.loss - one.loss) < 1e-4


def latch_model() -> CharRNN:
    """An LSTM that never forgets: its forget gates are shut open and only character 0 writes to its
    cell, so its output depends on how many 0s came before, however long ago. No burn-in, however
    long, reaches the state one pass has after a 0 the burn-in did not read."""
    torch.manual_seed(3)
    model = CharRNN(ModelConfig(vocab_size=7, hidden_size=12, embed_size=4, num_layers=1)).eval()
    with torch.no_grad():
        model.embed.weight[:, 0] = 0.0
        model.embed.weight[0, 0] = 1.0  # only character 0 has a first component
        model.rnn.weight_hh_l0.zero_()
        model.rnn.weight_ih_l0.zero_()
        model.rnn.bias_hh_l0.zero_()
        model.rnn.weight_ih_l0[0:12, 0] = 20.0  # input gate opens on a 0 ...
        model.rnn.bias_ih_l0[0:12] = -10.0  # ... and only then
        model.rnn.bias_ih_l0[12:24] = 30.0  # forget gate: keep everything
        model.rnn.bias_ih_l0[24:36] = 1.0  # what a 0 adds to the cell
        model.rnn.bias_ih_l0[36:48] = 10.0  # output gate open
        model.head.weight.mul_(4.0)
    return model


def test_a_model_that_never_forgets_is_scored_as_one_pass_all_the_same() -> None:
    model = latch_model()
    ids = np.random.default_rng(2).integers(1, 7, 4000).astype(np.uint8)
    ids[[100, 1100]] = 0  # long before the chunks that start at 500, 1000, 1500, ...
    cpu = torch.device("cpu")
    one = evaluate_ids(model, ids, cpu, streams=1)
    guessed = chunked_pass(model, ids, cpu, streams=8, burn_in=256, max_rounds=1)
    checked = chunked_pass(model, ids, cpu, streams=8, burn_in=256)
    assert abs(guessed.total / 3999 - one.loss) > 0.01  # a fixed burn-in is wrong here
    assert abs(checked.total / 3999 - one.loss) < 1e-5  # the checked hand-off is not
    assert checked.rounds > 2 and checked.rescored >= 1
    assert checked.rescored <= 8  # then the rest as one stream: bounded work, however long the memory
    assert evaluate_ids(model, ids, cpu, streams=8).loss == pytest.approx(checked.total / 3999, rel=1e-12)


def test_a_model_that_forgets_needs_one_round() -> None:
    stats = chunked_pass(
        tiny_model(), np.random.default_rng(1).integers(0, 7, 5000).astype(np.uint8), torch.device("cpu"), streams=8
    )
    assert (stats.rounds, stats.rescored) == (1, 0)


def test_too_short_text_is_refused_not_nan() -> None:
    with pytest.raises(InputError, match="at least 2 characters"):  # a NaN loss is not JSON
        evaluate_ids(tiny_model(), np.array([1], dtype=np.uint8), torch.device("cpu"))


def test_memory_stays_a_few_windows_whatever_the_text_length() -> None:
    """A long text is gathered window by window, never copied whole as int64 inputs, targets and mask."""
    import tracemalloc

    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=7, hidden_size=4, num_layers=1, embed_size=2)).eval()
    ids = np.random.default_rng(1).integers(0, 7, 1_000_000).astype(np.uint8)
    tracemalloc.start()
    try:
        result = evaluate_ids(model, ids, torch.device("cpu"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.chars == ids.size - 1 and math.isfinite(result.loss)
    assert peak < 4 * 2**20  # whole-text int64 copies would be 17 MB

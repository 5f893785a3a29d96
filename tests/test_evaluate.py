from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from charrnn.errors import InputError
from charrnn.evaluate import evaluate_ids
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

"""A new run starts from the character frequencies of its training text, not from the uniform loss."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from charrnn.training.loop import Trainer
from charrnn.training.setup import start_from_frequencies
from tests.conftest import tiny_options


def test_the_output_bias_starts_at_the_log_frequencies(corpus_file: Path, tmp_path: Path) -> None:
    trainer = Trainer(tiny_options(corpus_file, tmp_path / "run", steps=1))
    try:
        parts = trainer.parts
        ids = np.asarray(parts.train_ids)
        counts = np.bincount(ids, minlength=parts.model_config.vocab_size) + 1.0
        expected = counts / counts.sum()
        got = torch.softmax(trainer.model.head.bias.detach().cpu().double(), dim=0).numpy()
        assert np.allclose(got, expected, rtol=1e-5)
        # the first step's loss is about the text's unigram entropy, well below ln(vocab)
        x, y = parts.batcher.window(0)
        with torch.no_grad():
            logits, _ = trainer.model(x.to(parts.device))
        first = torch.nn.functional.cross_entropy(
            logits.float().reshape(-1, logits.size(-1)), y.to(logits.device).reshape(-1)
        )
        first = first.item()
        entropy = float(-(expected * np.log(expected)).sum())
        assert abs(first - entropy) < 0.3 < math.log(parts.model_config.vocab_size) - first
    finally:
        trainer.release_run()


def test_a_character_only_in_the_held_out_text_still_gets_a_finite_bias() -> None:
    from charrnn.model import CharRNN, ModelConfig

    model = CharRNN(ModelConfig(vocab_size=4, hidden_size=4, embed_size=2))
    start_from_frequencies(model, np.array([0, 0, 1, 2] * 10, dtype=np.uint8))  # id 3 never seen
    bias = model.head.bias.detach()
    assert torch.isfinite(bias).all() and bias[3] < bias[2] < bias[0]

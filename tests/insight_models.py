"""Models built by hand for the insight tests: weights set so that what a unit tracks is known."""

from __future__ import annotations

import random
from pathlib import Path

import torch

from charrnn.model import CharRNN, ModelConfig
from charrnn.store.checkpoint import save_checkpoint
from charrnn.vocab import Vocab

QUOTE_VOCAB = Vocab.from_text('\n "ab.')
BIG = 20.0


def quote_text(lines: int = 120, seed: int = 0) -> str:
    """Words of a and b, some in double quotes, over many lines."""
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(lines):
        words = []
        for _ in range(rng.randint(2, 7)):
            word = "".join(rng.choice("ab") for _ in range(rng.randint(1, 5)))
            words.append(f'"{word}"' if rng.random() < 0.3 else word)
        if rng.random() < 0.3:  # a quote over several words
            words.insert(rng.randint(0, len(words)), '"a b ab"')
        out.append(" ".join(words) + ".")
    return "\n".join(out) + "\n"


def quote_model(hidden: int = 6, seed: int = 0) -> CharRNN:
    """A one-layer LSTM whose unit 0 is +tanh(1) inside double quotes and -tanh(1) after them.

    Unit 0: a quote opens the input gate and closes the forget gate; the candidate is
    tanh(5 - 20 h), so the cell flips sign on each quote (starting positive); any other character
    keeps the cell as it is. The output gate is always open. Units 1.. get small random weights.
    """
    vocab = QUOTE_VOCAB
    config = ModelConfig(vocab_size=vocab.size, cell="lstm", num_layers=1, hidden_size=hidden, embed_size=vocab.size)
    torch.manual_seed(seed)
    model = CharRNN(config)
    quote = vocab.index('"')
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
        model.embed.weight.copy_(torch.eye(vocab.size))
        w_ih, w_hh = model.rnn.weight_ih_l0, model.rnn.weight_hh_l0
        b_ih, b_hh = model.rnn.bias_ih_l0, model.rnn.bias_hh_l0
        i, f, g, o = 0, hidden, 2 * hidden, 3 * hidden  # unit 0's row in each gate block
        for row in (i, f, g, o):
            w_ih[row].zero_()
            w_hh[row].zero_()
            b_ih[row] = 0.0
            b_hh[row] = 0.0
        w_ih[i] = -BIG
        w_ih[i, quote] = BIG
        w_ih[f] = BIG
        w_ih[f, quote] = -BIG
        b_ih[g] = 5.0
        w_hh[g, 0] = -BIG
        b_ih[o] = BIG
        w_hh[:, 0] = torch.where(torch.arange(4 * hidden) == g, w_hh[:, 0], torch.zeros(()))  # h0 feeds only g0
    return model.eval()


def save(model: CharRNN, vocab: Vocab, path: Path) -> Path:
    save_checkpoint(path, model.config, vocab, model.state_dict())
    return path


def random_model(cell: str, vocab: Vocab, hidden: int = 8, layers: int = 2, seed: int = 0) -> CharRNN:
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=vocab.size, cell=cell, num_layers=layers, hidden_size=hidden, embed_size=4)
    return CharRNN(config).eval()

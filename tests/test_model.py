from __future__ import annotations

import pytest
import torch

from charrnn.errors import ConfigError
from charrnn.model import CELLS, CharRNN, ModelConfig, count_parameters, detach_state, parameter_shapes

N, T, D, H, V = 2, 3, 4, 5, 6  # tiny dims, as torch-rnn's tests use


@pytest.mark.parametrize("cell", CELLS)
def test_forward_shapes_and_parameter_count(cell: str) -> None:
    config = ModelConfig(vocab_size=V, cell=cell, num_layers=2, hidden_size=H, embed_size=D)
    model = CharRNN(config)
    logits, state = model(torch.randint(0, V, (N, T)))
    assert logits.shape == (N, T, V)
    h = state[0] if isinstance(state, tuple) else state
    assert h.shape == (2, N, H)
    assert model.num_parameters() == count_parameters(config)
    assert parameter_shapes(config) == {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("cell", CELLS)
def test_carried_state_equals_one_long_pass(cell: str) -> None:
    """Windows with the state carried compute exactly what one pass over the whole sequence does."""
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=V, cell=cell, num_layers=2, hidden_size=H, embed_size=D)).eval()
    ids = torch.randint(0, V, (N, 4 * T))
    whole, _ = model(ids)
    state, parts = None, []
    for start in range(0, 4 * T, T):
        logits, state = model(ids[:, start : start + T], state)
        state = detach_state(state)
        parts.append(logits)
    torch.testing.assert_close(torch.cat(parts, dim=1), whole)


def test_lstm_matches_naive_reference() -> None:
    """nn.LSTM inside CharRNN computes the textbook LSTM equations."""
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=V, num_layers=1, hidden_size=H, embed_size=D)).eval()
    ids = torch.randint(0, V, (1, T))
    logits, _ = model(ids)
    rnn = model.rnn
    h = torch.zeros(H)
    c = torch.zeros(H)
    outs = []
    for t in range(T):
        x = model.embed.weight[ids[0, t]]
        gates = rnn.weight_ih_l0 @ x + rnn.bias_ih_l0 + rnn.weight_hh_l0 @ h + rnn.bias_hh_l0
        i, f, g, o = gates.chunk(4)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        outs.append(model.head(h))
    torch.testing.assert_close(logits[0], torch.stack(outs), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    "bad", [{"cell": "transformer"}, {"hidden_size": 0}, {"num_layers": 0}, {"dropout": 1.0}, {"dropout": -0.1}]
)
def test_config_validation(bad: dict) -> None:
    with pytest.raises(ConfigError):
        ModelConfig(vocab_size=V, **bad)

"""ModelConfig and CharRNN: embedding -> stacked nn.LSTM/GRU/RNN -> linear head."""

from __future__ import annotations

from typing import Union

from torch import Tensor, nn

from charrnn.model_config import (  # noqa: F401  (re-exported: the config lives apart, without torch)
    CELLS,
    GATES,
    SIZE_LIMITS,
    TENSORS_PER_LAYER,
    ModelConfig,
    count_parameters,
    parameter_shapes,
)

# LSTM state is (h, c), each [num_layers, B, hidden]; GRU/RNN state is h alone.
State = Union[tuple[Tensor, Tensor], Tensor]


class CharRNN(nn.Module):
    """A character language model; PyTorch's fused recurrent layers so oneDNN/cuDNN kernels run.

    ids [B, T] -> embed [B, T, E] -> rnn [B, T, H] -> dropout -> head [B, T, V]
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        rnn_class = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[config.cell]
        self.embed = nn.Embedding(config.vocab_size, config.embed_size)
        self.rnn = rnn_class(
            config.embed_size,
            config.hidden_size,
            num_layers=config.num_layers,
            dropout=config.dropout if config.num_layers > 1 else 0.0,
            batch_first=True,
        )
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)

    def forward(self, ids: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        x = self.embed(ids)  # [B, T, E]
        out, state = self.rnn(x, state)  # [B, T, H]
        return self.head(self.drop(out)), state  # [B, T, V]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def detach_state(state: State) -> State:
    """Cut the graph between windows (truncated BPTT) while keeping the values."""
    if isinstance(state, tuple):
        return tuple(s.detach() for s in state)  # type: ignore[return-value]
    return state.detach()

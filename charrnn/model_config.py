"""ModelConfig: everything that fixes the network's shape, and the shapes it implies, without torch
(a checkpoint's header and weights can be checked, and sampled from in numpy, before torch loads)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from charrnn.choices import Cell
from charrnn.errors import ConfigError

CELLS = tuple(cell.value for cell in Cell)
GATES = {"lstm": 4, "gru": 3, "rnn": 1}  # weight blocks per layer: i,f,g,o / r,z,n / one
# The largest sizes a checkpoint may declare (every Unicode code point; far beyond any CPU model).
SIZE_LIMITS = {"vocab_size": 0x110000, "num_layers": 256, "hidden_size": 1 << 16, "embed_size": 1 << 16}
TENSORS_PER_LAYER = 4  # weight_ih, weight_hh, bias_ih, bias_hh


@dataclass(frozen=True)
class ModelConfig:
    """Everything that fixes the shape of the network. Stored in every checkpoint."""

    vocab_size: int
    cell: str = "lstm"
    num_layers: int = 2
    hidden_size: int = 512
    embed_size: int = 64
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise ConfigError(f"unknown cell {self.cell!r}; use one of {', '.join(CELLS)}")
        for name in ("vocab_size", "num_layers", "hidden_size", "embed_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """A config read from a file: exactly these keys, ints that are ints, sizes within `SIZE_LIMITS`.

        Checked before anything is sized by them, so a forged file cannot make a loader loop or
        allocate by an absurd number (or pass a shape check with `128.0 == 128`).
        """
        if not isinstance(data, dict) or set(data) != set(SIZE_LIMITS) | {"cell", "dropout"}:
            raise ConfigError(
                "model_config must hold exactly vocab_size, cell, num_layers, hidden_size, embed_size, dropout"
            )
        for name, limit in SIZE_LIMITS.items():
            value = data[name]
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= limit:
                raise ConfigError(f"model_config.{name} must be a whole number from 1 to {limit}, got {value!r}")
        dropout = data["dropout"]
        if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
            raise ConfigError(f"model_config.dropout must be a number from 0 to below 1, got {dropout!r}")
        if data["cell"] not in CELLS:
            raise ConfigError(f"model_config.cell must be one of {', '.join(CELLS)}, got {ascii(data['cell'])[:20]}")
        return cls(**{**data, "dropout": float(dropout)})


def parameter_shapes(config: ModelConfig) -> dict[str, tuple[int, ...]]:
    """The state-dict names and shapes of `CharRNN(config)`, computed without building it
    (no memory, no torch machinery: a forged config cannot make this allocate)."""
    gates = GATES[config.cell]
    h, e, v = config.hidden_size, config.embed_size, config.vocab_size
    shapes: dict[str, tuple[int, ...]] = {"embed.weight": (v, e)}
    for layer in range(config.num_layers):
        shapes[f"rnn.weight_ih_l{layer}"] = (gates * h, e if layer == 0 else h)
        shapes[f"rnn.weight_hh_l{layer}"] = (gates * h, h)
        shapes[f"rnn.bias_ih_l{layer}"] = (gates * h,)
        shapes[f"rnn.bias_hh_l{layer}"] = (gates * h,)
    shapes["head.weight"] = (v, h)
    shapes["head.bias"] = (v,)
    return shapes


def count_parameters(config: ModelConfig) -> int:
    """Parameter count in closed form, without building the model or looping over its layers
    (planning sizes, and refusing absurd `--layers 100000000` before anything is allocated)."""
    gates = GATES.get(config.cell, 4)
    h, e, v, layers = config.hidden_size, config.embed_size, config.vocab_size, config.num_layers
    rnn = gates * h * (e + h + 2) + (layers - 1) * gates * h * (2 * h + 2)
    return v * e + rnn + h * v + v

"""Naming a unit: `LAYER:INDEX` (hidden state h) or `LAYER:c:INDEX` (an LSTM's cell state), 0-based."""

from __future__ import annotations

from dataclasses import dataclass

from charrnn.errors import ConfigError
from charrnn.model import ModelConfig


@dataclass(frozen=True, order=True)
class UnitRef:
    layer: int
    kind: str  # "h" or "c"
    index: int

    @property
    def name(self) -> str:
        return f"{self.layer}:{self.kind}:{self.index}"


def parse_unit(spec: str, config: ModelConfig) -> UnitRef:
    """`0:12`, `1:h:3` or `0:c:7`, checked against the model; ConfigError (exit 2) otherwise."""
    parts = spec.strip().split(":")
    if len(parts) == 2:
        parts = [parts[0], "h", parts[1]]
    if len(parts) != 3 or parts[1] not in ("h", "c") or not (parts[0].isdigit() and parts[2].isdigit()):
        raise ConfigError(f"--unit {spec!r}: expected LAYER:INDEX or LAYER:h|c:INDEX, e.g. 0:12 or 1:c:3")
    unit = UnitRef(int(parts[0]), parts[1], int(parts[2]))
    if unit.layer >= config.num_layers:
        raise ConfigError(
            f"--unit {spec}: layer {unit.layer} out of range; the model has layers 0..{config.num_layers - 1}"
        )
    if unit.index >= config.hidden_size:
        raise ConfigError(
            f"--unit {spec}: index {unit.index} out of range; layers have units 0..{config.hidden_size - 1}"
        )
    if unit.kind == "c" and config.cell != "lstm":
        raise ConfigError(f"--unit {spec}: a {config.cell.upper()} has no cell state c; use LAYER:INDEX for h")
    return unit


def all_kinds(config: ModelConfig) -> tuple[str, ...]:
    """The states each layer has: h and c for an LSTM, h for a GRU or RNN."""
    return ("h", "c") if config.cell == "lstm" else ("h",)

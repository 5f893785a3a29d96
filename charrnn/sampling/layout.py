"""The weights a one-character step multiplies by, laid out once for every stepper, from torch
tensors or numpy arrays alike (no torch import: the numpy start lays out a file's arrays with it).

LSTM/RNN layers above the first put [W_ih | W_hh] side by side: one product for both inputs.
GRU needs W_hn h apart (the reset gate multiplies it), so it keeps two products per layer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_TABLE_BYTES = 64 * 1024 * 1024  # beyond this, layer 0 multiplies the embedding instead


def table_fits(vocab_size: int, gate_width: int) -> bool:
    """Whether layer 0's input gates are precomputed per id ([V, G*H] fp32) or multiplied each step."""
    return vocab_size * gate_width * 4 <= MAX_TABLE_BYTES


@dataclass(frozen=True)
class StepWeights:
    """(weight [out, in], bias or None) pairs, fp32, as torch tensors or numpy arrays."""

    embed: Any  # [V, E]
    input0: tuple[Any, Any]  # layer 0's W_ih [G*H, E]; bias b_ih + b_hh (GRU: b_ih, as b_hn sits in r's product)
    head: tuple[Any, Any]  # [V, H]
    hh: list[tuple[Any, Any]] = field(
        default_factory=list
    )  # layer 0 (all cells) and every GRU layer: W_hh (+ b_hh for GRU)
    ih: list[tuple[Any, Any]] = field(default_factory=list)  # GRU layers >= 1: W_ih + b_ih
    cat: list[tuple[Any, Any]] = field(default_factory=list)  # LSTM/RNN layers >= 1: [W_ih | W_hh] + b_ih + b_hh


def arrange(
    cell: str, layers: int, weights: Mapping[str, Any], side_by_side: Callable[[list[Any]], Any]
) -> StepWeights:
    """`weights` by CharRNN state-dict name (fp32), in the steppers' layout; `side_by_side` joins
    matrices along their input dimension (torch.cat / np.concatenate on axis 1)."""

    def rnn(name: str) -> Any:
        return weights[f"rnn.{name}"]

    b_ih0, b_hh0 = rnn("bias_ih_l0"), rnn("bias_hh_l0")
    layout = StepWeights(
        embed=weights["embed.weight"],
        input0=(rnn("weight_ih_l0"), b_ih0 + b_hh0 if cell != "gru" else b_ih0),
        head=(weights["head.weight"], weights["head.bias"]),
    )
    for layer in range(layers):
        w_hh, b_hh = rnn(f"weight_hh_l{layer}"), rnn(f"bias_hh_l{layer}")
        if layer == 0 or cell == "gru":
            layout.hh.append((w_hh, b_hh if cell == "gru" else None))
        if layer:
            w_ih, b_ih = rnn(f"weight_ih_l{layer}"), rnn(f"bias_ih_l{layer}")
            if cell == "gru":
                layout.ih.append((w_ih, b_ih))
            else:
                layout.cat.append((side_by_side([w_ih, w_hh]), b_ih + b_hh))
    return layout

"""The weights a one-character step multiplies by, laid out once for both steppers.

`StepWeights` holds them as fp32 (weight, bias) pairs; `Product` is one y = x W^T + b, in fp32 or
with int8 weights. FastStepper (torch) and BlasStepper (numpy) both build on this layout.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from charrnn.model import CharRNN

MAX_TABLE_BYTES = 64 * 1024 * 1024  # beyond this, layer 0 multiplies the embedding instead


def table_fits(vocab_size: int, gate_width: int) -> bool:
    """Whether layer 0's input gates are precomputed per id ([V, G*H] fp32) or multiplied each step."""
    return vocab_size * gate_width * 4 <= MAX_TABLE_BYTES


class Product:
    """y = x W^T + b for one weight matrix, in fp32 or with int8 weights."""

    def __init__(self, weight: Tensor, bias: Tensor | None, weights: str) -> None:
        self.weight, self.bias = weight.contiguous(), bias
        self.packed: object | None = None
        if weights == "int8":
            self.packed = pack_int8(self.weight, bias)

    def __call__(self, x: Tensor) -> Tensor:
        if self.packed is None:
            return F.linear(x, self.weight, self.bias)
        # reduce_range: 7-bit activations, as PyTorch's own x86 dynamic-quantization default. Without
        # it, AVX2 CPUs (no VNNI) saturate int16 partial sums: 100-300x the KL measured on an EPYC 7003.
        return torch.ops.quantized.linear_dynamic(x.contiguous(), self.packed, True)


def pack_int8(weight: Tensor, bias: Tensor | None) -> object:
    """Per-output-row symmetric int8 weights, packed for the CPU's int8 matrix kernels (fbgemm/onednn).

    A quarter of the bytes per character; activations are quantized on the fly per call.
    """
    with warnings.catch_warnings():  # torch.ao.quantization's deprecation notices
        warnings.simplefilter("ignore")
        scales = (weight.abs().amax(dim=1).clamp_min(1e-8) / 127).double()
        zeros = torch.zeros(weight.size(0), dtype=torch.long)
        qweight = torch.quantize_per_channel(weight, scales, zeros, 0, torch.qint8)
        return torch.ops.quantized.linear_prepack(qweight, bias)


Bias = Tensor | None


@dataclass(frozen=True)
class StepWeights:
    """The matrices a one-character step multiplies by, as (weight [out, in], bias) pairs, fp32.

    LSTM/RNN layers above the first put [W_ih | W_hh] side by side: one product for both inputs.
    GRU needs W_hn h apart (the reset gate multiplies it), so it keeps two products per layer.
    """

    embed: Tensor  # [V, E]
    input0: tuple[Tensor, Bias]  # layer 0's W_ih [G*H, E]; bias b_ih + b_hh (GRU: b_ih, as b_hn sits in r's product)
    hh: list[tuple[Tensor, Bias]]  # layer 0 (all cells) and every GRU layer: W_hh (+ b_hh for GRU)
    ih: list[tuple[Tensor, Bias]]  # GRU layers >= 1: W_ih + b_ih
    cat: list[tuple[Tensor, Bias]]  # LSTM/RNN layers >= 1: [W_ih | W_hh] + b_ih + b_hh
    head: tuple[Tensor, Bias]  # [V, H]


def step_weights(model: CharRNN) -> StepWeights:
    """The model's weights in the steppers' layout (shared by FastStepper and BlasStepper)."""
    cell, rnn = model.config.cell, model.rnn

    def weight(name: str) -> Tensor:
        return getattr(rnn, name).detach().float()

    with torch.no_grad():
        b_ih0, b_hh0 = weight("bias_ih_l0"), weight("bias_hh_l0")
        layout = StepWeights(
            embed=model.embed.weight.detach().float(),
            input0=(weight("weight_ih_l0"), b_ih0 + b_hh0 if cell != "gru" else b_ih0),
            hh=[],
            ih=[],
            cat=[],
            head=(model.head.weight.detach().float(), model.head.bias.detach().float()),
        )
        for layer in range(model.config.num_layers):
            w_hh, b_hh = weight(f"weight_hh_l{layer}"), weight(f"bias_hh_l{layer}")
            if layer == 0 or cell == "gru":
                layout.hh.append((w_hh, b_hh if cell == "gru" else None))
            if layer:
                w_ih, b_ih = weight(f"weight_ih_l{layer}"), weight(f"bias_ih_l{layer}")
                if cell == "gru":
                    layout.ih.append((w_ih, b_ih))
                else:
                    layout.cat.append((torch.cat([w_ih, w_hh], dim=1), b_ih + b_hh))
    return layout

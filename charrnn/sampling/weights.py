"""torch's side of the step weights: the model's tensors in charrnn.sampling.layout's layout, and
`Product`, one y = x W^T + b in fp32 or with int8 weights (FastStepper's)."""

from __future__ import annotations

import warnings

import torch
from torch import Tensor
from torch.nn import functional as F

from charrnn.model import CharRNN
from charrnn.sampling.layout import MAX_TABLE_BYTES, StepWeights, arrange, table_fits  # noqa: F401  (re-exported)


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


def step_weights(model: CharRNN) -> StepWeights:
    """The model's weights in the steppers' layout (charrnn.sampling.layout), as fp32 tensors."""
    with torch.no_grad():
        weights = {name: value.detach().float() for name, value in model.state_dict().items()}
        return arrange(model.config.cell, model.config.num_layers, weights, lambda parts: torch.cat(parts, dim=1))

"""Every layer's states and gates at every step: the model's recurrent layers run one step at a
time from its own weights (PyTorch's fused layers only return the top layer's h).

Equations as in torch.nn.LSTM / GRU / RNN (tanh); `tests/test_insight_cells.py` checks the top
layer against the fused module.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from charrnn.model import CharRNN

GATE_NAMES = {"lstm": ("input", "forget", "output"), "gru": ("reset", "update"), "rnn": ()}


@dataclass
class LayerSteps:
    """One layer over a window: h (and c) [B, T, H]; gates: name -> [B, T, H] (sigmoid gates only)."""

    h: Tensor
    c: Tensor | None
    gates: dict[str, Tensor]


class Stepper:
    """Runs `model`'s layers over windows of ids, carrying each layer's state between windows."""

    def __init__(self, model: CharRNN, keep_gates: bool = False) -> None:
        self.model = model
        self.cell = model.config.cell
        self.layers = model.config.num_layers
        self.keep_gates = keep_gates
        rnn = model.rnn
        self.w_ih = [getattr(rnn, f"weight_ih_l{i}") for i in range(self.layers)]
        self.w_hh = [getattr(rnn, f"weight_hh_l{i}").t().contiguous() for i in range(self.layers)]
        self.b_ih = [getattr(rnn, f"bias_ih_l{i}") for i in range(self.layers)]
        self.b_hh = [getattr(rnn, f"bias_hh_l{i}") for i in range(self.layers)]
        self.h: list[Tensor | None] = [None] * self.layers
        self.c: list[Tensor | None] = [None] * self.layers

    def reset(self) -> None:
        self.h = [None] * self.layers
        self.c = [None] * self.layers

    @torch.no_grad()
    def run(self, ids: Tensor) -> list[LayerSteps]:
        """ids [B, T] -> each layer's steps; the top layer's h feeds the model's head."""
        x = self.model.embed(ids)
        out: list[LayerSteps] = []
        for layer in range(self.layers):
            steps = self.layer(layer, x)
            out.append(steps)
            x = steps.h
        return out

    def layer(self, i: int, x: Tensor) -> LayerSteps:
        batch, length, _ = x.shape
        size = self.model.config.hidden_size
        pre = torch.addmm(self.b_ih[i], x.reshape(batch * length, -1), self.w_ih[i].t()).view(batch, length, -1)
        prev_h, prev_c = self.h[i], self.c[i]
        h: Tensor = prev_h if prev_h is not None else x.new_zeros(batch, size)
        c: Tensor = prev_c if prev_c is not None else x.new_zeros(batch, size)
        hs = x.new_empty(batch, length, size)
        cs = x.new_empty(batch, length, size) if self.cell == "lstm" else None
        names = GATE_NAMES[self.cell]
        gates = {name: x.new_empty(batch, length, size) for name in names} if self.keep_gates else {}
        for t in range(length):
            rec = torch.addmm(self.b_hh[i], h, self.w_hh[i])
            if self.cell == "lstm":
                g = pre[:, t] + rec
                ig, fg, gg, og = g.sigmoid().chunk(4, dim=1)
                gg = g[:, 2 * size : 3 * size].tanh()
                c = fg * c + ig * gg
                h = og * c.tanh()
                assert cs is not None
                cs[:, t] = c
                if gates:
                    gates["input"][:, t], gates["forget"][:, t], gates["output"][:, t] = ig, fg, og
            elif self.cell == "gru":
                xr, xz, xn = pre[:, t].chunk(3, dim=1)
                hr, hz, hn = rec.chunk(3, dim=1)
                r = (xr + hr).sigmoid()
                z = (xz + hz).sigmoid()
                n = (xn + r * hn).tanh()
                h = (1 - z) * n + z * h
                if gates:
                    gates["reset"][:, t], gates["update"][:, t] = r, z
            else:
                h = (pre[:, t] + rec).tanh()
            hs[:, t] = h
        self.h[i], self.c[i] = h, c
        return LayerSteps(hs, cs, gates)

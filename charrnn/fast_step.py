"""One character per stream per call, without nn.LSTM's per-call overhead.

Calling `nn.LSTM` once per character spends most of its time in framework overhead (argument
checks, weight flattening, oneDNN primitive setup), not arithmetic. Sampling only ever needs one
time step, so `FastStepper` computes it as a handful of matrix products on the same weights:

    layer 0:   gates = table[id] + W_hh0 h0             table = embed W_ih0^T + b_ih0 (+ b_hh0): [V, G*H]
    layer l:   gates = [W_ih | W_hh] [x; h] + b         one product for both inputs
    head:      logits = W_head h_top + b                [N, V]

The gate arithmetic follows PyTorch's definitions exactly (LSTM i,f,g,o; GRU r,z,n with the reset
gate applied to `W_hn h + b_hn`; RNN tanh), so logits match `CharRNN.forward` within float
rounding. `ModuleStepper` is the plain reference: the model's own forward, one character a call.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor
from torch.nn import functional as F

from charrnn.errors import ConfigError
from charrnn.model import CharRNN, State

GATES = {"lstm": 4, "gru": 3, "rnn": 1}
MAX_TABLE_BYTES = 64 * 1024 * 1024  # beyond this, layer 0 multiplies the embedding instead


class Stepper(Protocol):
    """Advances N streams by one character: ids [N] -> logits [N, V] (fp32)."""

    def step(self, ids: Tensor) -> Tensor: ...

    def load_state(self, state: State) -> None: ...

    def select(self, rows: Tensor) -> None: ...


class ModuleStepper:
    """The reference path: `CharRNN.forward` on one character (slow, but obviously right)."""

    def __init__(self, model: CharRNN) -> None:
        self.model = model
        self.state: State | None = None

    def load_state(self, state: State) -> None:
        self.state = state

    def select(self, rows: Tensor) -> None:
        """Keep only the streams in `rows` (finished streams are dropped)."""
        if isinstance(self.state, tuple):
            self.state = tuple(s[:, rows] for s in self.state)  # type: ignore[assignment]
        elif self.state is not None:
            self.state = self.state[:, rows]

    def step(self, ids: Tensor) -> Tensor:
        logits, self.state = self.model(ids.view(-1, 1), self.state)
        return logits[:, -1].float()


class FastStepper:
    """The same network as matrix products on the same weights (see the module docstring)."""

    def __init__(self, model: CharRNN) -> None:
        config = model.config
        self.cell = config.cell
        self.hidden = config.hidden_size
        self.layers = config.num_layers
        g, h = GATES[self.cell], self.hidden
        rnn = model.rnn
        with torch.no_grad():

            def weight(name: str) -> Tensor:
                return getattr(rnn, name).detach().float()

            self.embed = model.embed.weight.detach().float()
            b_ih0, b_hh0 = weight("bias_ih_l0"), weight("bias_hh_l0")
            # GRU keeps b_hn apart: it sits inside the reset gate's product.
            self.b0 = b_ih0 + b_hh0 if self.cell != "gru" else b_ih0
            self.w_ih0 = weight("weight_ih_l0")  # [G*H, E]
            self.table: Tensor | None = None
            if self.embed.size(0) * g * h * 4 <= MAX_TABLE_BYTES:
                self.table = F.linear(self.embed, self.w_ih0, self.b0).contiguous()  # [V, G*H]
            # Layers above the first: [W_ih | W_hh] side by side, so one product serves both inputs.
            self.w_hh: list[Tensor] = []  # GRU and layer 0: [G*H, H]
            self.b_hh: list[Tensor] = []
            self.w_cat: list[Tensor] = []  # LSTM/RNN layers >= 1: [G*H, 2H]
            self.b_cat: list[Tensor] = []
            self.w_ih: list[Tensor] = []  # GRU layers >= 1: [G*H, H]
            self.b_ih: list[Tensor] = []
            for layer in range(self.layers):
                w_hh, b_hh = weight(f"weight_hh_l{layer}"), weight(f"bias_hh_l{layer}")
                self.w_hh.append(w_hh.contiguous())
                self.b_hh.append(b_hh)
                if layer:
                    w_ih, b_ih = weight(f"weight_ih_l{layer}"), weight(f"bias_ih_l{layer}")
                    self.w_ih.append(w_ih.contiguous())
                    self.b_ih.append(b_ih)
                    if self.cell != "gru":
                        self.w_cat.append(torch.cat([w_ih, w_hh], dim=1).contiguous())
                        self.b_cat.append(b_ih + b_hh)
            self.head_w = model.head.weight.detach().float().contiguous()  # [V, H]
            self.head_b = model.head.bias.detach().float()
        self.h: list[Tensor] = []
        self.c: list[Tensor] = []

    def load_state(self, state: State) -> None:
        """Take the state the model's forward returned (after the prime): [L, N, H] each."""
        if isinstance(state, tuple):
            h, c = state
            self.c = [c[layer].float().contiguous() for layer in range(self.layers)]
        else:
            h = state
        self.h = [h[layer].float().contiguous() for layer in range(self.layers)]

    def select(self, rows: Tensor) -> None:
        """Keep only the streams in `rows` (finished streams are dropped)."""
        self.h = [x.index_select(0, rows) for x in self.h]
        self.c = [x.index_select(0, rows) for x in self.c]

    def state(self) -> State:
        """The state in nn.LSTM's layout, [L, N, H] (for handing back to the model)."""
        h = torch.stack(self.h)
        return (h, torch.stack(self.c)) if self.cell == "lstm" else h

    def _input_gates(self, ids: Tensor) -> Tensor:
        """W_ih x + bias for layer 0 (a table row per id when the table fits)."""
        if self.table is not None:
            return self.table.index_select(0, ids)  # [N, G*H]
        return F.linear(self.embed.index_select(0, ids), self.w_ih0, self.b0)

    def step(self, ids: Tensor) -> Tensor:
        """ids [N] -> logits [N, V], advancing every stream's state by one character."""
        hidden = self.hidden
        x = self.h[0]  # replaced by each layer's output
        for layer in range(self.layers):
            h = self.h[layer]
            if self.cell == "gru":
                gi = self._input_gates(ids) if layer == 0 else F.linear(x, self.w_ih[layer - 1], self.b_ih[layer - 1])
                gh = F.linear(h, self.w_hh[layer], self.b_hh[layer])
                r, z = (gi[:, : 2 * hidden] + gh[:, : 2 * hidden]).sigmoid_().chunk(2, dim=1)
                n = torch.addcmul(gi[:, 2 * hidden :], r, gh[:, 2 * hidden :]).tanh_()
                h = torch.addcmul(n, z, h - n)  # (1 - z) * n + z * h
            else:
                if layer == 0:
                    gates = self._input_gates(ids).add_(F.linear(h, self.w_hh[0]))
                else:
                    gates = F.linear(torch.cat([x, h], dim=1), self.w_cat[layer - 1], self.b_cat[layer - 1])
                if self.cell == "lstm":
                    i, f, g, o = gates.chunk(4, dim=1)
                    c = torch.addcmul(f.sigmoid_() * self.c[layer], i.sigmoid_(), g.tanh_())
                    h = o.sigmoid_().mul_(c.tanh())
                    self.c[layer] = c
                else:
                    h = gates.tanh_()
            self.h[layer] = h
            x = h
        return F.linear(x, self.head_w, self.head_b)


def make_stepper(model: CharRNN, engine: str = "fast") -> Stepper:
    """`fast` (matrix products, the default) or `module` (the model's own forward per character)."""
    if engine == "module":
        return ModuleStepper(model)
    if engine == "fast":
        return FastStepper(model)
    raise ConfigError(f"unknown engine {engine!r}; use fast or module")

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

On the CPU in fp32, `make_stepper` runs this same arithmetic in numpy instead
(charrnn.sampling.blas.BlasStepper): torch's per-operation dispatch dominates a one-stream step there.
`FastStepper` is the path for GPUs and for int8. `sampling_threads` gives the cores to whichever
thread pool runs the products and keeps the other at one thread: numpy's BLAS and torch's OpenMP
team both spinning on the same two cores made a step 80x slower (21 ms vs 0.27 ms).

`weights="int8"` (opt-in, CPU) stores the recurrent matrices as per-row int8 and runs
them through PyTorch's int8 kernels: a quarter of the bytes per character, a slightly different
distribution (measured in benchmarks/sample_speed.py --checkpoint), so a seed's text changes.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from charrnn.choices import Weights
from charrnn.errors import ConfigError
from charrnn.model import GATES, CharRNN, State
from charrnn.sampling.steppers_protocol import Stepper
from charrnn.sampling.threads import runs_in_numpy
from charrnn.sampling.weights import Product, step_weights, table_fits

WEIGHTS = tuple(kind.value for kind in Weights)


def to_torch(x: Any, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    """A numpy array or a tensor as a tensor on `device`."""
    tensor = x if isinstance(x, Tensor) else torch.as_tensor(x)
    return tensor.to(device=device, dtype=dtype)


def state_to_torch(state: Any, device: torch.device) -> State:
    if isinstance(state, tuple):
        return tuple(to_torch(s, device) for s in state)  # type: ignore[return-value]
    return to_torch(state, device)


def joined(a: State, b: State) -> State:
    """Two batches of recurrent state side by side: [L, N1, H] + [L, N2, H] -> [L, N1+N2, H]."""
    if isinstance(a, tuple):
        assert isinstance(b, tuple)
        return tuple(torch.cat([x, y], dim=1) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]
    assert isinstance(b, Tensor)
    return torch.cat([a, b], dim=1)


class ModuleStepper:
    """The reference path: `CharRNN.forward` on one character (slow, but obviously right)."""

    def __init__(self, model: CharRNN) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.current: State | None = None

    def load_state(self, state: Any) -> None:
        self.current = state_to_torch(state, self.device)

    def extend(self, state: Any) -> None:
        incoming = state_to_torch(state, self.device)
        self.current = incoming if self.current is None else joined(self.current, incoming)

    def select(self, rows: Any) -> None:
        """Keep only the streams in `rows` (finished streams are dropped)."""
        rows = to_torch(rows, self.device, torch.long)
        if isinstance(self.current, tuple):
            self.current = tuple(s[:, rows] for s in self.current)  # type: ignore[assignment]
        elif self.current is not None:
            self.current = self.current[:, rows]

    def state(self) -> State:
        assert self.current is not None
        return self.current

    @torch.inference_mode()
    def step(self, ids: Any) -> Tensor:
        ids = to_torch(ids, self.device, torch.long)
        logits, self.current = self.model(ids.view(-1, 1), self.current)
        return logits[:, -1].float()


class FastStepper:
    """The same network as matrix products on the same weights (see the module docstring)."""

    def __init__(self, model: CharRNN, weights: str = "fp32") -> None:
        check_engine(model, "fast", weights)
        config = model.config
        self.cell = config.cell
        self.hidden = config.hidden_size
        self.layers = config.num_layers
        self.device = next(model.parameters()).device
        layout = step_weights(model)
        self.embed = layout.embed
        self.input0 = Product(*layout.input0, "fp32")  # [G*H, E]
        self.table: Tensor | None = None
        if table_fits(self.embed.size(0), GATES[self.cell] * self.hidden):
            with torch.no_grad():
                self.table = self.input0(self.embed).contiguous()  # [V, G*H], exact whatever `weights`
        self.hh = [Product(w, b, weights) for w, b in layout.hh]
        self.ih = [Product(w, b, weights) for w, b in layout.ih]
        self.cat = [Product(w, b, weights) for w, b in layout.cat]
        # The head stays fp32 whatever `weights`: [V, H] is a few hundred KB, and an int8 call's
        # fixed cost (quantizing the input, requantizing the output) made it 4x slower (27 vs 6 us).
        self.head = Product(*layout.head, "fp32")
        self.h: list[Tensor] = []
        self.c: list[Tensor] = []

    def load_state(self, state: Any) -> None:
        """Take a state [L, N, H] each ((h, c) for LSTM), as the model's forward returns it."""
        state = state_to_torch(state, self.device)
        if isinstance(state, tuple):
            h, c = state
            self.c = [c[layer].contiguous() for layer in range(self.layers)]
        else:
            h = state
        self.h = [h[layer].contiguous() for layer in range(self.layers)]

    def extend(self, state: Any) -> None:
        """More streams join after the ones here."""
        if not self.h:
            self.load_state(state)
        else:
            self.load_state(joined(self.state(), state_to_torch(state, self.device)))

    def select(self, rows: Any) -> None:
        """Keep only the streams in `rows` (finished streams are dropped)."""
        rows = to_torch(rows, self.device, torch.long)
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
        return self.input0(self.embed.index_select(0, ids))

    @torch.inference_mode()
    def step(self, ids: Any) -> Tensor:
        """ids [N] -> logits [N, V], advancing every stream's state by one character."""
        ids = to_torch(ids, self.device, torch.long)
        hidden = self.hidden
        x = self.h[0]  # replaced by each layer's output
        for layer in range(self.layers):
            h = self.h[layer]
            if self.cell == "gru":
                gi = self._input_gates(ids) if layer == 0 else self.ih[layer - 1](x)
                gh = self.hh[layer](h)
                r, z = (gi[:, : 2 * hidden] + gh[:, : 2 * hidden]).sigmoid_().chunk(2, dim=1)
                n = torch.addcmul(gi[:, 2 * hidden :], r, gh[:, 2 * hidden :]).tanh_()
                h = torch.addcmul(n, z, h - n)  # (1 - z) * n + z * h
            else:
                if layer == 0:
                    gates = self._input_gates(ids).add_(self.hh[0](h))
                else:
                    gates = self.cat[layer - 1](torch.cat([x, h], dim=1))
                if self.cell == "lstm":
                    i, f, g, o = gates.chunk(4, dim=1)
                    c = torch.addcmul(f.sigmoid_() * self.c[layer], i.sigmoid_(), g.tanh_())
                    h = o.sigmoid_().mul_(c.tanh())
                    self.c[layer] = c
                else:
                    h = gates.tanh_()
            self.h[layer] = h
            x = h
        return self.head(x)


def check_engine(model: CharRNN, engine: str, weights: str) -> None:
    """ConfigError unless `engine` and `weights` name a stepper that runs this model where it is."""
    if engine not in ("fast", "module"):
        raise ConfigError(f"unknown engine {engine!r}; use fast or module")
    if weights not in WEIGHTS:
        raise ConfigError(f"unknown --weights {weights!r}; use one of {', '.join(WEIGHTS)}")
    if engine == "module" and weights != "fp32":
        raise ConfigError("--engine module runs the model's own fp32 weights; use --weights fp32")
    if weights == "int8" and next(model.parameters()).device.type != "cpu":
        raise ConfigError("--weights int8 runs on the CPU only; use --device cpu or --weights fp32")


def make_stepper(model: CharRNN, engine: str = "fast", weights: str = "fp32") -> Stepper:
    """`fast` (matrix products, the default: numpy on the CPU in fp32) or `module` (the model's own forward)."""
    check_engine(model, engine, weights)
    if engine == "module":
        return ModuleStepper(model)
    if runs_in_numpy(engine, weights, next(model.parameters()).device):
        from charrnn.sampling.blas import BlasStepper  # numpy: loaded only where it runs

        return BlasStepper(model)
    return FastStepper(model, weights)

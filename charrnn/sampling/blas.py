"""The CPU fp32 step in numpy: the same products as `FastStepper`, at a fraction of the overhead.

One stream of a 2x512 LSTM is three matrix-vector products and some thirty small elementwise
operations per character. In torch each of those operations costs a few microseconds of dispatch;
numpy's cost a fraction of one. And numpy's BLAS (OpenBLAS in its wheels) ran the products faster
than the torch wheel's MKL on an AMD EPYC (2048x1024 matrix-vector product: 176 vs 205 us on one
thread) and, unlike torch's OpenMP team, splits one stream's products over two cores. Measured in
one run (`python benchmarks/sample_speed.py`), the whole one-stream step went from 624 to 265 us.

The arithmetic is `FastStepper`'s (see charrnn.sampling.steppers for the layout): layer 0 reads a
precomputed row of `embed W_ih0^T + b` per id, higher layers multiply [x; h] by [W_ih | W_hh]
in one product, and the gate formulas are PyTorch's. Logits match the model's forward within
float rounding (tests/test_sample_fast.py). `sigmoid` is computed as 0.5 tanh(x / 2) + 0.5,
the same function without exp's overflow warnings for large negative inputs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from charrnn.model_config import GATES, ModelConfig
from charrnn.sampling.layout import arrange, table_fits

if TYPE_CHECKING:
    from charrnn.model import CharRNN

NumpyState = tuple[np.ndarray, np.ndarray] | np.ndarray  # [L, N, H]: (h, c) for LSTM, h otherwise


def as_array(x: Any) -> np.ndarray:
    """A float32 numpy copy of a numpy array or a torch tensor (on any device)."""
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.array(x, dtype=np.float32)


def sigmoid_(x: np.ndarray) -> np.ndarray:
    """In place: 1 / (1 + e^-x), as 0.5 tanh(x / 2) + 0.5 (no overflow for very negative x)."""
    x *= 0.5
    np.tanh(x, out=x)
    x *= 0.5
    x += 0.5
    return x


class Product:
    """y = x W^T + b through numpy's BLAS; W^T is a view of the weight, not a copy."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None) -> None:
        self.weight_t = np.ascontiguousarray(weight, dtype=np.float32).T
        self.bias = None if bias is None else np.ascontiguousarray(bias, dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x @ self.weight_t
        if self.bias is not None:
            y += self.bias
        return y


class BlasStepper:
    """Advances N streams one character per call on the CPU in fp32 (the `fast` engine's CPU path)."""

    def __init__(self, model: CharRNN) -> None:
        weights = {name: as_array(value) for name, value in model.state_dict().items()}
        self._build(model.config, weights)

    @classmethod
    def from_arrays(cls, config: ModelConfig, weights: Mapping[str, np.ndarray]) -> BlasStepper:
        """A stepper on a checkpoint's arrays (charrnn.store.light): no torch anywhere."""
        stepper = cls.__new__(cls)
        stepper._build(config, weights)
        return stepper

    def _build(self, config: ModelConfig, weights: Mapping[str, np.ndarray]) -> None:
        self.cell = config.cell
        self.hidden = config.hidden_size
        self.layers = config.num_layers
        layout = arrange(config.cell, config.num_layers, weights, lambda parts: np.concatenate(parts, axis=1))
        self.embed = np.ascontiguousarray(layout.embed, dtype=np.float32)
        self.input0 = Product(*layout.input0)
        self.table: np.ndarray | None = None
        if table_fits(self.embed.shape[0], GATES[self.cell] * self.hidden):
            self.table = np.ascontiguousarray(self.input0(self.embed))  # [V, G*H]
        self.hh = [Product(w, b) for w, b in layout.hh]
        self.ih = [Product(w, b) for w, b in layout.ih]
        self.cat = [Product(w, b) for w, b in layout.cat]
        self.head = Product(*layout.head)
        self.h: list[np.ndarray] = []
        self.c: list[np.ndarray] = []

    def fresh(self) -> BlasStepper:
        """A stepper on the same weights (shared, read only) with no streams: the layout is built once."""
        twin = copy.copy(self)
        twin.h, twin.c = [], []
        return twin

    def load_state(self, state: Any) -> None:
        """Take a state [L, N, H] each ((h, c) for LSTM): the model's forward's, or this stepper's own."""
        if isinstance(state, tuple):
            h, c = state
            self.c = [as_array(c[layer]) for layer in range(self.layers)]
        else:
            h = state
        self.h = [as_array(h[layer]) for layer in range(self.layers)]

    def extend(self, state: Any) -> None:
        """More streams join after the ones here (their state [L, n, H] as `load_state` takes it)."""
        if not self.h:
            self.load_state(state)
            return
        h, c = state if isinstance(state, tuple) else (state, None)
        self.h = [np.concatenate([mine, as_array(h[layer])]) for layer, mine in enumerate(self.h)]
        if c is not None:
            self.c = [np.concatenate([mine, as_array(c[layer])]) for layer, mine in enumerate(self.c)]

    def select(self, rows: Any) -> None:
        """Keep only the streams in `rows`, in that order (a number may repeat: beam search forks)."""
        keep = np.asarray(rows.cpu() if hasattr(rows, "cpu") else rows, dtype=np.int64)
        self.h = [x[keep] for x in self.h]
        self.c = [x[keep] for x in self.c]

    def state(self) -> NumpyState:
        """The state in nn.LSTM's layout, [L, N, H] (numpy)."""
        h = np.stack(self.h)
        return (h, np.stack(self.c)) if self.cell == "lstm" else h

    def _input_gates(self, ids: np.ndarray) -> np.ndarray:
        """W_ih x + bias for layer 0 (a table row per id when the table fits)."""
        if self.table is not None:
            return self.table[ids]  # [N, G*H], a copy
        return self.input0(self.embed[ids])

    def step(self, ids: Any) -> Any:
        """ids [N] -> logits [N, V] (fp32), advancing every stream's state by one character; a torch
        tensor in, a torch tensor out (numpy callers use `step_numpy`)."""
        import torch

        return torch.from_numpy(self.step_numpy(ids.numpy()))

    def step_numpy(self, index: np.ndarray) -> np.ndarray:
        """`step` on numpy arrays: what the engine calls, without a torch round trip per character."""
        hidden = self.hidden
        x = self.h[0]  # replaced by each layer's output
        for layer in range(self.layers):
            h = self.h[layer]
            if self.cell == "gru":
                gi = self._input_gates(index) if layer == 0 else self.ih[layer - 1](x)
                gh = self.hh[layer](h)
                rz = sigmoid_(gi[:, : 2 * hidden] + gh[:, : 2 * hidden])
                r, z = rz[:, :hidden], rz[:, hidden:]
                n = gh[:, 2 * hidden :] * r
                n += gi[:, 2 * hidden :]
                np.tanh(n, out=n)
                h = z * (h - n)
                h += n  # (1 - z) * n + z * h
            else:
                if layer == 0:
                    gates = self._input_gates(index)
                    gates += self.hh[0](h)
                else:
                    gates = self.cat[layer - 1](np.concatenate((x, h), axis=1))
                if self.cell == "lstm":
                    sigmoid_(gates[:, : 2 * hidden])  # i, f
                    g = np.tanh(gates[:, 2 * hidden : 3 * hidden], out=gates[:, 2 * hidden : 3 * hidden])
                    o = sigmoid_(gates[:, 3 * hidden :])
                    c = gates[:, hidden : 2 * hidden] * self.c[layer]
                    c += gates[:, :hidden] * g
                    h = np.tanh(c)
                    h *= o
                    self.c[layer] = c
                else:
                    h = np.tanh(gates, out=gates)
            self.h[layer] = h
            x = h
        return self.head(x)

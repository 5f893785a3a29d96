"""Which units track what: every layer's h (and c) streamed over a text, with running sums only.

Memory stays streams x window x units however long the text is: per window the states are reduced
to sums (x, x^2, x*feature) and dropped. Only the units asked for (`trace`) keep one value per
character. Layout as `evaluate_ids`: contiguous chunks side by side, each warmed up on the 256
characters before it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from charrnn.evaluate import BURN_IN, MIN_CHARS_PER_STREAM, stream_layout
from charrnn.insight.cells import GATE_NAMES, LayerSteps, Stepper
from charrnn.insight.units import UnitRef, all_kinds
from charrnn.model import CharRNN

WINDOW = 128
WINDOW_POSITIONS = 8192  # streams x window: bounds the states held per window (~8192 x units x 4 B each)
MAX_STREAMS = 256  # more rows than eval's 64: each step's product is then a better-shaped GEMM
LOW, HIGH = 0.1, 0.9  # a gate is saturated below LOW (left) or above HIGH (right)


@dataclass(frozen=True)
class UnitScore:
    unit: UnitRef
    feature: str
    r: float


@dataclass(frozen=True)
class GateStat:
    """Fraction of (step, unit) pairs where a layer's gate is below 0.1 (left) or above 0.9 (right)."""

    layer: int
    gate: str
    left: float
    right: float


@dataclass
class NeuronReport:
    units: list[UnitRef]  # the column order of `corr`
    features: list[str]
    corr: np.ndarray  # [U, F] Pearson r (0 where a unit or feature is constant)
    chars: int
    traces: dict[UnitRef, np.ndarray] = field(default_factory=dict)  # float32 [chars]
    gates: list[GateStat] = field(default_factory=list)

    def best(self, feature: str, count: int = 3) -> list[UnitScore]:
        """The units whose values correlate most (either sign) with `feature`."""
        col = self.corr[:, self.features.index(feature)]
        order = np.argsort(-np.abs(col), kind="stable")[:count]
        return [UnitScore(self.units[i], feature, float(col[i])) for i in order]

    def selective(self, count: int = 10) -> list[UnitScore]:
        """The units with the strongest correlation with any one feature, each with that feature."""
        if not self.features:
            return []
        strongest = np.abs(self.corr).argmax(axis=1)
        r = self.corr[np.arange(len(self.units)), strongest]
        order = np.argsort(-np.abs(r), kind="stable")[:count]
        return [UnitScore(self.units[i], self.features[strongest[i]], float(r[i])) for i in order]


def unit_columns(model: CharRNN) -> list[UnitRef]:
    """Layer by layer, h then c, index by index."""
    config = model.config
    return [
        UnitRef(layer, kind, index)
        for layer in range(config.num_layers)
        for kind in all_kinds(config)
        for index in range(config.hidden_size)
    ]


def window_states(steps: list[LayerSteps]) -> torch.Tensor:
    """[B, T, U] in `unit_columns` order."""
    parts: list[torch.Tensor] = []
    for layer in steps:
        parts.append(layer.h)
        if layer.c is not None:
            parts.append(layer.c)
    return torch.cat(parts, dim=-1)


def pearson(n: int, sx: np.ndarray, sxx: np.ndarray, sf: np.ndarray, sff: np.ndarray, sxf: np.ndarray) -> np.ndarray:
    cov = n * sxf - np.outer(sx, sf)
    var_x = np.maximum(n * sxx - sx * sx, 0.0)
    var_f = np.maximum(n * sff - sf * sf, 0.0)
    denom = np.sqrt(np.outer(var_x, var_f))
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(denom > 1e-12 * max(1, n) ** 2, cov / denom, 0.0)
    return np.clip(r, -1.0, 1.0)


@torch.no_grad()
def record(
    model: CharRNN,
    ids: np.ndarray,
    device: torch.device,
    features: tuple[list[str], np.ndarray] | None = None,
    trace: tuple[UnitRef, ...] = (),
    gates: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> NeuronReport:
    """Run `ids` through the model step by step; correlate every unit with each feature column."""
    n = int(ids.size)
    names, values = features if features is not None else ([], np.zeros((n, 0), dtype=np.float32))
    columns = unit_columns(model)
    where = {unit: i for i, unit in enumerate(columns)}
    num_units = len(columns)
    sx, sxx = np.zeros(num_units), np.zeros(num_units)
    sxf = np.zeros((num_units, len(names)))
    traces = {unit: np.zeros(n, dtype=np.float32) for unit in trace}
    trace_cols = torch.tensor([where[unit] for unit in trace], dtype=torch.long, device=device)
    gate_names = GATE_NAMES[model.config.cell] if gates else ()
    layers = model.config.num_layers
    low = np.zeros((layers, len(gate_names)))
    high = np.zeros((layers, len(gate_names)))

    streams, chunk = stream_layout(n, max(1, min(MAX_STREAMS, n // MIN_CHARS_PER_STREAM)))
    starts = np.arange(streams, dtype=np.int64) * chunk
    warm = np.minimum(BURN_IN, starts)
    begins = starts - warm
    lengths = np.minimum(chunk, n - starts) + warm
    width = int(lengths.max(initial=0))
    stepper = Stepper(model, keep_gates=gates)
    was_training = model.training
    model.eval()
    counted = 0
    window = max(16, min(WINDOW, WINDOW_POSITIONS // streams))
    for pos in range(0, width, window):
        cols = np.arange(pos, min(pos + window, width), dtype=np.int64)
        live = cols[None, :] < lengths[:, None]
        index = np.where(live, begins[:, None] + cols[None, :], 0)
        steps = stepper.run(torch.from_numpy(np.asarray(ids[index], dtype=np.int64)).to(device))
        scored_np = live & (cols[None, :] >= warm[:, None])
        scored = torch.from_numpy(scored_np).to(device)
        at = index[scored_np]
        states = window_states(steps)[scored]  # [M, U]
        counted += int(at.size)
        sx += states.sum(0, dtype=torch.float64).cpu().numpy()
        sxx += (states * states).sum(0, dtype=torch.float64).cpu().numpy()
        if names:
            feats = torch.from_numpy(values[at]).to(device)
            sxf += (states.t() @ feats).double().cpu().numpy()
        if trace:
            picked = states[:, trace_cols].cpu().numpy()
            for j, unit in enumerate(trace):
                traces[unit][at] = picked[:, j]
        for layer, layer_steps in enumerate(steps):
            for g, gate in enumerate(gate_names):
                vals = layer_steps.gates[gate][scored]
                low[layer, g] += float((vals < LOW).sum())
                high[layer, g] += float((vals > HIGH).sum())
        if progress is not None:
            progress(min(pos + window, width), width)
    model.train(was_training)
    f64 = values.astype(np.float64)
    corr = pearson(counted, sx, sxx, f64.sum(0), (f64 * f64).sum(0), sxf)
    size = max(1, counted * model.config.hidden_size)
    gate_stats = [
        GateStat(layer, gate, low[layer, g] / size, high[layer, g] / size)
        for layer in range(layers)
        for g, gate in enumerate(gate_names)
    ]
    return NeuronReport(columns, names, corr, counted, traces, gate_stats)

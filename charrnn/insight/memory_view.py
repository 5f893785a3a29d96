"""The memory report as rows with bars (a terminal chart), JSON, and a PNG when matplotlib is there."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

from charrnn.errors import ConfigError
from charrnn.files import write_output
from charrnn.insight.memory import MemoryReport

BAR = 40


def bar(fraction: float, width: int = BAR) -> str:
    cells = max(0, min(width, round(fraction * width)))
    return "█" * cells


def powers(limit: int) -> list[int]:
    out, k = [], 1
    while k <= limit:
        out.append(k)
        k *= 2
    return out


def memory_lines(report: MemoryReport) -> list[str]:
    ctx, grad = report.context, report.gradient
    top = max([*ctx.bits, ctx.full_bits, 1e-9])
    base, gain = ctx.bits[0], ctx.bits[0] - ctx.full_bits
    lines = [f"context curve: bits/char with only the last k characters seen ({ctx.positions} positions)", ""]
    lines.append(f"{'k':>6}  {'bits/char':>9}  {'gain':>5}")
    for k, b in zip(ctx.contexts, ctx.bits, strict=True):
        share = (base - b) / gain if gain > 0 else 0.0
        lines.append(f"{k:>6}  {b:>9.4f}  {share:>5.0%}  {bar(b / top)}")
    lines.append(f"{'full':>6}  {ctx.full_bits:>9.4f}  {1:>5.0%}  {bar(ctx.full_bits / top)}")
    k90 = ctx.gain_context(0.9)
    longest = ctx.contexts[-1]
    if k90 is None:
        lines.append(f"\n90% of the gain needs more than {longest} characters of context (or the model gains nothing)")
    else:
        lines.append(f"\n90% of the gain from context comes within the last {k90} characters")
    lines += ["", f"gradient through time: mean |d log p(x_t) / d input(t-k)| ({grad.positions} positions)", ""]
    shown = [k for k in powers(len(grad.norms))]
    logs = [math.log10(max(grad.norms[k - 1], 1e-30)) for k in shown]
    lo, hi = min(logs), max(logs)
    for k, value, lg in zip(shown, (grad.norms[k - 1] for k in shown), logs, strict=True):
        frac = (lg - lo) / (hi - lo) if hi > lo else 1.0
        lines.append(f"{k:>6}  {value:>9.2e}  {bar(0.02 + 0.98 * frac)}")
    if report.gates:
        lines += ["", "gate saturation: share of steps x units below 0.1 (left) / above 0.9 (right)", ""]
        for g in report.gates:
            lines.append(f"  layer {g.layer}  {g.gate:<8} left {g.left:6.1%}  right {g.right:6.1%}")
    return [line + "\n" for line in lines]


def memory_json(report: MemoryReport) -> dict[str, Any]:
    ctx, grad = report.context, report.gradient
    return {
        "context": {
            "k": ctx.contexts,
            "bits_per_char": ctx.bits,
            "full_bits_per_char": ctx.full_bits,
            "positions": ctx.positions,
            "context_for_90pct_gain": ctx.gain_context(0.9),
        },
        "gradient": {"k": list(range(1, len(grad.norms) + 1)), "norm": grad.norms, "positions": grad.positions},
        "gates": [{"layer": g.layer, "gate": g.gate, "left": g.left, "right": g.right} for g in report.gates],
    }


def memory_png(report: MemoryReport, path: Path, title: str = "") -> None:
    """Two panels: the context curve against the carried state, and the gradient against k (log-log)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ConfigError("-o needs matplotlib: pip install 'charrnn[plot]'") from None
    ctx, grad = report.context, report.gradient
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    ks = ctx.contexts[1:]
    left.plot(ks, ctx.bits[1:], "o-", label="last k characters only")
    left.axhline(ctx.full_bits, color="k", linestyle="--", label="full carried state")
    left.set_xscale("log", base=2)
    left.set(xlabel="context k (characters)", ylabel="bits/char", title="context curve")
    left.legend()
    right.plot(range(1, len(grad.norms) + 1), grad.norms)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set(xlabel="k (steps back)", ylabel="mean |d log p / d input|", title="gradient through time")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    image = io.BytesIO()
    try:
        fig.savefig(image, format="png", dpi=110)
    finally:
        plt.close(fig)
    write_output(path, image.getvalue(), "image")

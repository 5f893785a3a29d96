"""`charrnn plot`: loss curves of one or several runs, in the terminal or as an image file.

The terminal chart needs nothing beyond Rich. Image files need matplotlib, an optional extra
(`pip install 'charrnn[plot]'`), imported only when `-o` is given.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

from rich.text import Text

from charrnn.cli.curve import loss_lines, render
from charrnn.errors import CharRNNError, ConfigError
from charrnn.files import write_output
from charrnn.store.metrics import RunLog

X_AXES = {"step": "step", "time": "elapsed_s", "epoch": "epoch"}
X_LABELS = {"step": "step", "time": "seconds", "epoch": "epoch"}
IMAGE_FORMATS = {".png": "png", ".svg": "svg", ".pdf": "pdf", ".jpg": "jpeg", ".jpeg": "jpeg"}


class MissingPlotLibrary(CharRNNError):
    """matplotlib is not installed (a runtime failure: exit 1)."""


def x_key(x: str) -> str:
    if x not in X_AXES:
        raise ConfigError(f"--x {x!r}: use one of {', '.join(X_AXES)}")
    return X_AXES[x]


def labels(runs: Sequence[RunLog]) -> list[str]:
    """Short unique names: the directory name, or more of the path when names clash."""
    names = [run.name for run in runs]
    if len(set(names)) == len(names):
        return names
    return [str(run.path) for run in runs]


def terminal_chart(
    runs: Sequence[RunLog], x: str = "step", width: int = 80, height: int = 14, ascii_only: bool = False
) -> list[Text]:
    """All runs on one character chart: one colour per run, train dotted, validation marked."""
    key = x_key(x)
    names = labels(runs)
    series = [(name, run.series("train", key), run.series("val", key)) for name, run in zip(names, runs, strict=True)]
    return render(loss_lines(series), width=width, height=height, x_label=X_LABELS[x], ascii_only=ascii_only)


def write_image(runs: Sequence[RunLog], output: Path, x: str = "step") -> Path:
    """Draw the runs with matplotlib into `output` (PNG, SVG or PDF by its suffix)."""
    key = x_key(x)
    if output.suffix.lower() not in IMAGE_FORMATS:
        raise ConfigError(f"-o {output}: name an image file ending in .png, .svg or .pdf")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingPlotLibrary(
            "writing an image needs matplotlib: pip install 'charrnn[plot]' (or pip install matplotlib); "
            "without -o the chart is drawn in the terminal"
        ) from None
    fig, ax = plt.subplots(figsize=(9, 5), dpi=120)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (name, run) in enumerate(zip(labels(runs), runs, strict=True)):
        color = colors[index % len(colors)]
        tx, ty = run.series("train", key)
        vx, vy = run.series("val", key)
        if tx:
            marker = "." if len(tx) == 1 else None
            ax.plot(tx, ty, color=color, alpha=0.45, linewidth=1.2, marker=marker, label=f"{name} train")
        if vx:
            ax.plot(vx, vy, color=color, marker="o", markersize=4, linewidth=2.0, label=f"{name} val")
    ax.set_xlabel(X_LABELS[x])
    ax.set_ylabel("loss (nats/char)")
    ln2 = math.log(2)
    right = ax.secondary_yaxis("right", functions=(lambda n: n / ln2, lambda b: b * ln2))  # type: ignore[operator]
    right.set_ylabel("bits/char")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    ax.set_title("charrnn: " + ", ".join(labels(runs)) if len(runs) <= 4 else f"charrnn: {len(runs)} runs")
    fig.tight_layout()
    image = io.BytesIO()
    try:
        fig.savefig(image, format=IMAGE_FORMATS[output.suffix.lower()])
    finally:
        plt.close(fig)
    write_output(output, image.getvalue(), "image")
    return output

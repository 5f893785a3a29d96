"""Plot `charrnn memory --json` outputs side by side: the gradient-through-time and context curves.

    charrnn memory held.txt -c RUN --json > rnn.json   # one per model
    python benchmarks/gradient_curves.py rnn.json gru.json lstm.json -o docs/memory_curves.png

Each file's label is its name without `.json`.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args()
    fig, (grad, ctx) = plt.subplots(1, 2, figsize=(10, 3.8))
    for path in args.files:
        data = json.loads(path.read_text(encoding="utf-8"))
        label = path.stem
        grad.plot(data["gradient"]["k"], data["gradient"]["norm"], label=label)
        k, bits = data["context"]["k"][1:], data["context"]["bits_per_char"][1:]
        (line,) = ctx.plot(k, bits, "o-", label=label, markersize=3)
        ctx.axhline(data["context"]["full_bits_per_char"], color=line.get_color(), linestyle=":")
    grad.set(xscale="log", yscale="log", xlabel="k (steps back)", ylabel="mean |d log p(x_t) / d e(t-k)|")
    grad.set_title("gradient through time")
    ctx.set_xscale("log", base=2)
    ctx.set(xlabel="context k (characters)", ylabel="bits/char", title="context curve (dotted: carried state)")
    for ax in (grad, ctx):
        ax.legend()
    fig.tight_layout()
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()

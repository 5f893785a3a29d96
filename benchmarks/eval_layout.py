"""How much a checkpoint's held-out loss depends on how the text is cut into parallel streams.

    python benchmarks/eval_layout.py CKPT [CKPT ...] [--text held_out.txt] [--streams 16 64 218 872]

Full-pass validation scores the held-out text in S contiguous chunks side by side, each first
warmed up on the 256 characters before it (charrnn.evaluate). This script scores each layout from
those warmed-up states alone (`max_rounds=1`, no hand-off check): a model whose carried state
forgets where it started scores the same for every S; one whose state drifts on long runs scores
differently for each S. (`charrnn eval` and validation check the start states, so their score
does not depend on S; the figure here is about the model.) Prints one line per checkpoint (loss
per S and the spread) and writes benchmarks/results/eval_layout.json. The default text is the last 10% of
Tiny Shakespeare, the validation split `charrnn train` uses.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHAKESPEARE, write_result

from charrnn.data.corpus import load_corpus, split_train_val
from charrnn.device import configure_threads
from charrnn.evaluate import chunked_pass
from charrnn.store.checkpoint import load_checkpoint, load_model


def held_out_text(path: Path | None) -> str:
    if path is not None:
        return path.read_text(encoding="utf-8")
    if not SHAKESPEARE.exists():
        raise SystemExit(f"{SHAKESPEARE} not found; pass --text")
    loaded = load_corpus([str(SHAKESPEARE)])
    _, val_ids = split_train_val(loaded.ids, 0.1)
    return loaded.vocab.decode(np.asarray(val_ids).tolist())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--text", type=Path, default=None, help="held-out text (default: Tiny Shakespeare's last 10%%)")
    parser.add_argument("--streams", type=int, nargs="+", default=[16, 64, 218, 872])
    args = parser.parse_args()
    configure_threads(None)
    text = held_out_text(args.text)
    cases = []
    for path in args.checkpoints:
        ckpt = load_checkpoint(path)
        ids = np.asarray(ckpt.vocab.encode(text))
        model = load_model(ckpt, "cpu")
        cpu = torch.device("cpu")
        losses = {
            s: round(chunked_pass(model, ids, cpu, streams=s, max_rounds=1).total / (ids.size - 1), 4)
            for s in args.streams
        }
        spread = round(max(losses.values()) - min(losses.values()), 4)
        cases.append({"checkpoint": str(path), "loss_by_streams": losses, "spread": spread})
        cells = "  ".join(f"S={s}: {loss:.4f}" for s, loss in losses.items())
        print(f"{path}  {cells}  spread {spread:.4f} nats/char", flush=True)
    print(f"wrote {write_result('eval_layout', {'chars': len(text), 'cases': cases})}", file=sys.stderr)


if __name__ == "__main__":
    main()

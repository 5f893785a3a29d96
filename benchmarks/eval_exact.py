"""Is `charrnn eval` the loss of one sequential pass? Checked on real checkpoints and texts.

    python benchmarks/eval_exact.py CKPT:TEXT [CKPT:TEXT ...] [--max-chars 60000]

For each checkpoint and text, scores the text three ways and times each:
- one sequential pass (a single stream, the state carried from the first character to the last);
- `charrnn.evaluate.evaluate_ids`, the parallel pass `eval`, the API and validation use (start
  states checked against the chunk before, chunks rescored where they differ);
- the same chunks from a 256-character burn-in alone (what `eval` did before the check).
Prints the differences from the sequential pass in nats/char, the rounds the checked pass took,
and writes benchmarks/results/eval_exact.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result

from charrnn.device import configure_threads
from charrnn.evaluate import PassStats, chunked_pass
from charrnn.files import read_utf8
from charrnn.store.checkpoint import load_checkpoint, load_model


def timed_pass(model: torch.nn.Module, ids: np.ndarray, **how: int) -> tuple[PassStats, float]:
    start = time.perf_counter()
    stats = chunked_pass(model, ids, torch.device("cpu"), **how)  # type: ignore[arg-type]
    return stats, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="+", help="CHECKPOINT:TEXT_FILE pairs")
    parser.add_argument("--max-chars", type=int, default=60_000, help="score the first N chars of each text")
    args = parser.parse_args()
    configure_threads(None)
    rows = []
    for case in args.cases:
        ckpt_path, _, text_path = case.partition(":")
        ckpt = load_checkpoint(Path(ckpt_path))
        model = load_model(ckpt, "cpu")
        known = set(ckpt.vocab.chars)  # characters the model never saw are dropped, not refused
        text = "".join(ch for ch in read_utf8(text_path, "text")[: args.max_chars] if ch in known)
        ids = np.asarray(ckpt.vocab.encode(text))
        n = ids.size - 1
        one, one_s = timed_pass(model, ids, streams=1)
        checked, checked_s = timed_pass(model, ids)
        guessed, guessed_s = timed_pass(model, ids, max_rounds=1)
        row = {
            "checkpoint": ckpt_path,
            "text": text_path,
            "chars": n,
            "sequential": round(one.total / n, 5),
            "checked": round(checked.total / n, 5),
            "checked_minus_sequential": round((checked.total - one.total) / n, 6),
            "burn_in_only_minus_sequential": round((guessed.total - one.total) / n, 6),
            "rounds": checked.rounds,
            "rescored_chunks": checked.rescored,
            "seconds": {"sequential": round(one_s, 2), "checked": round(checked_s, 2), "burn_in": round(guessed_s, 2)},
        }
        rows.append(row)
        print(
            f"{ckpt_path} on {Path(text_path).name} ({n:,} chars): sequential {row['sequential']:.4f}  "
            f"checked {row['checked_minus_sequential']:+.6f} ({checked.rounds} rounds, {checked.rescored} rescored, "
            f"{checked_s:.1f} s)  burn-in only {row['burn_in_only_minus_sequential']:+.6f} ({guessed_s:.1f} s)  "
            f"sequential {one_s:.1f} s",
            flush=True,
        )
    print(f"wrote {write_result('eval_exact', {'cases': rows})}", file=sys.stderr)


if __name__ == "__main__":
    main()

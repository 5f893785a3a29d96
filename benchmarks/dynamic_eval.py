"""Dynamic evaluation and prime adaptation: how much lower the loss goes, and what it costs.

    python benchmarks/dynamic_eval.py CKPT [--text held_out.txt] [--chars 20000]
        [--lr 0.00025 0.0005 0.001] [--seq 50] [--adapt 0 20 60 180] [--adapt-lr 0.0005 0.00015]
        [--prime 3000] [--continuation 2000] [--passages 4] [--threads 2]

Part 1 scores the first `--chars` characters of the held-out text three ways: static in one
sequential stream (`evaluate_ids`, streams=1), static as `charrnn eval` lays it out (parallel
streams), and dynamic (`charrnn.adapt.learn.evaluate_dynamic`) for each lr x seq, each
with its chars/s. Part 2 takes `--passages` passages spread over the held-out text: a prime of
`--prime` characters, then the loss of the next `--continuation` characters with the model
reading the prime first, unadapted and after `adapt` with N steps on the prime (the cost of the
adaptation in seconds beside it). Prints one line per case and writes
benchmarks/results/dynamic_eval.json. The default text is the last 10% of Tiny Shakespeare, the
validation split `charrnn train` uses.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_result
from eval_layout import held_out_text

from charrnn.adapt.learn import adapt, evaluate_dynamic
from charrnn.adapt.settings import DEFAULT_LR, DEFAULT_SEQ, AdaptSettings
from charrnn.device import configure_threads
from charrnn.evaluate import evaluate_ids
from charrnn.model import CharRNN
from charrnn.store.checkpoint import load_checkpoint, load_model

CPU = torch.device("cpu")


def timed(work: Any) -> tuple[Any, float]:
    start = time.perf_counter()
    result = work()
    return result, time.perf_counter() - start


@torch.no_grad()
def continuation_loss(model: CharRNN, ids: np.ndarray, prime: int) -> float:
    """Mean loss of the predictions after the first `prime` characters, the model reading them first."""
    model.eval()
    x = torch.from_numpy(ids[:-1].astype(np.int64))[None]
    y = torch.from_numpy(ids[1:].astype(np.int64))
    logits, _ = model(x)
    return float(F.cross_entropy(logits[0, prime - 1 :], y[prime - 1 :]).item())


def dynamic_cases(model: CharRNN, ids: np.ndarray, args: argparse.Namespace) -> list[dict[str, Any]]:
    chars = ids.size - 1
    static, static_s = timed(lambda: evaluate_ids(model, ids, CPU, streams=1))
    parallel, parallel_s = timed(lambda: evaluate_ids(model, ids, CPU))
    rows: list[dict[str, Any]] = [
        {"case": "static-1-stream", "loss": static.loss, "chars_per_s": chars / static_s},
        {"case": "static-eval-layout", "loss": parallel.loss, "chars_per_s": chars / parallel_s},
    ]
    for row in rows:
        print(f"{row['case']:<22} loss {row['loss']:.4f}  {row['chars_per_s']:>9,.0f} chars/s", flush=True)
    for lr, seq in itertools.product(args.lr, args.seq):
        settings = AdaptSettings(lr=lr, seq=seq)
        result, seconds = timed(lambda s=settings: evaluate_dynamic(model, ids, CPU, s))
        row = {"case": "dynamic", **settings.to_dict(), "loss": result.loss, "chars_per_s": chars / seconds}
        rows.append(row)
        name = f"dynamic lr {lr:g} seq {seq}"
        print(
            f"{name:<22} loss {result.loss:.4f}  {row['chars_per_s']:>9,.0f} chars/s  "
            f"({result.loss - static.loss:+.4f} vs static)",
            flush=True,
        )
    return rows


def adapt_cases(model: CharRNN, ids: np.ndarray, args: argparse.Namespace) -> list[dict[str, Any]]:
    span = args.prime + args.continuation + 1
    if ids.size < span:
        raise SystemExit(f"the text is shorter than --prime + --continuation ({span} chars)")
    starts = np.linspace(0, ids.size - span, args.passages).astype(int).tolist()
    rows: list[dict[str, Any]] = []
    for lr, steps in itertools.product(args.adapt_lr, args.adapt):
        settings = AdaptSettings(lr=lr, seq=args.seq[0])
        losses, seconds = [], 0.0
        for start in starts:
            passage = ids[start : start + span]
            prime = passage[: args.prime]
            adapted, spent = timed(lambda p=prime, n=steps, s=settings: adapt(model, p, n, s) if n else model)
            seconds += spent
            losses.append(continuation_loss(adapted, passage, args.prime))
        mean = float(np.mean(losses))
        rows.append({"case": "adapt", "steps": steps, **settings.to_dict(), "loss": mean, "losses": losses,
                     "adapt_s": seconds / len(starts)})  # fmt: skip
        print(
            f"adapt {steps:>4} steps lr {lr:g}  continuation loss {mean:.4f}  "
            f"({seconds / len(starts):.2f} s per prime)  per passage {' '.join(f'{x:.3f}' for x in losses)}",
            flush=True,
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--text", type=Path, default=None, help="held-out text (default: Tiny Shakespeare's last 10%%)")
    parser.add_argument("--chars", type=int, default=20_000, help="characters of the text to score (0: all)")
    parser.add_argument("--lr", type=float, nargs="+", default=[DEFAULT_LR / 2, DEFAULT_LR, DEFAULT_LR * 2])
    parser.add_argument("--seq", type=int, nargs="+", default=[DEFAULT_SEQ])
    parser.add_argument("--adapt", type=int, nargs="+", default=[0, 20, 60, 180], help="adapt steps (0: none)")
    parser.add_argument("--adapt-lr", type=float, nargs="+", default=[DEFAULT_LR])
    parser.add_argument("--prime", type=int, default=3000, help="prime length for the adapt cases")
    parser.add_argument("--continuation", type=int, default=2000, help="characters scored after the prime")
    parser.add_argument("--passages", type=int, default=4)
    parser.add_argument("--skip", nargs="*", default=[], choices=["dynamic", "adapt"])
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    configure_threads(args.threads)
    text = held_out_text(args.text)
    ckpt = load_checkpoint(args.checkpoint)
    ids = np.asarray(ckpt.vocab.encode(text))
    model = load_model(ckpt, CPU)
    scored = ids[: args.chars + 1] if args.chars else ids
    print(f"{args.checkpoint}: {ckpt.config.num_layers}x{ckpt.config.hidden_size} {ckpt.config.cell}, "
          f"{scored.size - 1:,} chars scored, {torch.get_num_threads()} threads", flush=True)  # fmt: skip
    dynamic = [] if "dynamic" in args.skip else dynamic_cases(model, scored, args)
    adapted = [] if "adapt" in args.skip else adapt_cases(model, ids, args)
    payload = {"checkpoint": str(args.checkpoint), "chars": int(scored.size - 1), "dynamic": dynamic,
               "adapt": adapted, "prime": args.prime, "continuation": args.continuation}  # fmt: skip
    print(f"wrote {write_result('dynamic_eval', payload)}", file=sys.stderr)


if __name__ == "__main__":
    main()

"""How much the seed decides: N seeds x S equal steps on Tiny Shakespeare, mean / spread / layout spread.

    python benchmarks/seeds.py [--seeds 1 2 3 4 5 6 7 8] [--steps 320] [--extra-args "--hidden 384"]

Runs the real `charrnn train CORPUS --steps S --seed N` once per seed in a subprocess (equal steps,
so the host's load changes the wall time but not the result), then scores each run's best
checkpoint on the validation text cut into several stream layouts (as `eval_layout.py` does).
Prints one line per seed and a summary (mean, max - min, standard deviation, worst layout
spread) and writes benchmarks/results/seeds.json. The default `--extra-args "--hidden 384"`
with 320 steps is the configuration `--time 80s` chooses, at the steps 80 s buys on a 2-core
AVX2 machine; each run validates once, at its end, as an 80 s run does.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHAKESPEARE, write_result

from charrnn.data.corpus import load_corpus, split_train_val
from charrnn.device import configure_threads
from charrnn.evaluate import chunked_pass
from charrnn.store.checkpoint import load_checkpoint, load_model

LAYOUTS = (16, 64, 218)


def train_one(corpus: Path, seed: int, steps: int, extra: list[str], out: Path) -> dict[str, object]:
    command = [sys.executable, "-m", "charrnn", "train", str(corpus), "--steps", str(steps)]
    command += ["--seed", str(seed), "--out", str(out), "--eval-every", str(steps), *extra]  # once, at the end
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"seed {seed}: charrnn train failed:\n{proc.stderr}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    vals = [r["val_loss"] for r in rows if r.get("event") == "val" and r.get("val_loss") is not None]
    trains = [r["train_loss"] for r in rows if r.get("event") == "train" and r.get("train_loss") is not None]
    return {"seed": seed, "val_loss": min(vals), "train_loss": trains[-1], "wall_s": time.perf_counter() - start}


def layout_losses(path: Path, text: str) -> dict[int, float]:
    ckpt = load_checkpoint(path)
    model = load_model(ckpt, "cpu")
    ids = np.asarray(ckpt.vocab.encode(text))
    cpu = torch.device("cpu")  # warmed-up starts, unchecked: how far a cut moves this model's loss
    return {s: chunked_pass(model, ids, cpu, streams=s, max_rounds=1).total / (ids.size - 1) for s in LAYOUTS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 9)))
    parser.add_argument("--steps", type=int, default=320)
    parser.add_argument("--corpus", type=Path, default=SHAKESPEARE)
    parser.add_argument("--extra-args", default="--hidden 384", help="more `charrnn train` flags, quoted")
    parser.add_argument("--label", default="", help="a name for this configuration in the output")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directories under this folder")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per run (default: all cores)")
    args = parser.parse_args()
    if not args.corpus.exists():
        raise SystemExit(f"{args.corpus}: not found (the reference corpus lives in ../shared/corpora)")
    extra = shlex.split(args.extra_args) + ([] if args.threads is None else ["--threads", str(args.threads)])
    loaded = load_corpus([str(args.corpus)])
    _, val_ids = split_train_val(loaded.ids, 0.1)
    val_text = loaded.vocab.decode(np.asarray(val_ids).tolist())
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        for seed in args.seeds:
            out = root / f"seed-{seed}"
            case = train_one(args.corpus, seed, args.steps, extra, out)
            configure_threads(args.threads)
            layouts = layout_losses(out / "best.safetensors", val_text)
            case["layouts"] = {str(s): round(v, 4) for s, v in layouts.items()}
            case["layout_spread"] = round(max(layouts.values()) - min(layouts.values()), 4)
            cases.append(case)
            print(
                f"seed {seed:>3}  val {case['val_loss']:.4f}  train {case['train_loss']:.4f}  "
                f"layout spread {case['layout_spread']:.4f}  ({case['wall_s']:.0f} s)",
                flush=True,
            )
    vals = [float(c["val_loss"]) for c in cases]
    summary = {
        "label": args.label,
        "steps": args.steps,
        "extra_args": args.extra_args,
        "mean": round(statistics.fmean(vals), 4),
        "spread": round(max(vals) - min(vals), 4),
        "stdev": round(statistics.stdev(vals), 4) if len(vals) > 1 else 0.0,
        "worst_layout_spread": max(float(c["layout_spread"]) for c in cases),
    }
    print(
        f"{args.label or args.extra_args}: {len(vals)} seeds x {args.steps} steps  mean {summary['mean']:.4f}  "
        f"spread {summary['spread']:.4f}  stdev {summary['stdev']:.4f}  "
        f"worst layout spread {summary['worst_layout_spread']:.4f}",
        flush=True,
    )
    name = f"seeds-{args.label}" if args.label else "seeds"
    print(f"wrote {write_result(name, {'summary': summary, 'cases': cases})}", file=sys.stderr)


if __name__ == "__main__":
    main()

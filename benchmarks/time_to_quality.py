"""Validation loss after a wall-clock budget on Tiny Shakespeare, with charrnn's defaults.

    python benchmarks/time_to_quality.py [--budgets 80s 10m] [--extra-args "--hidden 512"] [--baseline]

Runs the real `charrnn train CORPUS --time B` per budget in a subprocess (nanoGPT's split:
first 90% train, last 10% validation; full-pass loss in nats/char), prints one line per case
(val loss, bits/char, wall seconds, overhead beyond the budget) and writes
benchmarks/results/time_to_quality.json.

--baseline also trains, for each budget, the loop a user would write first (2x256 LSTM, fp32,
AdamW at a constant 2e-3, clipping at 1, random 64-char windows in batches of 32, no state
carried), in this process for the same seconds of training, and scores it with the same
full-pass validation: a reference measured on the same machine in the same run.
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHAKESPEARE, write_result

from charrnn.data.corpus import load_corpus, split_train_val
from charrnn.device import configure_threads
from charrnn.durations import parse_duration
from charrnn.evaluate import evaluate_ids


def run_case(corpus: Path, budget: str, extra: list[str], workdir: Path) -> dict[str, object]:
    out = workdir / f"run-{budget}"
    command = [sys.executable, "-m", "charrnn", "train", str(corpus), "--time", budget, "--out", str(out), *extra]
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{budget}: charrnn train failed:\n{proc.stderr}")
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    vals = [r["val_loss"] for r in rows if r.get("event") == "val" and r.get("val_loss") is not None]
    train_rows = [r for r in rows if r.get("event") == "train"]
    best = min(vals)
    return {
        "budget": budget,
        "budget_s": parse_duration(budget),
        "val_loss": round(best, 4),
        "val_bpc": round(best / math.log(2), 4),
        "wall_s": round(wall, 1),
        "overhead_s": round(wall - parse_duration(budget), 1),
        "steps": train_rows[-1]["step"],
        "banner": [line for line in proc.stderr.splitlines() if line.startswith(("model", "train ", "speed"))],
        "command": shlex.join(["charrnn", "train", corpus.name, "--time", budget, *extra]),
    }


def plain_baseline(corpus: Path, budget: str) -> dict[str, object]:
    """The first loop a user would write, trained for `budget` seconds, scored like charrnn's runs."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from charrnn.model import CharRNN, ModelConfig

    configure_threads(None)
    torch.manual_seed(0)
    loaded = load_corpus([str(corpus)])
    train_ids, val_ids = split_train_val(loaded.ids, 0.1)
    data = torch.from_numpy(np.asarray(train_ids, dtype=np.int64))
    model = CharRNN(ModelConfig(vocab_size=loaded.vocab.size, hidden_size=256, num_layers=2, embed_size=64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    batch, seq = 32, 64
    seconds, steps = parse_duration(budget), 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        offsets = torch.randint(0, data.numel() - seq - 1, (batch, 1))
        window = data[offsets + torch.arange(seq + 1)]
        logits, _ = model(window[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), window[:, 1:].reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        steps += 1
    model.eval()
    val = evaluate_ids(model, np.asarray(val_ids), torch.device("cpu")).loss
    return {
        "budget": budget,
        "val_loss": round(val, 4),
        "val_bpc": round(val / math.log(2), 4),
        "steps": steps,
        "command": "plain 2x256 fp32 LSTM loop, AdamW 2e-3, batch 32 x 64",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", nargs="+", default=["80s", "10m"])
    parser.add_argument("--corpus", type=Path, default=SHAKESPEARE)
    parser.add_argument("--extra-args", default="", help="more `charrnn train` flags, quoted")
    parser.add_argument("--baseline", action="store_true", help="also time the plain-loop baseline per budget")
    args = parser.parse_args()
    if not args.corpus.exists():
        raise SystemExit(f"{args.corpus}: not found (the reference corpus lives in ../shared/corpora)")
    extra = shlex.split(args.extra_args)
    cases, baselines = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for budget in args.budgets:
            case = run_case(args.corpus, budget, extra, Path(tmp))
            cases.append(case)
            print(
                f"{case['command']:<55} val {case['val_loss']:.4f} nats/char ({case['val_bpc']:.4f} bpc)  "
                f"{case['steps']} steps  wall {case['wall_s']:.0f} s (+{case['overhead_s']:.0f} s)",
                flush=True,
            )
            if args.baseline:
                base = plain_baseline(args.corpus, budget)
                baselines.append(base)
                print(
                    f"{'baseline: ' + str(base['command']) + ', ' + budget:<55} val {base['val_loss']:.4f} nats/char "
                    f"({base['val_bpc']:.4f} bpc)  {base['steps']} steps; charrnn is "
                    f"{float(base['val_loss']) - float(case['val_loss']):.4f} nats/char lower",
                    flush=True,
                )
    payload = {"corpus": str(args.corpus), "cases": cases, "baselines": baselines}
    print(f"wrote {write_result('time_to_quality', payload)}")


if __name__ == "__main__":
    main()

"""Validation loss after a wall-clock budget on Tiny Shakespeare, with charrnn's defaults.

    python benchmarks/time_to_quality.py [--budgets 80s 10m] [--extra-args "--hidden 512"]

Runs the real `charrnn train CORPUS --time B` per budget in a subprocess (nanoGPT's split:
first 90% train, last 10% validation; full-pass loss in nats/char), prints one line per case
(val loss, bits/char, wall seconds, overhead beyond the budget) and writes
benchmarks/results/time_to_quality.json.
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

from charrnn.durations import parse_duration


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
        "banner": [line for line in proc.stderr.splitlines() if line.startswith(("model", "train "))],
        "command": shlex.join(["charrnn", "train", corpus.name, "--time", budget, *extra]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budgets", nargs="+", default=["80s", "10m"])
    parser.add_argument("--corpus", type=Path, default=SHAKESPEARE)
    parser.add_argument("--extra-args", default="", help="more `charrnn train` flags, quoted")
    args = parser.parse_args()
    if not args.corpus.exists():
        raise SystemExit(f"{args.corpus}: not found (the reference corpus lives in ../shared/corpora)")
    extra = shlex.split(args.extra_args)
    cases = []
    with tempfile.TemporaryDirectory() as tmp:
        for budget in args.budgets:
            case = run_case(args.corpus, budget, extra, Path(tmp))
            cases.append(case)
            print(
                f"{case['command']:<55} val {case['val_loss']:.4f} nats/char ({case['val_bpc']:.4f} bpc)  "
                f"{case['steps']} steps  wall {case['wall_s']:.0f} s (+{case['overhead_s']:.0f} s)",
                flush=True,
            )
    print(f"wrote {write_result('time_to_quality', {'corpus': str(args.corpus), 'cases': cases})}")


if __name__ == "__main__":
    main()

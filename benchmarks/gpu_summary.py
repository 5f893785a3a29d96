"""The figures of one `benchmarks/gpu_check.sh` run, from the files it left in OUT_DIR.

    python benchmarks/gpu_summary.py benchmarks/results/gpu_check

Prints them and writes OUT_DIR/summary.json: the training step against the plain loop per shape,
the default run's best and final validation loss (nats/char), its plan and length, what the
resumes did, sampling speed, and the test suite's last line.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any


def speed_cases(text: str) -> list[dict[str, Any]]:
    """Each train_speed.py run: its shape line and its cases' chars/s and bf16-peak share."""
    runs: list[dict[str, Any]] = []
    for line in text.splitlines():
        if line.startswith("GEMM peak"):
            shape = re.search(r"model (\S+) LSTM.*batch (\d+ x \d+)", line)
            runs.append({"shape": " ".join(shape.groups()) if shape else line, "cases": {}})
            continue
        case = re.match(r"(\S+)\s+([\d,]+) chars/s.*MFU (.*)", line)
        if case and runs:
            bf16 = re.search(r"(\d+)% of bf16 peak", case.group(3))
            runs[-1]["cases"][case.group(1)] = {
                "chars_per_s": int(case.group(2).replace(",", "")),
                "bf16_peak_share": int(bf16.group(1)) / 100 if bf16 else None,
            }
    for run in runs:
        cases = run["cases"]
        plain = max((v["chars_per_s"] for k, v in cases.items() if k.startswith("plain")), default=0)
        auto = cases.get("charrnn-auto", {}).get("chars_per_s")
        run["charrnn_auto_vs_best_plain"] = round(auto / plain, 3) if auto and plain else None
    return runs


def run_figures(out: Path) -> dict[str, Any]:
    rows = [json.loads(line) for line in (out / "metrics_run.jsonl").read_text().splitlines() if line.strip()]
    vals = [r for r in rows if r.get("event") == "val" and r.get("val_loss") is not None]
    train = (out / "train.txt").read_text()
    picked = {
        key: line[8:].strip()
        for line in train.splitlines()
        for key in ("model", "train", "budget", "done", "stop")
        if line.startswith(key)
    }
    figures: dict[str, Any] = {"plan": picked}
    if vals:
        best = min(vals, key=lambda r: r["val_loss"])
        last = vals[-1]
        figures.update(
            best_val=best["val_loss"],
            best_step=best["step"],
            best_elapsed_s=best["elapsed_s"],
            last_val=last["val_loss"],
            last_step=last["step"],
            last_elapsed_s=last["elapsed_s"],
            last_minus_best=round(last["val_loss"] - best["val_loss"], 4),
            curve=[(r["step"], round(r["epoch"], 2), round(r["val_loss"], 4), r["elapsed_s"]) for r in vals],
        )
    return figures


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/results/gpu_check")
    summary: dict[str, Any] = {"device": (out / "device.txt").read_text().strip()}
    summary["train_speed"] = speed_cases((out / "train_speed.txt").read_text())
    summary["default_run"] = run_figures(out)
    summary["resume"] = [line for line in (out / "resume.txt").read_text().splitlines() if line.strip()]
    start, end = (float(v) for v in (out / "sample_time.txt").read_text().split())
    sampled = len((out / "samples.txt").read_text(encoding="utf-8"))
    summary["sample"] = {
        "chars": sampled,
        "seconds": round(end - start, 2),
        "chars_per_s": round(sampled / (end - start)),
    }
    suite = out / "suite.txt"
    if suite.exists():
        lines = [line for line in suite.read_text().splitlines() if re.search(r"\d+ (passed|failed)", line)]
        summary["suite"] = lines[-1] if lines else "no result line"
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()

"""Start-up of `charrnn sample` and `charrnn --help`, from cold processes, this checkout against another.

    python benchmarks/startup.py --checkpoint RUN/best.safetensors [--baseline DIR] [--runs 7]

Each figure is the median of `--runs` fresh processes, the two checkouts alternated: `--help`;
the first byte of `charrnn sample --length 200` on stdout; the whole 200 characters; and the
steady one-stream rate (`--length 20000` minus the 200-character run, in chars/s). The sample
runs take the default device (cpu), so this checkout starts on numpy without importing torch.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import write_result  # noqa: E402


def timed(checkout: Path, args: list[str]) -> tuple[float, float]:
    """Seconds to the first byte on stdout and to the end of one `python -m charrnn ARGS` run."""
    env = dict(os.environ, PYTHONPATH=str(checkout))
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", *args], cwd=checkout, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)  # fmt: skip
    assert proc.stdout is not None
    proc.stdout.read(1)
    first = time.perf_counter() - start
    proc.stdout.read()
    proc.wait()
    return first, time.perf_counter() - start


def measure(checkout: Path, checkpoint: str) -> dict[str, float]:
    sample = ["sample", "-c", checkpoint, "--seed", "1", "--temp", "1"]
    _, help_s = timed(checkout, ["--help"])
    first_s, whole_s = timed(checkout, [*sample, "--length", "200"])
    _, long_s = timed(checkout, [*sample, "--length", "20000"])
    return {"help_s": help_s, "first_char_s": first_s, "chars_200_s": whole_s,
            "steady_chars_per_s": 19800 / max(long_s - whole_s, 1e-3)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--baseline", help="another checkout (e.g. a worktree of main) to compare with")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    checkpoint = str(Path(args.checkpoint).resolve())
    checkouts = {"this": REPO} | ({"baseline": Path(args.baseline).resolve()} if args.baseline else {})
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in checkouts}
    for checkout in checkouts.values():  # warm the file cache and the bytecode
        measure(checkout, checkpoint)
    for _ in range(args.runs):
        for name, checkout in checkouts.items():
            runs[name].append(measure(checkout, checkpoint))
    result: dict[str, Any] = {"checkpoint": checkpoint, "runs": args.runs}
    for name, rows in runs.items():
        medians = {key: statistics.median(row[key] for row in rows) for key in rows[0]}
        result[name] = {key: round(value, 3) for key, value in medians.items()}
        steady = medians["steady_chars_per_s"]
        print(f"{name:9s} --help {medians['help_s']:.2f}s  first char {medians['first_char_s']:.2f}s  "
              f"200 chars {medians['chars_200_s']:.2f}s  steady {steady:,.0f} chars/s")  # fmt: skip
    print(f"wrote     {write_result('startup', result)}")


if __name__ == "__main__":
    main()

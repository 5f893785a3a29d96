"""What the generation controls do and cost, measured in one run.

    python benchmarks/generation_controls.py --checkpoint RUN/best.safetensors [--baseline DIR] [--rounds 3]

- loops: greedy and temperature 0.3 samples of 2,000 characters (prime "\\n"; temperature 0.3 over
  4 seeds): the share of distinct 8-grams and the longest run of one character, plain vs
  --repetition-penalty 1.3 vs --frequency-penalty 0.5 vs --no-repeat-ngram 8.
- beam: log-probability per character (the model's own) of --beam 8 vs greedy vs 8 samples at
  temperature 0.8, 300 characters after the same prime, with the start of each text.
- cost: aggregate chars/s of `generate_many` with 16 samples of 1,000 characters: no control,
  penalties (repetition 1.3 + presence 0.5 + frequency 0.5), min-p, --no-repeat-ngram 8, --ban,
  and --match with a 50-character regex; each case `--rounds` times interleaved, the best run,
  as a ratio to no control (targets: penalties within 10%, --match within 2x).
- today: with --baseline (a checkout of an earlier commit, e.g. a worktree of main), the CLI's
  one-stream and -n 16 rates of both checkouts on the same checkpoint, alternated, each after
  its start-up (a --length 1 run of the same checkout) is taken off.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import charrnn  # noqa: E402
from benchmarks.common import write_result  # noqa: E402
from charrnn.sampling.controls import RunSettings, SampleSettings  # noqa: E402
from charrnn.sampling.generate import generate_many  # noqa: E402

MATCH = r"(([A-Z][a-z]+ ){1,3}(and|or|of|to|the) ([a-z]+ ){2,5}[a-z]+[.,;:!?]\n)+"  # a line, repeated
PENALTIES = {"repetition_penalty": 1.3, "presence_penalty": 0.5, "frequency_penalty": 0.5}


def loop_figures(text: str) -> tuple[float, int]:
    grams = [text[i : i + 8] for i in range(len(text) - 7)]
    longest = max(len(m.group(0)) for m in re.finditer(r"(.)\1*", text, re.S))
    return len(set(grams)) / max(len(grams), 1), longest


def loops(model: charrnn.Model) -> dict[str, Any]:
    variants = {"plain": {}, "repetition 1.3": {"repetition_penalty": 1.3},
                "frequency 0.5": {"frequency_penalty": 0.5}, "no-repeat-ngram 8": {"no_repeat_ngram": 8}}  # fmt: skip
    out: dict[str, Any] = {}
    for temperature, seeds in ((0.0, [0]), (0.3, [1, 2, 3, 4])):
        for name, controls in variants.items():
            figures = [loop_figures(model.generate("\n", length=2000, temperature=temperature, seed=s, **controls)[1:])
                       for s in seeds]  # fmt: skip
            distinct = sum(f[0] for f in figures) / len(figures)
            longest = max(f[1] for f in figures)
            out[f"temp {temperature} {name}"] = {"distinct_8grams": round(distinct, 3), "longest_run": longest}
            print(
                f"loops      temp {temperature:<3} {name:18s} distinct 8-grams {distinct:6.1%}  longest run {longest}"
            )
    return out


def beam(model: charrnn.Model, prime: str) -> dict[str, Any]:
    length = 300
    (greedy,) = model.samples(prime, length=length, temperature=0)
    (best,) = model.samples(prime, length=length, beam=8)
    drawn = model.samples(prime, length=length, temperature=0.8, num_samples=8, seed=1)
    rates = {"beam 8": best.logprob / best.chars, "greedy": greedy.logprob / greedy.chars,
             "temp 0.8 (mean of 8)": sum(s.logprob / s.chars for s in drawn) / 8,
             "temp 0.8 (best of 8)": max(s.logprob / s.chars for s in drawn)}  # fmt: skip
    for name, rate in rates.items():
        print(f"beam       {name:22s} {rate:8.4f} nats/char")
    texts = {"beam 8": best.text, "greedy": greedy.text, "temp 0.8": drawn[0].text}
    for name, text in texts.items():
        print(f"beam       {name:10s} {text[:140]!r}")
    return {"logprob_per_char": {k: round(v, 4) for k, v in rates.items()}, "texts": texts}


def chars_per_s(model: charrnn.Model, settings: SampleSettings, run: RunSettings) -> float:
    start = time.perf_counter()
    pieces = generate_many(model.module, model.checkpoint.vocab, "\n", settings, run, "cpu")
    chars = sum(len(p.text) for p in pieces)
    return chars / (time.perf_counter() - start)


def cost(model: charrnn.Model, rounds: int) -> dict[str, Any]:
    run = RunSettings(length=1000, num_samples=16, seed=1)
    cases = {
        "plain": SampleSettings(),
        "penalties": SampleSettings(**PENALTIES),
        "min-p 0.05": SampleSettings(min_p=0.05),
        "no-repeat-ngram 8": SampleSettings(no_repeat_ngram=8),
        "ban 3 chars": SampleSettings(ban="xyz"),
        "match (50-char regex)": SampleSettings(match=MATCH),
    }
    best = {name: 0.0 for name in cases}
    for settings in cases.values():  # warm-up: first calls, the regex's states
        chars_per_s(model, settings, RunSettings(length=200, num_samples=16, seed=1))
    for _ in range(rounds):
        for name, settings in cases.items():
            # a --match sample ends at its first full match after --length: count what it made
            best[name] = max(best[name], chars_per_s(model, settings, run))
    out = {}
    for name, rate in best.items():
        ratio = rate / best["plain"]
        out[name] = {"chars_per_s": round(rate, 1), "ratio": round(ratio, 3)}
        print(f"cost       -n 16 {name:22s} {rate:9,.0f} chars/s  {ratio:5.2f}x of no control")
    return out


def cli_rate(checkout: Path, checkpoint: str, streams: int, length: int) -> float:
    """Seconds of one `charrnn sample` run from `checkout`."""
    env = dict(os.environ, PYTHONPATH=str(checkout))
    command = [sys.executable, "-m", "charrnn", "sample", "-c", checkpoint, "-n", str(streams), "--seed", "1",
               "--length", str(length), "--temp", "1"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(command, env=env, cwd=checkout, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def today(baseline: Path, checkpoint: str, rounds: int) -> dict[str, Any]:
    shapes = {"1 stream": (1, 10000), "-n 16": (16, 5000)}  # seconds of work each, against a start-up of ~1.5 s
    out: dict[str, Any] = {}
    for shape, (streams, length) in shapes.items():
        rates: dict[str, list[float]] = {"baseline": [], "this": []}
        for _ in range(rounds):
            for who, checkout in (("baseline", baseline), ("this", REPO)):
                startup = cli_rate(checkout, checkpoint, streams, 1)
                whole = cli_rate(checkout, checkpoint, streams, length)
                rates[who].append(streams * length / max(whole - startup, 1e-3))
        base, this = max(rates["baseline"]), max(rates["this"])
        out[shape] = {
            "baseline_chars_per_s": round(base),
            "this_chars_per_s": round(this),
            "ratio": round(this / base, 3),
        }
        print(f"today      {shape:9s} baseline {base:9,.0f} chars/s  this {this:9,.0f} chars/s  {this / base:5.2f}x")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a trained checkpoint or run directory")
    parser.add_argument("--prime", default="ROMEO:\n", help="the prime of the beam comparison")
    parser.add_argument("--baseline", help="a checkout of an earlier commit to compare the CLI's rates with")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--parts", nargs="+", default=["loops", "beam", "cost", "today"], help="what to measure")
    args = parser.parse_args()
    model = charrnn.load(args.checkpoint)
    print(f"model      {model!r}")
    result: dict[str, Any] = {"checkpoint": args.checkpoint}
    if "loops" in args.parts:
        result["loops"] = loops(model)
    if "beam" in args.parts:
        result["beam"] = beam(model, args.prime)
    if "cost" in args.parts:
        result["cost"] = cost(model, args.rounds)
    if args.baseline and "today" in args.parts:
        result["today"] = today(Path(args.baseline).resolve(), str(Path(args.checkpoint).resolve()), args.rounds)
    print(f"wrote      {write_result('generation_controls', result)}")


if __name__ == "__main__":
    main()

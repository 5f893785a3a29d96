"""What `--match` costs: compiling a regex and masking one step, interegular's DFA against `regex` partial matching.

    python benchmarks/match_speed.py [--samples 200] [--rounds 5]

The vocab is printable ASCII (97 chars: tiny Shakespeare's 65 have no digits for the date pattern).
  compile    Constraint.compile (interegular DFA + vocab rows) vs regex.compile (after regex.purge())
  step       the engine's per-step mask along full sample texts: Constraint.allowed + advance (cold: each
             state's row built on first use; warm: cached), vs the `regex` module's alternative,
             fullmatch(text + c, partial=True) for every vocab char c (a prefix of some match)
  agree      whether both masks are the same at every step (partial matching may admit dead ends)
  big        compile time of patterns with many states (.{0,1000}; an exponential DFA)
Best of `rounds`. Prints one line per figure, with the CPU's model (from lscpu).
"""

from __future__ import annotations

import argparse
import string
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from charrnn.sampling.constrain import Constraint

DATE = r"(19|20)\d\d-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])( [A-Z][a-z]+){1,3}\."
CHARS = sorted(set(string.printable) - set("\x0b\x0c\r"))
BIG = [".{0,1000}", "(a|b)*a(a|b){13}"]


def cpu_model() -> str:
    """lscpu's model name, family and model (the machine is one of several; say which)."""
    try:
        lines = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown CPU"
    facts = dict(line.split(":", 1) for line in lines if ":" in line)
    facts = {key.strip(): value.strip() for key, value in facts.items()}
    return f"{facts.get('Model name', '?')} (family {facts.get('CPU family', '?')}, model {facts.get('Model', '?')})"


def best(seconds: list[float]) -> str:
    return f"{min(seconds) * 1e6:9.1f} µs"


def samples(constraint: Constraint, count: int) -> list[str]:
    """Full matches made the way the engine makes them: random allowed chars, then finishing ones."""
    rng = np.random.default_rng(0)
    texts = []
    for _ in range(count):
        state, text = constraint.start, ""
        while not constraint.accepting(state) or (constraint.allowed(state).any() and rng.random() < 0.5):
            allowed = constraint.allowed(state) if len(text) < 10 else constraint.finishing(state)
            char_id = int(rng.choice(np.flatnonzero(allowed)))
            state, text = constraint.advance(state, char_id), text + CHARS[char_id]
        texts.append(text)
    return texts


def dfa_steps(constraint: Constraint, texts: list[str]) -> tuple[float, int]:
    """Seconds for allowed() + advance() along every text, and the number of masks (steps + 1 per text)."""
    index = {c: i for i, c in enumerate(CHARS)}
    steps = len(texts)
    start = time.perf_counter()
    for text in texts:
        state = constraint.start
        for c in text:
            constraint.allowed(state)
            state = constraint.advance(state, index[c])
            steps += 1
        constraint.allowed(state)
    return time.perf_counter() - start, steps


def partial_steps(compiled, texts: list[str]) -> float:  # type: ignore[no-untyped-def]
    """Seconds for the `regex` module's mask (one partial fullmatch per vocab char) along every text."""
    start = time.perf_counter()
    for text in texts:
        for end in range(len(text) + 1):
            prefix = text[:end]
            [compiled.fullmatch(prefix + c, partial=True) is not None for c in CHARS]
    return time.perf_counter() - start


def disagreements(constraint: Constraint, compiled, texts: list[str]) -> int:  # type: ignore[no-untyped-def]
    """Steps at which the two masks differ."""
    index = {c: i for i, c in enumerate(CHARS)}
    differ = 0
    for text in texts:
        state = constraint.start
        for end in range(len(text) + 1):
            partial = np.array([compiled.fullmatch(text[:end] + c, partial=True) is not None for c in CHARS])
            differ += int((partial != constraint.allowed(state)).any())
            if end < len(text):
                state = constraint.advance(state, index[text[end]])
    return differ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    try:
        import regex
    except ImportError:
        regex = None
    print(f"CPU: {cpu_model()}; vocab {len(CHARS)} chars; pattern {DATE} ({len(DATE)} chars)")

    compiles = []
    for _ in range(args.rounds):
        start = time.perf_counter()
        constraint = Constraint.compile(DATE, CHARS)
        compiles.append(time.perf_counter() - start)
    print(f"compile  interegular DFA   {best(compiles)}   ({constraint.states} states)")
    if regex is not None:
        compiles = []
        for _ in range(args.rounds):
            regex.purge()
            start = time.perf_counter()
            compiled = regex.compile(DATE)
            compiles.append(time.perf_counter() - start)
        print(f"compile  regex.compile     {best(compiles)}")

    texts = samples(constraint, args.samples)
    cold, masks = dfa_steps(Constraint.compile(DATE, CHARS), texts[:1])
    cold /= masks
    masks = dfa_steps(constraint, texts)[1]
    warm = min(dfa_steps(constraint, texts)[0] for _ in range(args.rounds)) / masks
    print(f"step     DFA allowed+advance {warm * 1e6:7.2f} µs warm, {cold * 1e6:.1f} µs cold (first sample)")
    if regex is not None:
        partial = min(partial_steps(compiled, texts) for _ in range(args.rounds)) / masks
        calls = f"{len(CHARS)} fullmatch calls; {partial / warm:.0f}x the DFA"
        print(f"step     regex partial     {partial * 1e6:9.1f} µs ({calls})")
        differ = disagreements(constraint, compiled, texts[:20])
        print(f"agree    masks differ at {differ} steps of the first 20 samples")
    else:
        print("regex is not installed (pip install regex) : no comparison")

    for pattern in BIG:
        start = time.perf_counter()
        big = Constraint.compile(pattern, CHARS)
        print(f"big      {pattern:18} {(time.perf_counter() - start) * 1e3:8.1f} ms ({big.states} states)")


if __name__ == "__main__":
    main()

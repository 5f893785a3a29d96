"""Big corpora on one machine: encoding speed, peak memory of a training run, and a warm second start.

    python benchmarks/corpus_scale.py [--mb 100] [--keep DIR]

Writes a deterministic synthetic corpus of --mb MiB (made-up words from a generated lexicon, with
punctuation, newlines and some non-ASCII; no third-party text) to a temporary directory, then:
(a) times a cold `load_corpus` with an empty id cache: encoding MB/s (target >= 30);
(b) runs the real `charrnn train CORPUS --steps 20 --hidden 128` in a subprocess, cache cold, and
    reads its peak RSS from os.wait4 (target <= corpus size + 1 GiB);
(c) runs `charrnn train CORPUS --steps 1 --hidden 128` again on the warm cache and measures the
    time from launching the process to its `train` row appearing in metrics.jsonl (the end of
    the first optimizer step). That row's `elapsed_s` is the step's own time (the training clock
    starts with the loop), so launch -> loop start = the first minus the second: imports, corpus
    mapping, model and optimizer set-up. Both are printed; the 5 s target is checked on the
    start of training, and the first step (oneDNN/bf16 warm-up, the same for any corpus) is
    shown next to it. Its peak RSS is reported too.
Prints one line per case with the ratio to its target and writes benchmarks/results/corpus_scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, write_result

from charrnn.data.corpus import load_corpus

MIB = 1 << 20
TARGET_MB_S = 30.0
TARGET_EXTRA_RSS = 1 << 30
TARGET_START_S = 5.0
TRAIN_FLAGS = ["--hidden", "128", "--threads", "2", "--quiet"]


def lexicon(rng: np.random.Generator, size: int = 6000) -> list[str]:
    """Made-up words from syllables; a few per hundred carry accents, umlauts, CJK or a dash."""
    syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "qu", "sh", "ng"]
    extras = ["é", "ü", "ß", "ñ", "ø", "—", "語", "字", "ł", "ç"]
    words = []
    for _ in range(size):
        word = "".join(rng.choice(syllables, size=int(rng.integers(1, 4))))
        if rng.random() < 0.03:
            word += str(rng.choice(extras))
        words.append(word)
    return words


def tokens(words: list[str]) -> list[str]:
    """Words, then the same words with trailing punctuation, then newlines (chosen less often)."""
    return words + [w + p for w in words[:1500] for p in (",", ".")] + ["\n", "\n\n"]


def generate(path: Path, mb: float, seed: int = 0) -> int:
    """Write about `mb` MiB of text to `path`, chunk by chunk; returns the bytes written."""
    rng = np.random.default_rng(seed)
    vocab = tokens(lexicon(rng))
    weights = 1.0 / np.arange(1, len(vocab) + 1) ** 0.9  # Zipf-like: a few words are common
    weights[-2:] = [weights.sum() * 0.02, weights.sum() * 0.004]
    weights /= weights.sum()
    target = int(mb * MIB)
    written = 0
    with open(path, "wb") as out:
        while written < target:
            chosen = rng.choice(len(vocab), size=200_000, p=weights)
            text = " ".join(vocab[i] for i in chosen).replace(" \n", "\n").replace("\n ", "\n")
            data = text.encode("utf-8")[: target - written]
            data = data.decode("utf-8", "ignore").encode("utf-8")  # never cut a character in half
            out.write(data)
            written += len(data)
    return written


def train_process(corpus: Path, out: Path, cache: Path, steps: int) -> tuple[subprocess.Popen, float]:
    env = dict(os.environ, CHARRNN_CACHE_DIR=str(cache), PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "charrnn", "train", str(corpus), "--steps", str(steps), "--out", str(out)]
    log = open(out.parent / f"{out.name}.log", "wb")  # noqa: SIM115 - owned by the child
    start = time.perf_counter()
    return subprocess.Popen([*command, *TRAIN_FLAGS], stdout=log, stderr=subprocess.STDOUT, env=env), start


def first_train_row(metrics: Path) -> dict | None:
    if not metrics.exists():
        return None
    rows = [json.loads(line) for line in metrics.read_text().splitlines() if line.endswith("}")]
    return next((row for row in rows if row.get("event") == "train"), None)


def wait(proc: subprocess.Popen, start: float, out: Path) -> tuple[float, float, int]:
    """(seconds from `start` to the first train row, that row's elapsed_s, peak RSS in bytes) of a run."""
    first_row, row = float("nan"), None
    metrics = out / "metrics.jsonl"
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if row is None and (row := first_train_row(metrics)) is not None:
            first_row = time.perf_counter() - start
        if pid:
            break
        time.sleep(0.01)
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code != 0:
        log = (out.parent / f"{out.name}.log").read_text(errors="replace")
        raise SystemExit(f"charrnn train failed ({code}):\n{log}")
    step_s = float(row["elapsed_s"]) if row is not None else float("nan")
    return first_row, step_s, usage.ru_maxrss * 1024  # Linux reports KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0, help="corpus size in MiB")
    parser.add_argument("--keep", type=Path, help="work here (kept) instead of a temporary directory")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="corpus-scale-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        corpus = work / "synthetic.txt"
        t = time.perf_counter()
        size = generate(corpus, args.mb)
        print(f"corpus: {size / MIB:.1f} MiB generated in {time.perf_counter() - t:.1f} s", flush=True)

        t = time.perf_counter()
        cold = load_corpus([str(corpus)], cache_dir=work / "cache-a" / "ids")
        encode_s = time.perf_counter() - t
        mb_s = size / MIB / encode_s
        t = time.perf_counter()
        warm = load_corpus([str(corpus)], cache_dir=work / "cache-a" / "ids")
        hit_s = time.perf_counter() - t
        assert warm.cached and warm.num_chars == cold.num_chars
        print(
            f"(a) cold load_corpus: {mb_s:.1f} MB/s ({encode_s:.1f} s, {cold.num_chars:,} chars, vocab "
            f"{cold.vocab.size}) = {mb_s / TARGET_MB_S:.2f}x the 30 MB/s target; cache hit {hit_s:.2f} s",
            flush=True,
        )
        del cold, warm

        cache = work / "cache-b"
        proc, start = train_process(corpus, work / "cold", cache, 20)
        cold_first, _, cold_rss = wait(proc, start, work / "cold")
        cold_wall = time.perf_counter() - start
        limit = size + TARGET_EXTRA_RSS
        print(
            f"(b) charrnn train --steps 20, cold cache: peak RSS {cold_rss / MIB:,.0f} MiB "
            f"(limit corpus + 1 GiB = {limit / MIB:,.0f} MiB: {cold_rss / limit:.2f}x); "
            f"first train row after {cold_first:.1f} s, whole run {cold_wall:.1f} s",
            flush=True,
        )
        proc, start = train_process(corpus, work / "warm", cache, 1)
        warm_first, warm_step, warm_rss = wait(proc, start, work / "warm")
        warm_start = warm_first - warm_step
        print(
            f"(c) second start, warm cache: training starts {warm_start:.2f} s after launch "
            f"({warm_start / TARGET_START_S:.2f}x the 5 s target), first step done at {warm_first:.2f} s "
            f"(the step itself {warm_step:.2f} s); peak RSS {warm_rss / MIB:,.0f} MiB",
            flush=True,
        )
        payload = {
            "corpus_bytes": size,
            "cpus": os.cpu_count(),
            "encode_s": round(encode_s, 2),
            "encode_mb_s": round(mb_s, 1),
            "cache_hit_s": round(hit_s, 3),
            "cold_train_peak_rss_bytes": cold_rss,
            "cold_train_first_row_s": round(cold_first, 2),
            "cold_train_wall_s": round(cold_wall, 1),
            "warm_train_peak_rss_bytes": warm_rss,
            "warm_train_loop_start_s": round(warm_start, 2),
            "warm_train_first_step_done_s": round(warm_first, 2),
            "warm_train_first_step_s": round(warm_step, 2),
            "train_flags": TRAIN_FLAGS,
        }
    print(f"wrote {write_result('corpus_scale', payload)}")


if __name__ == "__main__":
    main()

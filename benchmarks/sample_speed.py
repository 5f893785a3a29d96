"""Sampling speed: chars/s of each engine, as ratios measured in the same run, plus start-up times.

    python benchmarks/sample_speed.py [--hidden 512] [--layers 2] [--rounds 3] [--out FILE.json]

Cases (2x512 LSTM, vocab 65, randomly initialised: speed does not depend on training):
  module-1   the reference: nn.LSTM called once per character, one stream
  fast-1     the matrix-product stepper, one stream
  fast-64    the same stepper, 64 streams at once (aggregate chars/s)
  help       wall time of `charrnn --help` in a fresh process
  first-char time from starting `charrnn sample` to its first byte on stdout
Every engine runs through the same `generate_many` loop (temperature 1 sampling), so the ratios
compare steppers, not loops. Prints one line per case and writes all figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from charrnn.checkpoint import save_checkpoint  # noqa: E402
from charrnn.device import available_cores  # noqa: E402
from charrnn.model import CharRNN, ModelConfig  # noqa: E402
from charrnn.sample import SampleSettings, generate_many  # noqa: E402
from charrnn.vocab import Vocab  # noqa: E402

VOCAB = Vocab("".join(sorted(set("\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))))


def measure(model: CharRNN, engine: str, streams: int, length: int, threads: int) -> float:
    """Aggregate chars/s of one `generate_many` call: `streams` samples of `length` characters."""
    torch.set_num_threads(threads)
    settings = SampleSettings(temperature=1.0)
    start = time.perf_counter()
    pieces = generate_many(model, VOCAB, "T", length, settings, range(streams), "cpu", engine=engine)
    chars = sum(len(piece.text) for piece in pieces)
    elapsed = time.perf_counter() - start
    assert chars == length * streams
    return chars / elapsed


def best_of(model: CharRNN, cases: dict[str, tuple[str, int, int, int]], rounds: int) -> dict[str, dict]:
    """Each case `rounds` times, interleaved so that load from other processes hits all alike; the best run."""
    runs: dict[str, list[float]] = {name: [] for name in cases}
    for engine, streams, _, threads in cases.values():
        measure(model, engine, streams, 8, threads)  # warm-up
    for _ in range(rounds):
        for name, (engine, streams, length, threads) in cases.items():
            runs[name].append(measure(model, engine, streams, length, threads))
    return {
        name: {
            "engine": engine,
            "streams": streams,
            "threads": threads,
            "chars": streams * length,
            "chars_per_s": round(max(runs[name]), 1),
            "runs": [round(r, 1) for r in runs[name]],
        }
        for name, (engine, streams, length, threads) in cases.items()
    }


def startup(model: CharRNN) -> dict[str, float]:
    """Fresh-process wall times: `charrnn --help`, and `charrnn sample` until its first byte."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "charrnn"]
    start = time.perf_counter()
    subprocess.run([*command, "--help"], env=env, capture_output=True, check=True)
    help_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "best.safetensors"
        save_checkpoint(ckpt, model.config, VOCAB, model.state_dict())
        start = time.perf_counter()
        proc = subprocess.Popen(
            [*command, "sample", "-c", str(ckpt), "--length", "100000"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
        assert proc.stdout is not None
        proc.stdout.read(1)
        first_s = time.perf_counter() - start
        proc.kill()
        proc.wait()
    return {"help_s": round(help_s, 3), "first_char_s": round(first_s, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--all-cores", action="store_true", help="also time the many-stream case on every core")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each case (the best counts)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "sample_speed.json"))
    args = parser.parse_args()

    torch.manual_seed(0)
    config = ModelConfig(vocab_size=VOCAB.size, cell=args.cell, num_layers=args.layers, hidden_size=args.hidden)
    model = CharRNN(config).eval()
    cores = available_cores()
    n = args.streams
    specs = {  # name: (engine, streams, length per stream, threads)
        "module-1": ("module", 1, 100, 1),
        "fast-1": ("fast", 1, 1000, 1),
        f"fast-{n}": ("fast", n, 50, 1),
    }
    if args.all_cores and cores > 1:
        specs[f"fast-{n}-x{cores}"] = ("fast", n, 100, cores)
    cases = best_of(model, specs, args.rounds)
    one = cases["fast-1"]["chars_per_s"]
    many = max(figures["chars_per_s"] for name, figures in cases.items() if name.startswith(f"fast-{n}"))
    ratios = {
        "fast-1 / module-1": round(one / cases["module-1"]["chars_per_s"], 2),
        f"fast-{n} (best) / fast-1": round(many / one, 2),
    }
    times = startup(model)
    name = f"{args.layers}x{args.hidden} {args.cell.upper()}"
    for case, figures in cases.items():
        where = f"{figures['streams']} stream(s), {figures['threads']} thread(s), best of {len(figures['runs'])}"
        print(f"{case:10s} {name}  {figures['chars_per_s']:>10,.0f} chars/s  ({where})")
    for ratio, value in ratios.items():
        print(f"ratio      {ratio}: {value:.1f}x")
    print(f"startup    charrnn --help {times['help_s']:.2f}s; charrnn sample first char {times['first_char_s']:.2f}s")
    result = {
        "model": name,
        "cases": cases,
        "ratios": ratios,
        "startup": times,
        "machine": {
            "cores": cores,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cpu": platform.processor() or platform.machine(),
            "load_avg_1m": os.getloadavg()[0],
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote      {out}")


if __name__ == "__main__":
    main()

"""Sampling speed: chars/s of each engine, as ratios measured in the same run, plus start-up times.

    python benchmarks/sample_speed.py [--hidden 512] [--layers 2] [--rounds 5] [--out FILE.json]
    python benchmarks/sample_speed.py --checkpoint RUN/best.safetensors --text heldout.txt

Cases (2x512 LSTM, vocab 65, randomly initialised: speed does not depend on training):
  module-1   the reference: nn.LSTM called once per character, one stream
  fast-1     the matrix-product stepper, one stream, one thread
  fast-64    the same stepper, 64 streams at once (aggregate chars/s)
  fast-*-xC  the same on all C cores (what `charrnn sample` picks when the cores are idle)
  int8-1/64  the stepper with int8 weights (--weights int8)
  int8       with --checkpoint and --text: does int8 change the distribution (see int8_quality)
  ceiling    chars/s if a step only read its fp32 weights once (memory bandwidth, measured now,
             on one thread and on all cores)
  help       wall time of `charrnn --help` in a fresh process
  first-char time from starting `charrnn sample` to its first byte on stdout
Every engine runs through the same `generate_many` loop (temperature 1 sampling), so the ratios
compare steppers, not loops. Prints one line per case and writes all figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import math
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

from charrnn.device import available_cores  # noqa: E402
from charrnn.evaluate import evaluate_ids  # noqa: E402
from charrnn.model import CharRNN, ModelConfig  # noqa: E402
from charrnn.sampling.controls import RunSettings, SampleSettings  # noqa: E402
from charrnn.sampling.generate import generate_many  # noqa: E402
from charrnn.sampling.steppers import FastStepper  # noqa: E402
from charrnn.store.checkpoint import load_checkpoint, load_model, save_checkpoint  # noqa: E402
from charrnn.vocab import Vocab  # noqa: E402

VOCAB = Vocab("".join(sorted(set("\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))))


def measure(
    model: CharRNN, vocab: Vocab, engine: str, weights: str, streams: int, length: int, threads: int
) -> tuple[float, float]:
    """Aggregate chars per wall second and per CPU second of one `generate_many` call.

    CPU time counts only this process's own work, so it stays meaningful when other processes
    share the cores (wall time then includes waiting for a core).
    """
    settings, run = SampleSettings(temperature=1.0), RunSettings(length=length, num_samples=streams, seed=0)
    wall, cpu = time.perf_counter(), time.process_time()
    prime = vocab.chars[-1]
    pieces = generate_many(model, vocab, prime, settings, run, "cpu", engine=engine, weights=weights, threads=threads)
    chars = sum(len(piece.text) for piece in pieces)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert chars == length * streams
    return chars / wall, chars / max(cpu, 1e-9)


Spec = tuple[str, str, int, int, int]  # engine, weights, streams, length per stream, threads


def best_of(model: CharRNN, vocab: Vocab, cases: dict[str, Spec], rounds: int) -> dict[str, dict]:
    """Each case `rounds` times, interleaved so that load from other processes hits all alike; the best run."""
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for engine, weights, streams, _, threads in cases.values():
        measure(model, vocab, engine, weights, streams, 8, threads)  # warm-up
    for _ in range(rounds):
        for name, (engine, weights, streams, length, threads) in cases.items():
            runs[name].append(measure(model, vocab, engine, weights, streams, length, threads))
    return {
        name: {
            "engine": engine,
            "weights": weights,
            "streams": streams,
            "threads": threads,
            "chars": streams * length,
            "chars_per_s": round(max(wall for wall, _ in runs[name]), 1),
            "chars_per_cpu_s": round(max(cpu for _, cpu in runs[name]), 1),
            "runs_wall": [round(wall, 1) for wall, _ in runs[name]],
        }
        for name, (engine, weights, streams, length, threads) in cases.items()
    }


def read_ceiling(model: CharRNN, threads: int, seconds: float = 2.0) -> dict[str, float]:
    """The one-stream ceiling: chars/s if a step cost nothing but reading its fp32 weights once.

    Each character's step reads every recurrent and head matrix; here they are only summed, in
    the same order, on `threads` threads, and the best pass counts. A stepper near this figure is bound
    by the machine's memory bandwidth, and only fewer bytes (int8) can go faster.
    """
    stepper = FastStepper(model)
    matrices = [p.weight for p in (*stepper.hh, *stepper.ih, *stepper.cat, stepper.head)]
    total = sum(m.numel() * m.element_size() for m in matrices)
    torch.set_num_threads(threads)
    best = math.inf
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.perf_counter()
        for m in matrices:
            m.sum()
        best = min(best, time.perf_counter() - start)
    return {"bytes_per_char": total, "read_gb_per_s": round(total / best / 1e9, 2), "chars_per_s": round(1 / best, 1)}


def int8_quality(model: CharRNN, vocab: Vocab, text: str, chars: int, samples: int) -> dict[str, float]:
    """Does int8 change the text distribution? Three views, all in nats/char.

    - teacher-forced loss of held-out text under fp32 and int8 steps, and their mean KL per char;
    - the model's own samples (temperature 1, same seeds) drawn with fp32 and with int8 weights,
      both scored by the fp32 model with `evaluate_ids`: equal within noise if nothing changed.
    """
    ids = torch.tensor(vocab.encode(text[: chars + 1]).astype("int64"))
    exact, small = FastStepper(model), FastStepper(model, "int8")
    loss = {"fp32": 0.0, "int8": 0.0}
    kl = 0.0
    with torch.inference_mode():
        first, state = model(ids[:1].view(1, 1))
        exact.load_state(state)
        small.load_state(state)
        p_logits = q_logits = first[:, -1]  # both start from the same prime
        for t in range(1, ids.numel()):
            p, q = p_logits.log_softmax(-1), q_logits.log_softmax(-1)
            loss["fp32"] -= float(p[0, ids[t]])
            loss["int8"] -= float(q[0, ids[t]])
            kl += float((p.exp() * (p - q)).sum())
            p_logits, q_logits = exact.step(ids[t : t + 1]), small.step(ids[t : t + 1])
    n = ids.numel() - 1
    scored = {}
    for weights in ("fp32", "int8"):
        seeds = range(100, 100 + samples)
        pieces = generate_many(model, vocab, "\n", chars, SampleSettings(), seeds, "cpu", weights=weights)
        sample_text = "".join(piece.text for piece in pieces)
        result = evaluate_ids(model, vocab.encode(sample_text), torch.device("cpu"))
        scored[weights] = round(result.loss, 4)
    return {
        "heldout_chars": n,
        "heldout_loss_fp32": round(loss["fp32"] / n, 4),
        "heldout_loss_int8": round(loss["int8"] / n, 4),
        "mean_kl_fp32_int8": round(kl / n, 6),
        "sample_chars": chars * samples,
        "own_samples_loss_fp32": scored["fp32"],
        "own_samples_loss_int8": scored["int8"],
    }


def startup(model: CharRNN, vocab: Vocab) -> dict[str, float]:
    """Fresh-process wall times: `charrnn --help`, and `charrnn sample` until its first byte."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "charrnn"]
    start = time.perf_counter()
    subprocess.run([*command, "--help"], env=env, capture_output=True, check=True)
    help_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = Path(tmp) / "best.safetensors"
        save_checkpoint(ckpt, model.config, vocab, model.state_dict())
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
    parser.add_argument("--checkpoint", help="time this trained checkpoint instead of a random 2x512 LSTM")
    parser.add_argument("--text", help="held-out text for the int8 quality check (needs --checkpoint)")
    parser.add_argument("--quality-chars", type=int, default=5000, help="characters per quality measurement")
    parser.add_argument("--rounds", type=int, default=5, help="runs of each case (the best counts)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "sample_speed.json"))
    args = parser.parse_args()

    if args.checkpoint:
        ckpt = load_checkpoint(args.checkpoint)
        model, vocab = load_model(ckpt).eval(), ckpt.vocab
        c = model.config
        args.layers, args.hidden, args.cell = c.num_layers, c.hidden_size, c.cell
    else:
        torch.manual_seed(0)
        vocab = VOCAB
        config = ModelConfig(vocab_size=vocab.size, cell=args.cell, num_layers=args.layers, hidden_size=args.hidden)
        model = CharRNN(config).eval()
    cores = available_cores()
    n = args.streams
    specs: dict[str, Spec] = {
        "module-1": ("module", "fp32", 1, 100, 1),
        "fast-1": ("fast", "fp32", 1, 1000, 1),
        f"fast-{n}": ("fast", "fp32", n, 50, 1),
        "int8-1": ("fast", "int8", 1, 1000, 1),
        f"int8-{n}": ("fast", "int8", n, 50, 1),
    }
    if cores > 1:
        specs[f"fast-1-x{cores}"] = ("fast", "fp32", 1, 1000, cores)
        specs[f"fast-{n}-x{cores}"] = ("fast", "fp32", n, 50, cores)
    cases = best_of(model, vocab, specs, args.rounds)
    ratios = {}
    for clock in ("chars_per_s", "chars_per_cpu_s"):
        unit = "wall" if clock == "chars_per_s" else "cpu"
        # the best of one thread and all cores: what `charrnn sample` picks depends on the load
        one = max(cases[name][clock] for name in ("fast-1", f"fast-1-x{cores}") if name in cases)
        many = max(cases[name][clock] for name in (f"fast-{n}", f"fast-{n}-x{cores}") if name in cases)
        ratios[f"fast-1 / module-1 ({unit})"] = round(one / cases["module-1"][clock], 2)
        ratios[f"fast-{n} / fast-1 ({unit})"] = round(many / one, 2)
        ratios[f"int8-1 / fast-1 ({unit})"] = round(cases["int8-1"][clock] / one, 2)
        ratios[f"int8-{n} / int8-1 ({unit})"] = round(cases[f"int8-{n}"][clock] / cases["int8-1"][clock], 2)
    quality = None
    if args.checkpoint and args.text:
        quality = int8_quality(model, vocab, Path(args.text).read_text(encoding="utf-8"), args.quality_chars, 4)
    ceilings = {threads: read_ceiling(model, threads) for threads in sorted({1, cores})}
    times = startup(model, vocab)
    name = f"{args.layers}x{args.hidden} {args.cell.upper()}"
    for case, figures in cases.items():
        where = f"{figures['streams']} stream(s), {figures['threads']} thread(s), best of {len(figures['runs_wall'])}"
        print(
            f"{case:10s} {name}  {figures['chars_per_s']:>8,.0f} chars/s wall  "
            f"{figures['chars_per_cpu_s']:>8,.0f} chars/s cpu  ({where})"
        )
    for ratio, value in ratios.items():
        print(f"ratio      {ratio}: {value:.1f}x")
    for threads, ceiling in ceilings.items():
        fast = cases["fast-1" if threads == 1 else f"fast-1-x{threads}"]["chars_per_s"]
        print(
            f"ceiling    {ceiling['bytes_per_char'] / 1e6:.1f} MB of fp32 weights per char read at "
            f"{ceiling['read_gb_per_s']:.1f} GB/s on {threads} thread(s): {ceiling['chars_per_s']:,.0f} chars/s "
            f"for one stream; fast-1 on as many threads reaches {fast / ceiling['chars_per_s']:.0%} of it"
        )
    if quality:
        print(
            f"int8       held-out loss {quality['heldout_loss_fp32']:.4f} (fp32) vs {quality['heldout_loss_int8']:.4f} "
            f"(int8) nats/char, KL {quality['mean_kl_fp32_int8']:.2e}; own samples scored by fp32: "
            f"{quality['own_samples_loss_fp32']:.4f} (fp32) vs {quality['own_samples_loss_int8']:.4f} (int8)"
        )
    print(f"startup    charrnn --help {times['help_s']:.2f}s; charrnn sample first char {times['first_char_s']:.2f}s")
    result = {
        "model": name,
        "cases": cases,
        "ratios": ratios,
        "startup": times,
        "read_ceiling": {f"threads_{threads}": ceiling for threads, ceiling in ceilings.items()},
        "int8_quality": quality,
        "checkpoint": args.checkpoint,
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

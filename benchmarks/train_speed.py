"""Training throughput: charrnn's training step vs a plain PyTorch LSTM loop, measured in one run.

    python benchmarks/train_speed.py [--hidden 512 --layers 2 --batch 64 --seq 128 --seconds 20 --rounds 1]
    python benchmarks/train_speed.py --device cuda --layers 3 --hidden 1024 --batch 128 --seq 256

Prints which step charrnn's `--dtype auto` picked at start-up, then one line per case (chars/s,
ratio to the plain fp32 loop and to the best plain loop, model-FLOP utilisation against the fp32
and bf16 GEMM peaks measured on the spot) and writes benchmarks/results/train_speed.json.
"""

from __future__ import annotations

import argparse
import statistics
import string
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import gemm_peak, synchronize, write_result

from charrnn.device import configure_threads, cpu_supports_fast_bf16, dtype_name
from charrnn.model import ModelConfig, count_parameters
from charrnn.training.loop import Trainer
from charrnn.training.options import TrainOptions

VOCAB = 65


def plain_loop(config: ModelConfig, batch: int, seq: int, bf16: bool, device: torch.device) -> Callable[[], None]:
    """The baseline users would write: embedding, nn.LSTM, linear, AdamW, clipping."""
    embed = nn.Embedding(VOCAB, config.embed_size).to(device)
    rnn = nn.LSTM(config.embed_size, config.hidden_size, config.num_layers, batch_first=True).to(device)
    head = nn.Linear(config.hidden_size, VOCAB).to(device)
    params = [*embed.parameters(), *rnn.parameters(), *head.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-3)
    x = torch.randint(0, VOCAB, (batch, seq), device=device)
    y = torch.randint(0, VOCAB, (batch, seq), device=device)
    state: list[tuple[torch.Tensor, torch.Tensor] | None] = [None]

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out, new_state = rnn(embed(x), state[0])
            logits = head(out)
        loss = F.cross_entropy(logits.float().reshape(-1, VOCAB), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        state[0] = (new_state[0].detach(), new_state[1].detach())

    return step


def charrnn_step(
    config: ModelConfig, batch: int, seq: int, workdir: Path, dtype: str, device: torch.device
) -> tuple[Callable[[], None], str]:
    """charrnn's own training step (Trainer.step), on random text with the same vocabulary size,
    and what `--dtype auto` picked. A time budget (never reached) makes the start-up probe run, as
    in a default run: that probe is where `auto` times its candidate steps and picks one."""
    corpus = workdir / "random.txt"
    alphabet = (string.ascii_letters + string.digits + " \n.")[:VOCAB]
    ids = torch.randint(0, len(alphabet), (batch * seq * 40,))
    corpus.write_text("".join(alphabet[i] for i in ids.tolist()))
    trainer = Trainer(
        TrainOptions(
            corpus=(str(corpus),),
            out=str(workdir / f"run-{dtype}"),
            num_layers=config.num_layers,
            hidden_size=config.hidden_size,
            embed_size=config.embed_size,
            dropout=0.0,
            batch_size=batch,
            seq_len=seq,
            steps=10**9,
            time=10**6,
            dtype=dtype,
            device=str(device),
            threads=torch.get_num_threads(),
        )
    )
    trainer.model.train()
    parts = trainer.parts
    picked = f"{dtype_name(parts.dtype)}{f' ({parts.dtype_note})' if parts.dtype_note else ''}"
    return (lambda: trainer.step(1e-3)), picked


def chars_per_second(step: Callable[[], None], chars_per_step: int, seconds: float, device: torch.device) -> float:
    synchronize(device)
    count, start = 0, time.perf_counter()
    while count == 0 or time.perf_counter() - start < seconds:
        step()
        count += 1
    synchronize(device)
    return count * chars_per_step / (time.perf_counter() - start)


def in_rounds(
    steps: dict[str, Callable[[], None]], chars_per_step: int, seconds: float, rounds: int, device: torch.device
) -> dict[str, float]:
    """Each case's median rate over `rounds` turns of seconds/rounds each: on a shared machine the
    load changes from minute to minute, and taking turns spreads it over every case alike."""
    for step in steps.values():
        for _ in range(3):
            step()
    rates: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            rates[name].append(chars_per_second(step, chars_per_step, seconds / rounds, device))
    return {name: statistics.median(values) for name, values in rates.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--embed", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--seconds", type=float, default=20.0, help="timed seconds per case")
    parser.add_argument("--rounds", type=int, default=1, help="cases take turns this often (median of the turns)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the plain loop runs there too)")
    args = parser.parse_args()
    configure_threads(args.threads)
    device = torch.device(args.device)
    config = ModelConfig(vocab_size=VOCAB, num_layers=args.layers, hidden_size=args.hidden, embed_size=args.embed)
    flops_per_char = 6 * count_parameters(config)
    # Without native bf16 (e.g. AVX2-only CPUs) bf16 is emulated, ~80x slower than fp32, and oneDNN
    # has no bf16 LSTM at all: those cases are skipped, and `auto` means fp32 there.
    has_bf16 = device.type != "cpu" or cpu_supports_fast_bf16()
    peaks = {"fp32": gemm_peak(torch.float32, device)}
    if has_bf16:
        peaks["bf16"] = gemm_peak(torch.bfloat16, device)
    print(
        f"GEMM peak on {device}: "
        + ", ".join(f"{name} {flops / 1e9:.0f} GFLOP/s" for name, flops in peaks.items())
        + ("" if has_bf16 else " (no native bf16 on this CPU: bf16 cases skipped)")
        + f"; model {args.layers}x{args.hidden} LSTM, {count_parameters(config):,} params, "
        f"batch {args.batch} x {args.seq}"
    )
    chars = args.batch * args.seq
    steps: dict[str, Callable[[], None]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for bf16 in (False, True) if has_bf16 else (False,):
            name = "plain-bf16-autocast" if bf16 else "plain-fp32"
            steps[name] = plain_loop(config, args.batch, args.seq, bf16, device)
        for dtype in ("fp32", "auto"):
            steps[f"charrnn-{dtype}"], picked = charrnn_step(config, args.batch, args.seq, Path(tmp), dtype, device)
            if dtype == "auto":
                print(f"charrnn auto runs {picked}")
        cases = in_rounds(steps, chars, args.seconds, args.rounds, device)
    baseline = cases["plain-fp32"]
    best_plain = max(rate for name, rate in cases.items() if name.startswith("plain-"))
    rows = []
    for name, rate in cases.items():
        achieved = flops_per_char * rate
        mfu = {peak: achieved / flops for peak, flops in peaks.items()}
        row = {
            "case": name,
            "chars_per_s": round(rate, 1),
            "ratio_vs_plain_fp32": round(rate / baseline, 3),
            "ratio_vs_best_plain": round(rate / best_plain, 3),
        }
        row.update({f"mfu_vs_{peak}_peak": round(value, 4) for peak, value in mfu.items()})
        rows.append(row)
        print(
            f"{name:<22} {rate:>9,.0f} chars/s  x{row['ratio_vs_plain_fp32']:.2f} vs plain fp32, "
            f"x{row['ratio_vs_best_plain']:.2f} vs the best plain loop  MFU "
            + ", ".join(f"{value:.0%} of {peak} peak" for peak, value in mfu.items())
        )
    path = write_result(
        "train_speed",
        {"config": vars(args), "params": count_parameters(config), "gemm_peak_flops": peaks, "cases": rows},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

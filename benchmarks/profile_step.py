"""Where a training step's time goes: charrnn's own `Trainer.step`, phase by phase and op by op.

    python benchmarks/profile_step.py [--hidden 384 --batch 32 --seq 64 --steps 20 --threads 1]

Builds the real Trainer on Tiny Shakespeare (the `--time 80s` configuration by default), then
times each phase of a step (forward, loss, backward, clipping, AdamW, the rest) with a clock
around each, and lists the operators that take the most time under torch.profiler. Prints the
model-FLOP rate (6 x params x chars/s) against a GEMM peak measured on the spot, so the figures
say how far the step is from what this CPU can do. Writes benchmarks/results/profile_step.json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHAKESPEARE, gemm_peak, write_result

from charrnn.device import configure_threads
from charrnn.model import count_parameters, detach_state
from charrnn.training.carried import group_rows, put_group_rows
from charrnn.training.loop import Trainer
from charrnn.training.options import TrainOptions
from charrnn.training.step import Stepper

PHASES = ("window", "forward", "loss", "backward", "clip", "adamw")


def timed_step(stepper: Stepper, totals: dict[str, float]) -> None:
    """`Stepper.step`'s work, in its order, with a clock between the phases (CPU: no sync needed)."""
    batcher = stepper.batcher
    marks = [time.perf_counter()]
    window = stepper.state.window % batcher.windows_per_epoch
    x, y = batcher.window(window)
    start = group_rows(stepper.carried, batcher.group(window), batcher.groups)
    marks.append(time.perf_counter())
    logits, carried = stepper.net(x, start)
    marks.append(time.perf_counter())
    loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
    marks.append(time.perf_counter())
    stepper.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    marks.append(time.perf_counter())
    torch.nn.utils.clip_grad_norm_(stepper.model.parameters(), stepper.config.grad_clip or float("inf"))
    marks.append(time.perf_counter())
    stepper.optimizer.step()
    marks.append(time.perf_counter())
    stepper.carried = put_group_rows(stepper.carried, detach_state(carried), batcher.group(window), batcher.groups)
    stepper.state.window += 1
    for name, start, end in zip(PHASES, marks[:-1], marks[1:], strict=True):
        totals[name] += end - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=SHAKESPEARE)
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seq", type=int, default=64)
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--steps", type=int, default=20, help="timed steps (after 3 warm-up steps)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--top", type=int, default=12, help="operators listed")
    args = parser.parse_args()
    if not args.corpus.is_file():
        raise SystemExit(f"no corpus at {args.corpus}; pass --corpus FILE")
    configure_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(
            TrainOptions(
                corpus=(str(args.corpus),),
                out=str(Path(tmp) / "run"),
                cell=args.cell,
                num_layers=args.layers,
                hidden_size=args.hidden,
                batch_size=args.batch,
                seq_len=args.seq,
                dropout=0.0,
                steps=10**9,
                dtype="fp32",
                threads=torch.get_num_threads(),
            )
        )
        trainer.model.train()
        for _ in range(3):
            trainer.step(1e-3)
        start = time.perf_counter()
        for _ in range(args.steps):
            trainer.step(1e-3)
        step_s = (time.perf_counter() - start) / args.steps
        totals: dict[str, float] = defaultdict(float)
        for _ in range(args.steps):
            timed_step(trainer.stepper, totals)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(max(3, args.steps // 4)):
                trainer.step(1e-3)
        params = count_parameters(trainer.model.config)
    peak = gemm_peak(torch.float32)
    chars = args.batch * args.seq
    rate = chars / step_s
    achieved = 6 * params * rate
    print(
        f"{args.layers}x{args.hidden} {args.cell.upper()}, {params:,} params, batch {args.batch} x {args.seq}, "
        f"{torch.get_num_threads()} thread(s), {torch.backends.cpu.get_cpu_capability()}"
    )
    print(
        f"Trainer.step: {step_s * 1000:.1f} ms = {rate:,.0f} chars/s = {achieved / 1e9:.1f} GFLOP/s of model "
        f"FLOPs; fp32 GEMM peak measured now {peak / 1e9:.1f} GFLOP/s ({achieved / peak:.0%} of it)"
    )
    phased = sum(totals.values())
    print("phases (a clock around each, same steps):")
    for name in PHASES:
        print(f"  {name:<9} {totals[name] / args.steps * 1000:7.1f} ms  {totals[name] / phased:6.1%}")
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    profiled = sum(e.self_cpu_time_total for e in events)
    print(f"top operators by self time (torch.profiler, {max(3, args.steps // 4)} steps):")
    ops = []
    for event in events[: args.top]:
        share = event.self_cpu_time_total / profiled
        ops.append({"op": event.key, "self_share": round(share, 4), "calls": event.count})
        print(f"  {event.key:<40} {share:6.1%}  {event.count:>6} calls")
    path = write_result(
        "profile_step",
        {
            "config": {k: str(v) for k, v in vars(args).items()},
            "params": params,
            "step_ms": round(step_s * 1000, 2),
            "chars_per_s": round(rate, 1),
            "model_gflops": round(achieved / 1e9, 2),
            "gemm_peak_gflops": round(peak / 1e9, 2),
            "phases_ms": {name: round(totals[name] / args.steps * 1000, 2) for name in PHASES},
            "top_ops": ops,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()

"""`--dtype auto` picks the training step by timing the candidates: the choice under fake timings,
so it is covered on any machine (fastest wins, an explicit dtype restricts, near-ties keep the
default, a failing candidate is skipped), the probe's turns and medians under a fake clock, and a
run that records its pick and resumes with it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from charrnn.training import probe
from charrnn.training.describe import banner
from charrnn.training.loop import Trainer
from charrnn.training.options import TrainOptions, parse_options
from charrnn.training.plan import probe_config
from charrnn.training.step_choice import TIE_SHARE, choose, pick_step, resumed_dtype, step_candidates
from tests.conftest import tiny_options

CPU, GPU = torch.device("cpu"), torch.device("cuda")
BOTH = ("bf16", "fp32")


def test_the_fastest_candidate_wins_and_the_note_says_by_how_much() -> None:
    assert pick_step(BOTH, {"bf16": 100.0, "fp32": 190.0}, {}) == ("fp32", "auto: fp32, 1.90x bf16 autocast here")
    assert pick_step(BOTH, {"bf16": 190.0, "fp32": 100.0}, {}) == ("bf16", "auto: bf16 autocast, 1.90x fp32 here")


def test_a_near_tie_keeps_the_default() -> None:
    """Within 3% the default stays, so two runs on a noisy machine do not flip between kernels."""
    just_inside = 100.0 * (1 + TIE_SHARE) - 0.01
    picked, note = pick_step(BOTH, {"bf16": 100.0, "fp32": just_inside}, {})
    assert picked == "bf16" and note == "auto: bf16 autocast, 0.97x fp32 here; within 3%: the default"
    assert pick_step(BOTH, {"bf16": 100.0, "fp32": 100.0}, {})[0] == "bf16"
    assert pick_step(BOTH, {"bf16": 100.0, "fp32": 100.0 * (1 + TIE_SHARE) + 0.01}, {})[0] == "fp32"
    assert choose({"a": 1.0, "b": 1.02}, ("a", "b")) == "a" and choose({"a": 1.0, "b": 1.02}, ("b", "a")) == "b"


def test_a_failing_candidate_is_skipped_and_named() -> None:
    picked, note = pick_step(BOTH, {"fp32": 50.0}, {"bf16": "RuntimeError: no bf16 LSTM " + "x" * 200})
    assert picked == "fp32"
    assert note.startswith("auto: fp32, bf16 autocast failed: RuntimeError: no bf16 LSTM x")
    assert len(note) < 120  # one line, the error cut short
    with pytest.raises(ValueError, match="no candidate"):
        pick_step(BOTH, {}, {"bf16": "e", "fp32": "e"})


def test_an_explicit_dtype_or_a_cpu_without_native_bf16_leaves_no_choice() -> None:
    assert step_candidates("auto", CPU, torch.bfloat16) == BOTH  # native bf16: bf16 first, fp32 timed beside it
    assert step_candidates("auto", CPU, torch.float32) == ("fp32",)  # no native bf16: never the emulated one
    assert step_candidates("fp32", CPU, torch.float32) == ("fp32",)
    assert step_candidates("bf16", CPU, torch.bfloat16) == ("bf16",)
    assert step_candidates("auto", GPU, torch.bfloat16) == ("bf16",)  # a GPU picks on the run's model, later
    # one candidate: a faster rate of another is not a choice, and nothing is claimed
    assert pick_step(("fp32",), {"fp32": 10.0, "bf16": 99.0}, {}) == ("fp32", "")


def test_a_resume_runs_the_step_its_run_picked(monkeypatch: pytest.MonkeyPatch) -> None:
    from charrnn import device

    monkeypatch.setattr(device, "cpu_supports_fast_bf16", lambda: True)
    assert resumed_dtype("fp32", CPU, torch.bfloat16) == torch.float32  # picked fp32 where bf16 is native
    assert resumed_dtype("bf16", CPU, torch.bfloat16) == torch.bfloat16
    assert resumed_dtype("fp16", CPU, torch.bfloat16) == torch.bfloat16  # a GPU's fp16: not on a CPU
    monkeypatch.setattr(device, "cpu_supports_fast_bf16", lambda: False)
    assert resumed_dtype("bf16", CPU, torch.float32) == torch.float32  # moved to a CPU without bf16


class FakeClock:
    """perf_counter for the probe: each candidate's step advances it by that candidate's seconds."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def __call__(self) -> float:
        return self.now

    def step(self, name: str, seconds: Iterator[float]) -> Callable[[], None]:
        def run() -> None:
            self.calls.append(name)
            self.now += next(seconds)

        return run


def fake_steps(
    monkeypatch: pytest.MonkeyPatch, seconds: dict[torch.dtype, list[float]], failing: tuple[torch.dtype, ...] = ()
) -> FakeClock:
    clock = FakeClock()
    monkeypatch.setattr(probe.time, "perf_counter", clock)
    streams = {dtype: iter(values) for dtype, values in seconds.items()}

    def training_step(config: Any, batch: int, seq_len: int, device: Any, dtype: torch.dtype) -> Callable[[], None]:
        if dtype in failing:
            raise RuntimeError(f"no {dtype} kernel here\nsecond line")
        return clock.step(str(dtype).removeprefix("torch."), streams[dtype])

    monkeypatch.setattr(probe, "training_step", training_step)
    return clock


def test_the_probe_times_the_candidates_in_turns_for_its_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16 0.1 s a step, fp32 0.2 s, after a 0.5 s warm-up each: one step of each in turn until
    the probe's 1 s is spent (4 rounds of 0.3 s): two candidates share it, start-up stays short."""
    clock = fake_steps(monkeypatch, {torch.bfloat16: [0.5] + [0.1] * 20, torch.float32: [0.5] + [0.2] * 20})
    picked, speed, note = probe.probe_steps(probe_config(5_000, 30, "lstm"), 4, 16, CPU, BOTH)
    assert probe.PROBE_SECONDS == 1.0 and clock.calls == ["bfloat16", "float32"] * 5  # warm-ups, 4 rounds
    assert picked == "bf16" and speed.chars_per_s == pytest.approx(4 * 16 / 0.1) and speed.steps == 4
    assert note == "auto: bf16 autocast, 2.00x fp32 here"


def test_one_stalled_step_does_not_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process stalls one fp32 step for 5 s: the plan's rate is its median step's, not its mean."""
    fake_steps(monkeypatch, {torch.bfloat16: [0.2] * 20, torch.float32: [0.1, 0.1, 0.1, 5.0] + [0.1] * 20})
    picked, speed, note = probe.probe_steps(probe_config(5_000, 30, "lstm"), 4, 16, CPU, BOTH)
    assert picked == "fp32" and speed.chars_per_s == pytest.approx(4 * 16 / 0.1) and speed.steps == 3
    assert note == "auto: fp32, 2.00x bf16 autocast here"


def test_candidates_are_compared_by_their_fastest_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """A loaded machine slows most fp32 steps to 0.3 s, but one ran in 0.05 s: fp32 can take 0.05 s,
    which beats bf16's steady 0.1 s. The plan still works from the median, the rate it will likely see."""
    fake_steps(monkeypatch, {torch.bfloat16: [0.1] * 20, torch.float32: [0.5, 0.3, 0.05] + [0.3] * 20})
    picked, speed, note = probe.probe_steps(probe_config(5_000, 30, "lstm"), 4, 16, CPU, BOTH)
    assert picked == "fp32" and note == "auto: fp32, 2.00x bf16 autocast here" and speed.steps == 4
    assert speed.best_chars_per_s == pytest.approx(4 * 16 / 0.05) and speed.chars_per_s == pytest.approx(4 * 16 / 0.3)


def test_a_candidate_that_fails_in_the_probe_is_left_out(monkeypatch: pytest.MonkeyPatch) -> None:
    fake_steps(monkeypatch, {torch.float32: [0.2] * 20}, failing=(torch.bfloat16,))
    picked, speed, note = probe.probe_steps(probe_config(5_000, 30, "lstm"), 4, 16, CPU, BOTH)
    assert picked == "fp32" and speed.chars_per_s == pytest.approx(4 * 16 / 0.2)
    assert note == "auto: fp32, bf16 autocast failed: RuntimeError: no torch.bfloat16 kernel here"
    with pytest.raises(RuntimeError, match=r"no torch\.float32 kernel"):  # all fail: the default's error
        fake_steps(monkeypatch, {}, failing=(torch.bfloat16, torch.float32))
        probe.probe_steps(probe_config(5_000, 30, "lstm"), 4, 16, CPU, ("fp32", "bf16"))


def test_a_real_probe_step_trains_and_leaves_the_seed_alone() -> None:
    torch.manual_seed(3)
    expected = torch.rand(2)
    torch.manual_seed(3)
    picked, speed, note = probe.probe_steps(probe_config(5_000, 30, "lstm"), 4, 16, CPU, ("fp32",))
    assert torch.equal(torch.rand(2), expected)
    assert picked == "fp32" and speed.measured and speed.chars_per_s > 0 and note == ""


def test_a_timed_run_takes_the_faster_step_records_it_and_resumes_with_it(
    corpus_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a CPU with native bf16 where fp32 times faster, `auto` trains in fp32, says so, plans from
    fp32's rate, and a resume runs fp32 again (the same kernel: it continues exactly)."""
    from charrnn import device

    monkeypatch.setattr(device, "cpu_supports_fast_bf16", lambda: True)
    rates = {torch.bfloat16: 1000.0, torch.float32: 1500.0}

    def timed(config: Any, batch: int, seq_len: int, dev: Any, dtypes: tuple[torch.dtype, ...]) -> Any:
        return {dtype: probe.rate_of(config, 1, [1 / rates[dtype]]) for dtype in dtypes}, {}

    monkeypatch.setattr(probe, "measure_speeds", timed)
    run = tmp_path / "run"
    trainer = Trainer(tiny_options(corpus_file, run, time=60.0, steps=2, device="cpu", save_every="1"))
    parts = trainer.parts
    assert parts.dtype == torch.float32 and trainer.config.dtype == "fp32"
    assert parts.dtype_note == "auto: fp32, 1.50x bf16 autocast here"
    assert parts.speed.chars_per_s == pytest.approx(1500.0) and banner(parts, trainer.state)["dtype"] == "fp32"
    assert trainer.run().steps == 2
    resumed = Trainer(TrainOptions(corpus=(), resume=str(run), steps=3))
    try:
        assert resumed.parts.dtype == torch.float32  # not bf16 by the CPU's flags
    finally:
        resumed.release_run()


def test_a_plan_narrowed_by_its_budget_plans_again_from_the_narrow_models_rate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A corpus that feeds 512 units, a budget that buys 384: the probe times 2x512, the plan picks
    2x384, and its passes (so its dropout) come from 2x384's own measured rate, not from 2x512's
    FLOP/s scaled down (a narrow LSTM uses the machine less well)."""
    from charrnn.training.plan import dropout_for_epochs

    corpus = tmp_path / "big.txt"
    corpus.write_text(("the quick brown fox jumps over the lazy dog. " * 16_000)[:700_000])
    rates = {512: 15_000.0, 384: 7_000.0}  # FLOPs would say 384 trains 1.75x 512's chars/s; it does 0.47x

    def timed(config: Any, batch: int, seq_len: int, dev: Any, dtypes: tuple[torch.dtype, ...]) -> Any:
        return {dtype: probe.rate_of(config, 1, [1 / rates[config.hidden_size]]) for dtype in dtypes}, {}

    monkeypatch.setattr(probe, "measure_speeds", timed)
    options = parse_options((str(corpus),), out=str(tmp_path / "run"), time=80.0, dtype="fp32", device="cpu", threads=1)
    trainer = Trainer(options)
    try:
        parts = trainer.parts
        assert parts.model_config.hidden_size == 384 and parts.speed.model == "2x384 LSTM"
        assert parts.speed.chars_per_s == pytest.approx(7_000.0)
        passes = 7_000.0 * 80 / parts.train_ids.size  # under 1 (from 2x512's FLOP/s: over 3)
        assert parts.model_config.dropout == dropout_for_epochs(passes) == 0.0
        assert any(f"~{passes:.2g} passes" in why for why in parts.plan_why)
    finally:
        trainer.release_run()

"""The planning rules under fake training rates, so a GPU's plan is covered on any machine: a time
budget that buys far more passes than a model can use gets a wider, regularised model that stops
after the plan's passes; a CPU's budget plans as before; a GPU takes big batches only where the
budget still buys enough updates."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from charrnn.data.corpus import load_corpus
from charrnn.model import ModelConfig, count_parameters
from charrnn.training.config import resolve_configs
from charrnn.training.loop import TURNED_CHECKS, TURNED_MARGIN, Trainer
from charrnn.training.options import parse_options
from charrnn.training.plan import (
    MIN_GPU_STEPS,
    PLANNED_VALIDATIONS,
    RICH_DROPOUT,
    RICH_EPOCHS,
    RICH_WEIGHT_DECAY,
    WEIGHT_DECAY,
    make_plan,
    probe_config,
)
from tests.conftest import tiny_options

CPU, GPU = torch.device("cpu"), torch.device("cuda")
MB = 1_003_854  # Tiny Shakespeare's training text, vocab 65


def flops_at(chars_per_s: float, train_chars: int) -> float:
    """The FLOP/s a probe reports when the probed model (the corpus's own size) trains this fast."""
    return 6 * count_parameters(probe_config(train_chars, 65, "lstm")) * chars_per_s


def test_a_gpu_with_minutes_on_a_megabyte_trains_wide_and_stops_after_the_planned_passes() -> None:
    """1M chars/s for 3 minutes would be ~180 passes over Tiny Shakespeare: the plan takes 2x1024,
    dropout 0.5, weight decay 0.2 and 12 passes, its lr and validations sized for those."""
    plan = make_plan(MB, 65, GPU, torch.bfloat16, seconds=180, flops=flops_at(1e6, MB))
    assert (plan.hidden_size, plan.num_layers, plan.dropout) == (1024, 2, RICH_DROPOUT)
    assert plan.weight_decay == RICH_WEIGHT_DECAY and plan.epochs_cap == plan.expected_epochs == RICH_EPOCHS
    assert (plan.batch_size, plan.seq_len) == (128, 128)  # the updates matter more than the throughput
    steps = RICH_EPOCHS * MB / (128 * 128)  # ~735: a short run, so a bolder lr than a long one
    assert plan.lr == pytest.approx(min(0.02, (1 + (1200 - steps) / 800) * 0.01 * math.sqrt(384 / 1024)), abs=1e-5)


def test_the_planned_passes_reach_the_schedule(corpus_file: Path) -> None:
    corpus = load_corpus([str(corpus_file)])
    options = parse_options((str(corpus_file),), time=180.0)
    model, config, _ = resolve_configs(options, corpus, MB, GPU, torch.bfloat16, flops=flops_at(1e6, MB))
    assert model.hidden_size == 1024 and model.dropout == RICH_DROPOUT
    assert config.epochs == RICH_EPOCHS and config.time_s == 180 and config.weight_decay == RICH_WEIGHT_DECAY
    # the lr decays to zero at the passes, which come long before the time
    assert config.progress(0, 20.0, RICH_EPOCHS) == 1.0
    steps = RICH_EPOCHS * MB / (128 * 128)
    assert config.eval_every.steps == math.ceil(steps / PLANNED_VALIDATIONS)
    # flags still win: --epochs, --weight-decay, --dropout and --eval-every are the user's
    given = parse_options((str(corpus_file),), time=180.0, epochs=30.0, weight_decay=0.05, eval_every="100")
    _, mine, _ = resolve_configs(given, corpus, MB, GPU, torch.bfloat16, flops=flops_at(1e6, MB))
    assert (mine.epochs, mine.weight_decay, mine.eval_every.steps) == (30.0, 0.05, 100)


def test_a_cpu_minute_plans_as_before() -> None:
    """20k chars/s for 3 minutes is ~3.6 passes: the corpus's own model, no cap, light weight decay."""
    plan = make_plan(MB, 65, CPU, torch.float32, seconds=180, flops=flops_at(20_000, MB))
    assert plan.hidden_size in (384, 512) and plan.epochs_cap is None and plan.weight_decay == WEIGHT_DECAY
    assert (plan.batch_size, plan.seq_len) == (32, 64) and plan.dropout == 0.25  # more than 3 passes
    assert 3 < plan.expected_epochs < RICH_EPOCHS


def test_a_small_text_keeps_its_own_model_however_long_the_budget() -> None:
    """Below 600,000 chars the wide model was never measured: 10 minutes on 100,000 chars buy dozens
    of passes, and the corpus's own 2x256 trains with dropout (the loop stops it once it turns)."""
    plan = make_plan(100_000, 65, CPU, torch.float32, seconds=600, flops=flops_at(20_000, 100_000))
    assert plan.epochs_cap is None and plan.hidden_size == 256 and plan.dropout == 0.25
    assert plan.expected_epochs > RICH_EPOCHS


def test_only_a_time_budget_is_filled_by_the_plan() -> None:
    rate = flops_at(1e6, MB)
    assert make_plan(MB, 65, GPU, torch.bfloat16, epochs=40, flops=rate).epochs_cap is None
    assert make_plan(MB, 65, GPU, torch.bfloat16, steps=50_000, flops=rate).epochs_cap is None
    fixed = make_plan(MB, 65, GPU, torch.bfloat16, seconds=180, flops=rate, fixed=_fixed(hidden_size=512))
    assert fixed.epochs_cap is None and fixed.hidden_size == 512


def _fixed(**sizes: Any) -> Any:
    from charrnn.training.plan import Fixed

    return Fixed(**sizes)


def test_a_gpu_takes_big_batches_only_where_the_budget_buys_the_updates() -> None:
    big = 100_000_000  # 100 MB: 3 minutes at 1M chars/s are under 2 passes
    plan = make_plan(big, 65, GPU, torch.bfloat16, seconds=180, flops=flops_at(1e6, big))
    assert plan.epochs_cap is None and plan.hidden_size == 1024
    chars = plan.expected_epochs * big
    assert plan.batch_size == 512 and chars / (512 * 128) >= MIN_GPU_STEPS
    ten_seconds = make_plan(big, 65, GPU, torch.bfloat16, seconds=10, flops=flops_at(1e6, big))
    assert ten_seconds.batch_size == 128  # 10M chars: 76 steps of 512 streams would be too few
    assert make_plan(big, 65, CPU, torch.float32, seconds=180, flops=flops_at(1e6, big)).batch_size == 32


def test_the_model_and_schedule_the_plan_picked_for_a_gpu_fit_the_card() -> None:
    model = ModelConfig(vocab_size=65, hidden_size=1024, num_layers=2, dropout=RICH_DROPOUT)
    assert count_parameters(model) < 20_000_000  # 13M: weights, grads and moments well under a GiB


# -- the run's side: it stops after the planned passes, and a resume says so ----------------------------


def test_a_run_stops_after_the_planned_passes_and_a_resume_says_how_to_go_on(
    corpus_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from charrnn.training import plan
    from tests.test_resume import Recorder

    monkeypatch.setattr(plan, "RICH_MIN_CHARS", 1000)  # the rule for a megabyte, on a tiny text
    run = tmp_path / "run"
    options = parse_options((str(corpus_file),), out=str(run), embed_size=8, threads=1, device="cpu", time=600.0)
    result = Trainer(options).run()
    assert result.stop_reason == "epochs" and "after the plan's 12 passes" in result.stop_note
    assert "--epochs N" in result.stop_note and result.epochs == pytest.approx(RICH_EPOCHS)
    config = json.loads((run / "config.json").read_text())["train_config"]
    assert config["epochs"] == RICH_EPOCHS and config["weight_decay"] == RICH_WEIGHT_DECAY
    recorder = Recorder()
    again = Trainer(parse_options((), resume=str(run)), recorder).run()
    assert again.steps == result.steps
    assert any("stopped itself after the plan's 12 passes" in w for w in recorder.warnings)
    on = Trainer(parse_options((), resume=str(run), epochs=14.0)).run()
    assert on.epochs == pytest.approx(14) and on.steps > result.steps


def test_a_run_whose_validation_turned_stops_itself_and_keeps_its_best(corpus_file: Path, tmp_path: Path) -> None:
    trainer = Trainer(tiny_options(corpus_file, tmp_path / "run", steps=100, eval_every="1", device="cpu"))
    losses = iter([2.0, 1.5, 1.51, 1.5 + TURNED_MARGIN / 2, 1.6, 1.7, 1.8, 1.9])
    trainer.validation.validate = lambda: next(losses)  # type: ignore[method-assign]
    passes = trainer.stepper.epochs_done
    trainer.stepper.epochs_done = lambda: 1.0 + passes()  # type: ignore[method-assign]  # (a second pass)
    result = trainer.run()
    # checks 3 to 5 do not improve on 1.5; the third of them (1.6) is clearly above it
    assert result.stop_reason == "overfitting" and result.steps == 2 + TURNED_CHECKS
    assert result.best_val_loss == 1.5 and "1.5000 at step 2" in result.stop_note
    first_pass = Trainer(tiny_options(corpus_file, tmp_path / "first", steps=8, eval_every="1", device="cpu"))
    rising = iter([1.5, 1.6, 1.7, 1.8, 1.9, 2.0, 2.1, 2.2, 2.3])
    first_pass.validation.validate = lambda: next(rising)  # type: ignore[method-assign]
    assert first_pass.run().stop_reason == "steps"  # a rise before the text was seen twice is not overfitting
    with_patience = Trainer(
        tiny_options(corpus_file, tmp_path / "patient", steps=8, eval_every="1", device="cpu", patience=50)
    )
    flat = iter([2.0, 1.5, *[1.9] * 10])
    with_patience.validation.validate = lambda: next(flat)  # type: ignore[method-assign]
    assert with_patience.run().stop_reason == "steps"  # --patience replaces the rule


def test_auto_on_a_gpu_takes_the_dtype_measured_faster(
    corpus_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bf16's casts can cost more than its matmuls save: `--dtype auto` on a GPU times both."""
    from charrnn.training import setup
    from charrnn.training.probe import fastest_dtype

    fastest, rates = fastest_dtype(probe_config(5_000, 30, "lstm"), 4, 16, CPU, (torch.float32,))
    assert fastest == torch.float32 and rates[torch.float32] > 0
    trainer = Trainer(tiny_options(corpus_file, tmp_path / "run", steps=2, device="cpu", dtype="fp32"))
    parts = trainer.parts
    try:
        seen: list[tuple[int, int]] = []

        def timed(config: ModelConfig, batch: int, seq_len: int, device: Any, dtypes: Any) -> Any:
            seen.append((batch, seq_len))
            return torch.float32, {torch.bfloat16: 0.8e6, torch.float32: 1.0e6}

        monkeypatch.setattr(setup, "fastest_dtype", timed)
        tf32 = torch.backends.cuda.matmul.allow_tf32
        choice = setup.pick_gpu_dtype(parts.model_config, parts.config, parts.team, parts.held)
        assert seen == [(parts.config.batch_size, parts.config.seq_len)]  # the run's own model and window
        assert choice.dtype == torch.float32 and choice.config.dtype == "fp32"
        assert choice.note == "auto: bf16 trains 0.80x as fast as fp32 with TF32 here"
        assert torch.backends.cuda.matmul.allow_tf32  # fp32 on a GPU: TF32 matmuls while the run lasts
    finally:
        trainer.release_run()
    assert torch.backends.cuda.matmul.allow_tf32 == tf32  # ...and the caller's setting after it


def test_running_out_of_memory_is_one_line_on_the_host_and_on_a_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    import typer

    from charrnn.cli.common import EXIT_FAILURE, guarded

    class OutOfMemoryError(RuntimeError):  # what torch raises when a GPU's memory runs out
        pass

    for error, says in ((MemoryError(), "out of memory"), (OutOfMemoryError("CUDA out of memory"), "the GPU ran out")):
        with pytest.raises(typer.Exit) as stopped, guarded():
            raise error
        assert stopped.value.exit_code == EXIT_FAILURE
        line = capsys.readouterr().err
        assert line.count("\n") == 1 and says in line and "--batch-size" in line
    with pytest.raises(RuntimeError, match="another"), guarded():  # any other RuntimeError is a bug: not hidden
        raise RuntimeError("another")


def test_a_fine_tune_keeps_the_plain_plan() -> None:
    """--init-from trains the checkpoint's model: never the wide 12-pass plan sized for another one."""
    rate = flops_at(1e6, MB)
    assert make_plan(MB, 65, GPU, torch.bfloat16, seconds=180, flops=rate).epochs_cap == RICH_EPOCHS
    tuned = make_plan(MB, 65, GPU, torch.bfloat16, seconds=180, flops=rate, fine_tune=True)
    assert tuned.epochs_cap is None and tuned.weight_decay == WEIGHT_DECAY

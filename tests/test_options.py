"""Each training option is declared once: the CLI, the Python API and the dataclass agree on it."""

from __future__ import annotations

import inspect
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

import charrnn
from charrnn.errors import ConfigError
from charrnn.store.checkpoint import load_checkpoint
from charrnn.training import loop
from charrnn.training.config import MIN_LR_FRACTION, min_lr_for
from charrnn.training.options import SPECS, TrainOptions, default_of, flag, parse_options, value_text
from tests.conftest import TINY_TRAIN, run_cli


class Captured(Exception):
    """Raised by the stand-in trainer: the options reached the library, nothing trained."""


def capture(monkeypatch: pytest.MonkeyPatch) -> list[TrainOptions]:
    seen: list[TrainOptions] = []

    def fake(options: TrainOptions, observer: Any = None) -> Any:
        seen.append(options)
        raise Captured

    monkeypatch.setattr(loop, "Trainer", fake)
    monkeypatch.setattr(loop, "train", fake)
    return seen


def without_command(options: TrainOptions) -> dict[str, Any]:
    return {f.name: getattr(options, f.name) for f in fields(options) if f.name != "command"}


def test_cli_api_and_dataclass_defaults_agree(monkeypatch: pytest.MonkeyPatch, corpus_file: Path) -> None:
    from charrnn.cli.app import app

    seen = capture(monkeypatch)
    result = CliRunner().invoke(app, ["train", str(corpus_file)])
    assert isinstance(result.exception, Captured), result.output
    with pytest.raises(Captured):
        charrnn.train(corpus_file)
    cli_options, api_options = seen
    declared = TrainOptions(corpus=(str(corpus_file),))
    assert without_command(cli_options) == without_command(declared)
    assert without_command(api_options) == without_command(declared)
    signature = inspect.signature(charrnn.train).parameters
    for name, spec in SPECS.items():
        assert signature[spec.flag or name].default == value_text(default_of(name)), name


def test_help_shows_each_declared_default() -> None:
    proc = run_cli("train", "--help", input=b"")
    text = " ".join(proc.stdout.decode().split())
    for name, spec in SPECS.items():
        assert flag(name) in text, name
        if not spec.planned and default_of(name) not in (None, "\n\n"):
            assert f"[default: {value_text(default_of(name))}]" in text, name


def test_flags_reach_the_library_parsed(monkeypatch: pytest.MonkeyPatch, corpus_file: Path) -> None:
    from charrnn.cli.app import app

    seen = capture(monkeypatch)
    args = ["train", str(corpus_file), "--hidden", "24", "--time", "1m30s", "--eval-every", "50", "--cell", "gru"]
    CliRunner().invoke(app, args)
    (options,) = seen
    assert options.hidden_size == 24 and options.time == 90.0 and options.cell == "gru"
    assert options.eval_every is not None and options.eval_every.steps == 50
    assert options.save_every.seconds == 300.0


def test_errors_name_the_real_flags() -> None:
    for name, bad in [("hidden_size", 0), ("num_layers", 0), ("warmup_steps", -1), ("dropout", 0.99), ("lr", 0.0)]:
        with pytest.raises(ConfigError, match=f"^{flag(name)} "):
            parse_options(("x",), **{name: bad})
    assert flag("hidden_size") == "--hidden" and flag("num_layers") == "--layers"
    with pytest.raises(ConfigError, match="--time"):
        parse_options(("x",), time="soon")


def test_resume_with_new_lr_keeps_the_one_min_lr_rule(corpus_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code = run_cli("train", str(corpus_file), "--out", str(run), *TINY_TRAIN, "--steps", "4").returncode
    assert code == 0
    assert run_cli("train", "--resume", str(run), "--steps", "6", "--lr", "0.002").returncode == 0
    schedule = load_checkpoint(run / "last.safetensors").meta["train_config"]
    assert schedule["lr"] == 0.002
    assert schedule["min_lr"] == pytest.approx(min_lr_for(0.002)) == 0.002 * MIN_LR_FRACTION


def test_the_schedule_is_made_of_the_declarations() -> None:
    """`TrainConfig`'s fields are the options recorded in the schedule plus three the plan derives,
    and the options the schedule takes as given are all recorded there: a new one needs no other edit."""
    from charrnn.training.config import TrainConfig
    from charrnn.training.option_spec import Record
    from charrnn.training.options import SCHEDULE_KEYS
    from charrnn.training.schedule_options import ScheduleOptions

    schedule = {f.name for f in fields(TrainConfig)}
    assert set(SCHEDULE_KEYS.values()) <= schedule
    assert schedule - set(SCHEDULE_KEYS.values()) == {"min_lr", "dtype", "alternate_ends"}
    assert all(SPECS[f.name].record is Record.SCHEDULE for f in fields(ScheduleOptions))
    assert SCHEDULE_KEYS["time"] == "time_s"


def test_a_stored_schedule_is_read_by_the_declarations(corpus_file: Path, tmp_path: Path) -> None:
    """A schedule that predates an option takes the value its run ran with (the declaration's
    `predates`), and a stored value out of its option's range is refused naming the flag."""
    from charrnn.training.config import TrainConfig
    from charrnn.training.options import PREDATES

    run = tmp_path / "run"
    assert run_cli("train", str(corpus_file), "--out", str(run), "--steps", "2", *TINY_TRAIN).returncode == 0
    stored = dict(load_checkpoint(run / "last.safetensors").meta["train_config"])
    assert TrainConfig.from_json(stored).to_json() == stored
    older = {key: value for key, value in stored.items() if key not in ("ema", "state_reset", "decay")}
    config = TrainConfig.from_json(older)
    assert (config.ema, config.state_reset, config.decay) == (PREDATES["ema"], PREDATES["state_reset"], "cosine")
    for name, value, words in (("grad_clip", -1.0, "--grad-clip"), ("seed", 2**70, "--seed"), ("lr", 0, "--lr")):
        with pytest.raises(ConfigError, match=words):
            TrainConfig.from_json({**stored, name: value})

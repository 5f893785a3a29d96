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

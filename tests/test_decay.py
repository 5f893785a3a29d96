"""--decay: how the lr falls after warmup (linear by default, cosine for runs recorded before)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from charrnn.choices import Decay
from charrnn.errors import ConfigError
from charrnn.store.checkpoint import load_checkpoint
from charrnn.training.config import TrainConfig
from charrnn.training.loop import train
from charrnn.training.options import TrainOptions, parse_options
from tests.conftest import TINY_TRAIN, run_cli, tiny_options
from tests.test_state_reset import make_recorded_before, resumed_as_if_recorded_before


def schedule(decay: str) -> TrainConfig:
    recorded = TrainConfig.from_json(
        {
            "batch_size": 4, "seq_len": 16, "lr": 0.02, "min_lr": 0.0, "warmup_steps": 10, "weight_decay": 0.0,
            "grad_clip": 1.0, "val_frac": 0.1, "val_max_chars": 1000, "time_s": None, "steps": 100, "epochs": None,
            "patience": None, "eval_every": "50", "save_every": "50", "seed": 1, "dtype": "fp32", "decay": decay,
        }
    )  # fmt: skip
    return recorded


def test_linear_and_cosine_share_warmup_and_end_and_differ_between() -> None:
    linear, cosine = schedule("linear"), schedule("cosine")
    assert linear.lr_at(4, 0.04) == cosine.lr_at(4, 0.04) == pytest.approx(0.01)  # warmup
    assert linear.lr_at(50, 0.25) == pytest.approx(0.015)
    assert cosine.lr_at(50, 0.25) == pytest.approx(0.01 * (1 + math.cos(math.pi / 4)))
    assert linear.lr_at(99, 1.0) == cosine.lr_at(99, 1.0) == 0.0
    with pytest.raises(ConfigError, match="--decay"):
        schedule("step")
    with pytest.raises(ConfigError, match="--decay"):
        parse_options(("x",), decay="step")


def test_new_runs_decay_linearly_and_a_run_from_before_keeps_its_cosine(corpus_file: Path, tmp_path: Path) -> None:
    first = train(tiny_options(corpus_file, tmp_path / "old", steps=6))
    record = load_checkpoint(first.last_path).meta
    assert record["train_config"]["decay"] == "linear" and record["options"]["decay"] == "linear"
    record = resumed_as_if_recorded_before(first, "decay", steps=10)
    assert record["train_config"]["decay"] == "cosine" and record["options"]["decay"] == "cosine"


def test_resume_may_change_the_decay(corpus_file: Path, tmp_path: Path) -> None:
    first = train(tiny_options(corpus_file, tmp_path / "run", steps=6))
    resumed = train(TrainOptions(corpus=(), resume=str(first.run_dir), steps=10, decay=Decay.COSINE))
    assert load_checkpoint(resumed.last_path).meta["train_config"]["decay"] == "cosine"


def test_a_flag_at_its_default_switches_a_run_from_before_to_it(corpus_file: Path, tmp_path: Path) -> None:
    """`--decay linear` is today's default, and still a choice: an older (cosine) run resumed with it
    goes linear and says so, where no flag keeps its cosine."""
    first = train(tiny_options(corpus_file, tmp_path / "old", steps=6))
    make_recorded_before(first, "decay")
    proc = run_cli("train", "--resume", str(first.run_dir), "--steps", "10", "--decay", "linear", "-q")
    assert proc.returncode == 0, proc.stderr.decode()
    assert "resuming with --decay linear (the run had cosine)" in proc.stderr.decode()
    assert load_checkpoint(first.last_path).meta["train_config"]["decay"] == "linear"
    api = parse_options((), resume=str(first.run_dir), decay="linear")  # an API keyword is a choice too
    assert api.chosen == ("resume", "decay")


def test_a_model_flag_at_its_default_is_checked_against_the_run(corpus_file: Path, tmp_path: Path) -> None:
    """`--cell lstm` on a GRU run used to be taken for no flag and the GRU resumed silently."""
    run = tmp_path / "gru"
    proc = run_cli("train", str(corpus_file), *TINY_TRAIN, "--cell", "gru", "--steps", "4", "--out", str(run), "-q")
    assert proc.returncode == 0, proc.stderr.decode()
    refused = run_cli("train", "--resume", str(run), "--steps", "8", "--cell", "lstm", "-q")
    assert refused.returncode != 0
    assert "--cell lstm (the run has gru)" in refused.stderr.decode()
    assert b"Traceback" not in refused.stderr
    plain = run_cli("train", "--resume", str(run), "--steps", "8", "-q")
    assert plain.returncode == 0, plain.stderr.decode()

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from charrnn.data.corpus import load_corpus
from charrnn.errors import ConfigError
from charrnn.store.checkpoint import load_checkpoint
from charrnn.training.config import resolve_configs
from charrnn.training.loop import Trainer, train
from charrnn.training.options import TrainOptions
from charrnn.training.plan import LR_AT_384, MAX_LR, Fixed, default_eval_every, lr_for_hidden, make_plan
from tests.conftest import SHAKESPEARE, make_text, tiny_options


def tiny(corpus: Path, out: Path | None, **changes: object) -> TrainOptions:
    return tiny_options(corpus, out, **changes)


def test_train_writes_best_last_metrics_and_config(corpus_file: Path, tmp_path: Path) -> None:
    result = train(tiny(corpus_file, tmp_path / "run", steps=30, eval_every="10"))
    run = tmp_path / "run"
    assert {p.name for p in run.iterdir()} >= {"best.safetensors", "last.safetensors", "metrics.jsonl", "config.json"}
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    vals = [r for r in rows if r["event"] == "val"]
    assert [r["step"] for r in vals] == [10, 20, 30]
    assert vals[-1]["val_loss"] < vals[0]["val_loss"]
    assert result.steps == 30 and result.stop_reason == "steps"
    assert math.isclose(result.best_val_loss, min(r["val_loss"] for r in vals))
    last = load_checkpoint(run / "last.safetensors")
    assert last.meta["step"] == 30 and "optim.0.exp_avg" in last.extra and "state.h" in last.extra
    best = load_checkpoint(run / "best.safetensors")
    assert best.meta["step"] == best.meta["best_step"]
    assert best.meta["history"][-1]["step"] == best.meta["best_step"]  # its own validation is recorded


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_other_cells_train(corpus_file: Path, tmp_path: Path, cell: str) -> None:
    result = train(tiny(corpus_file, tmp_path / cell, steps=5, cell=cell))
    assert load_checkpoint(result.best_path).config.cell == cell


def test_time_budget_stops_on_time(corpus_file: Path, tmp_path: Path) -> None:
    result = train(tiny(corpus_file, tmp_path / "timed", time="2s"))
    assert result.stop_reason == "time"
    # The budget includes the final validation (at most a quarter of it is kept for that), and the
    # run stops at the first step past it: no upper bound that a loaded machine could break.
    assert result.elapsed_s >= 2.0 * 0.75
    assert load_checkpoint(result.last_path).meta["elapsed_s"] >= 2.0 * 0.75


def test_epoch_budget_and_patience(corpus_file: Path, tmp_path: Path) -> None:
    result = train(tiny(corpus_file, tmp_path / "ep", epochs=1.0))
    assert result.stop_reason == "epochs" and math.isclose(result.epochs, 1.0)
    stopped = train(tiny(corpus_file, tmp_path / "pat", steps=10_000, eval_every="1", patience=2, lr=1e-9))
    assert stopped.stop_reason == "patience" and stopped.steps < 100


def test_refuses_to_overwrite_a_run(corpus_file: Path, tmp_path: Path) -> None:
    train(tiny(corpus_file, tmp_path / "run", steps=2))
    with pytest.raises(ConfigError, match="--resume"):
        train(tiny(corpus_file, tmp_path / "run", steps=2))


def test_default_run_dirs_never_collide(corpus_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    first = train(tiny(corpus_file, None, steps=2)).run_dir  # type: ignore[arg-type]
    second = train(tiny(corpus_file, None, steps=2)).run_dir  # type: ignore[arg-type]
    assert first == Path("checkpoints/tiny") and second == Path("checkpoints/tiny-2")


def test_plan_scales_with_corpus_and_budget() -> None:
    import torch

    cpu = torch.device("cpu")
    small = make_plan(20_000, 50, cpu, torch.float32, seconds=600)
    big = make_plan(1_000_000, 65, cpu, torch.bfloat16, seconds=600)
    short = make_plan(1_000_000, 65, cpu, torch.bfloat16, seconds=80)
    assert small.hidden_size < short.hidden_size <= big.hidden_size
    assert small.dropout > 0  # many epochs over a small text: regularise
    assert short.dropout == 0
    few_steps = make_plan(1_000_000, 65, cpu, torch.bfloat16, steps=50)
    assert few_steps.dropout == 0
    # 10 minutes of fp32 on a 2-core CPU buy ~2.7 passes over Tiny Shakespeare: light dropout
    ten_minutes = make_plan(1_003_854, 65, cpu, torch.float32, seconds=600)
    assert (ten_minutes.hidden_size, ten_minutes.dropout) == (512, 0.1)
    assert 2.5 < ten_minutes.expected_epochs < 3
    # ~1,200 steps keep the measured long-run lr; 80 s (~300 steps of 2x384 at the assumed fp32 rate)
    # get about twice as much
    assert ten_minutes.lr == lr_for_hidden(512) == 0.00866
    eighty_seconds = make_plan(1_003_854, 65, cpu, torch.float32, seconds=80)
    assert eighty_seconds.hidden_size == 384 and 1.9 * LR_AT_384 < eighty_seconds.lr <= MAX_LR
    # sizes given by flags stay, and dropout and lr are planned for that model, not the default one
    narrow = make_plan(1_003_854, 65, cpu, torch.float32, seconds=600, fixed=Fixed(hidden_size=128, seq_len=32))
    assert (narrow.hidden_size, narrow.num_layers, narrow.seq_len) == (128, 2, 32)
    assert narrow.expected_epochs > 10 and narrow.dropout == 0.25
    assert narrow.lr == lr_for_hidden(128)


def test_default_lr_follows_the_width_trained(corpus_file: Path) -> None:
    """--hidden without --lr gets that width's learning rate, not the one of the width the plan chose."""
    import torch

    corpus = load_corpus([str(corpus_file)])
    cpu = torch.device("cpu")
    for hidden in (None, 96, 1024):
        model, config, _ = resolve_configs(
            tiny(corpus_file, None, hidden_size=hidden), corpus, 4000, cpu, torch.float32
        )
        assert config.lr == lr_for_hidden(model.hidden_size)
    _, explicit, _ = resolve_configs(
        tiny(corpus_file, None, hidden_size=96, lr=0.003), corpus, 4000, cpu, torch.float32
    )
    assert explicit.lr == 0.003
    assert lr_for_hidden(96) != lr_for_hidden(1024)
    # wider layers take gentler steps; short runs bolder ones, never above the highest measured good
    assert lr_for_hidden(1024) < lr_for_hidden(512) < lr_for_hidden(384) == LR_AT_384
    assert lr_for_hidden(384, 300) == 2 * LR_AT_384 == lr_for_hidden(96, 300) == MAX_LR
    assert LR_AT_384 < lr_for_hidden(384, 400) < 2 * LR_AT_384
    assert lr_for_hidden(384, 500) == lr_for_hidden(384, 800) == LR_AT_384


def test_periodic_validation_costs_at_most_a_twentieth_of_the_budget() -> None:
    """Four validations per budget unless each costs more than 5% of it; intervals divide the budget."""
    assert default_eval_every(600.0, None, 0.5) == "150s"
    assert default_eval_every(600.0, None, 6.0) == "150s"  # 4 x 6 s of 600 s: 4%
    assert default_eval_every(80.0, None, 0.2) == "20s"
    assert default_eval_every(80.0, None, 3.5) == "80s"  # 70 s apart would be due once, just before the end
    assert default_eval_every(600.0, None, 10.0) == "200s"
    assert default_eval_every(None, 1000, 50.0) == "250"  # a step budget: every quarter


@pytest.mark.skipif(not SHAKESPEARE.exists(), reason="../shared/corpora/tinyshakespeare.txt not present")
def test_reference_corpus_trains(tmp_path: Path) -> None:
    result = train(tiny(SHAKESPEARE, tmp_path / "ts", steps=20, hidden_size=32, batch_size=8, seq_len=32))
    ckpt = load_checkpoint(result.best_path)
    assert ckpt.vocab.size == 65
    assert ckpt.meta["corpus"]["chars"] == 1_115_394
    assert ckpt.meta["corpus"]["val_chars"] == 111_539


def test_cjk_corpus_over_255_symbols_trains_with_uint16_ids(tmp_path: Path) -> None:
    rng = random.Random(1)
    chars = [chr(c) for c in range(0x4E00, 0x5000)] + ["\u3002", "\uff0c", "\n"]
    corpus = tmp_path / "cjk.txt"
    corpus.write_text("".join(rng.choice(chars) for _ in range(20_000)), encoding="utf-8")
    trainer = Trainer(tiny(corpus, tmp_path / "run", steps=3))
    assert trainer.parts.corpus.vocab.size == 515 and trainer.parts.corpus.ids.dtype == np.uint16
    result = trainer.run()
    assert result.steps == 3 and math.isfinite(result.best_val_loss)
    assert load_checkpoint(result.best_path).vocab.size == 515


def test_multi_file_corpus_records_separator_and_skipped_files(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"{i}.txt").write_text(make_text(60), encoding="utf-8")
    (docs / "blob.bin").write_bytes(b"\x00" * 100)
    trainer = Trainer(tiny(docs, tmp_path / "run", steps=1, doc_separator="\n~\n"))
    assert trainer.parts.warnings == [f"skipped {docs / 'blob.bin'}: not text, binary (NUL bytes)"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["corpus"]["separator"] == "\n~\n" and config["options"]["doc_separator"] == "\n~\n"
    assert config["corpus"]["skipped"] == [[str(docs / "blob.bin"), "binary (NUL bytes)"]]
    assert trainer.parts.corpus.vocab.index("~") is not None

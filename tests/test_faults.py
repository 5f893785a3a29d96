"""Injected faults: a full disk during saves, NaN/inf losses and weights, and `charrnn verify`."""

from __future__ import annotations

import errno
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from charrnn.errors import CheckpointError, TrainingError
from charrnn.store.checkpoint import load_checkpoint, save_checkpoint, verify_checkpoint
from charrnn.store.runs import BEST, LAST
from charrnn.training.loop import Trainer
from tests.conftest import run_cli
from tests.test_fuzz import assert_one_line, cli
from tests.test_resume import Recorder, tiny


class DiskFull:
    """Makes fsync fail with ENOSPC for the calls whose 1-based numbers are in `fail`, like a full disk."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, fail: set[int] | None = None) -> None:
        import charrnn.files as files  # where every atomic write fsyncs

        self.real = files.os.fsync
        self.calls = 0
        self.fail = fail  # None: every call fails
        monkeypatch.setattr(files.os, "fsync", self)

    def __call__(self, fd: int) -> None:
        self.calls += 1
        if self.fail is None or self.calls in self.fail:
            raise OSError(errno.ENOSPC, "No space left on device")
        self.real(fd)


def saved_steps(run: Path) -> dict[str, int]:
    return {name: load_checkpoint(run / name).meta["step"] for name in (BEST, LAST) if (run / name).exists()}


def test_failed_saves_warn_keep_the_old_file_and_training_goes_on(
    corpus_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    recorder = Recorder()
    trainer = Trainer(tiny(corpus_file, run, steps=20, eval_every="100"), recorder)
    real_save = trainer.checkpoints.save
    seen: list[tuple[int, dict[str, int]]] = []

    def save(name: str) -> Path:
        seen.append((trainer.state.step, saved_steps(run)))
        if trainer.state.step in (10, 15):  # two failures in a row, fewer than max_save_failures
            DiskFull(monkeypatch)
        else:
            monkeypatch.undo()
        return real_save(name)

    trainer.checkpoints.save = save  # type: ignore[method-assign]
    result = trainer.run()
    monkeypatch.undo()
    assert result.steps == 20
    failures = [w for w in recorder.warnings if "No space left" in w]
    assert len(failures) == 2 and "previous file is kept" in failures[0]
    assert dict(seen)[15][LAST] == 5  # the save at 10 failed, the one at 5 survived
    assert saved_steps(run)[LAST] == 20
    assert not list(run.glob(".*tmp-*"))


def test_repeated_save_failures_stop_the_run(
    corpus_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "run"
    trainer = Trainer(tiny(corpus_file, run, steps=10_000, eval_every="100", save_every="3"))
    real_step = trainer.step

    def step(lr: float) -> Any:
        out = real_step(lr)
        if trainer.state.step == 4:  # the save at 3 worked; the disk is full from now on
            DiskFull(monkeypatch)
        return out

    trainer.step = step  # type: ignore[method-assign]
    with pytest.raises(TrainingError, match=r"3 times in a row \(No space left on device\).*--resume"):
        trainer.run()
    monkeypatch.undo()
    assert trainer.state.step == 12  # failed at 6, 9 and 12
    assert verify_checkpoint(run / LAST).meta["step"] == 3
    assert not list(run.glob(".*tmp-*"))


def test_final_save_failure_is_an_error(corpus_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trainer = Trainer(tiny(corpus_file, tmp_path / "run", steps=3, eval_every="100", save_every="100"))
    DiskFull(monkeypatch)
    with pytest.raises(TrainingError, match="could not write"):
        trainer.run()


class NaNAt:
    """Forward hook on the head: outputs NaN on the forward calls whose numbers are in `calls`."""

    def __init__(self, trainer: Trainer, calls: set[int] | None) -> None:
        self.count = 0
        self.calls = calls  # None: always
        trainer.model.head.register_forward_hook(self)

    def __call__(self, module: torch.nn.Module, args: Any, output: torch.Tensor) -> torch.Tensor | None:
        if not module.training:  # validation passes are left alone
            return None
        self.count += 1
        return output * math.nan if self.calls is None or self.count in self.calls else None


def test_a_nan_step_is_skipped(corpus_file: Path, tmp_path: Path) -> None:
    recorder = Recorder()
    trainer = Trainer(tiny(corpus_file, tmp_path / "run", steps=12, eval_every="100"), recorder)
    NaNAt(trainer, {4, 9})
    unchanged: list[int] = []
    real_step = trainer.step

    def step(lr: float) -> Any:
        before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
        out = real_step(lr)
        if all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items()):
            unchanged.append(trainer.state.step)
        return out

    trainer.step = step  # type: ignore[method-assign]
    result = trainer.run()
    assert result.steps == 12 and unchanged == [4, 9]
    skipped = [w for w in recorder.warnings if "update skipped" in w]
    assert len(skipped) == 2 and "step 4" in skipped[0] and "step 9" in skipped[1]
    last = verify_checkpoint(result.last_path)
    assert last.meta["rollbacks"] == 0 and last.meta["lr_scale"] == 1.0


def test_on_a_gpu_nan_steps_are_skipped_on_the_device_and_reported_at_log_time(
    corpus_file: Path, tmp_path: Path
) -> None:
    """The GPU path (no host sync per step), run on CPU: same skips, counted and reported later."""
    recorder = Recorder()
    trainer = Trainer(tiny(corpus_file, tmp_path / "run", steps=12, eval_every="100", dropout=0.0), recorder)
    trainer.check_each_step = False  # what a CUDA device gets
    NaNAt(trainer, {4, 9})
    weights: list[dict[str, torch.Tensor]] = []
    real_step = trainer.step

    def step(lr: float) -> Any:
        out = real_step(lr)
        weights.append({k: v.clone() for k, v in trainer.model.state_dict().items()})
        return out

    trainer.step = step  # type: ignore[method-assign]
    result = trainer.run()
    unchanged = [i + 1 for i in range(1, 12) if all(torch.equal(weights[i - 1][k], weights[i][k]) for k in weights[i])]
    assert result.steps == 12 and unchanged == [4, 9]
    assert [w for w in recorder.warnings if "update skipped" in w] == [
        "2 steps up to step 12: loss or gradients are NaN/inf; update skipped"
    ]


def test_on_a_gpu_nan_steps_in_a_row_roll_back_at_the_next_check(corpus_file: Path, tmp_path: Path) -> None:
    recorder = Recorder()
    options = tiny(corpus_file, tmp_path / "run", steps=20, eval_every="100", max_bad_steps=3)
    trainer = Trainer(options, recorder)
    trainer.check_each_step = False
    NaNAt(trainer, set(range(12, 10_000)))  # diverged for good from step 12
    with pytest.raises(TrainingError, match=r"diverged.*after 3 rollbacks"):
        trainer.run()
    # skipped steps leave the weights sound, so the save at step 15 is the last good checkpoint
    rolled = [w for w in recorder.warnings if "rolled back" in w]
    assert len(rolled) == 3 and all("rolled back to step 15" in w for w in rolled)


def test_nan_steps_in_a_row_roll_back_with_lower_lr(corpus_file: Path, tmp_path: Path) -> None:
    recorder = Recorder()
    options = tiny(corpus_file, tmp_path / "run", steps=20, eval_every="100", max_bad_steps=3)
    trainer = Trainer(options, recorder)
    NaNAt(trainer, {12, 13, 14})  # steps 12-14 fail; the last good checkpoint is step 10
    result = trainer.run()
    rolled = [w for w in recorder.warnings if "rolled back" in w]
    assert len(rolled) == 1 and "step 10" in rolled[0] and "0.5" in rolled[0]
    last = verify_checkpoint(result.last_path)
    assert last.meta["step"] == 20 and last.meta["rollbacks"] == 1 and last.meta["lr_scale"] == 0.5


def test_endless_nan_stops_with_a_clear_message(corpus_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    trainer = Trainer(tiny(corpus_file, run, steps=200, eval_every="100", max_bad_steps=2), Recorder())
    NaNAt(trainer, set(range(7, 10_000)))
    with pytest.raises(TrainingError, match=r"diverged.*after 3 rollbacks.*lower --lr"):
        trainer.run()
    assert verify_checkpoint(run / LAST).meta["step"] == 5


def test_nan_before_any_checkpoint_stops(corpus_file: Path, tmp_path: Path) -> None:
    trainer = Trainer(tiny(corpus_file, tmp_path / "run", steps=50, eval_every="100", max_bad_steps=2), Recorder())
    NaNAt(trainer, None)
    with pytest.raises(TrainingError, match="no checkpoint to roll back to"):
        trainer.run()


def test_nan_weights_are_never_written(corpus_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    recorder = Recorder()
    trainer = Trainer(tiny(corpus_file, run, steps=20, eval_every="100", max_bad_steps=3), recorder)
    real_step = trainer.step
    broken: list[int] = []

    def step(lr: float) -> Any:
        out = real_step(lr)
        if trainer.state.step == 9 and not broken:  # an update goes wrong once: a weight becomes inf
            broken.append(9)
            with torch.no_grad():
                trainer.model.head.weight[0, 0] = math.inf
        return out

    trainer.step = step  # type: ignore[method-assign]
    result = trainer.run()
    assert any("step 10" in w and "not written" in w for w in recorder.warnings)  # the save at 10 is refused
    assert any("rolled back to step 5" in w for w in recorder.warnings)
    for name in (BEST, LAST):
        verify_checkpoint(run / name)  # every file on disk is finite
    assert result.steps == 20


def test_refused_save_keeps_the_previous_file(corpus_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    recorder = Recorder()
    trainer = Trainer(tiny(corpus_file, run, steps=3), recorder)
    trainer.run()
    before = (run / LAST).read_bytes()
    with torch.no_grad():
        trainer.model.embed.weight[1, 1] = math.nan
    trainer.checkpoints.try_save(LAST)
    assert (run / LAST).read_bytes() == before
    assert any("NaN/inf" in w and "not written" in w for w in recorder.warnings)
    with pytest.raises(TrainingError, match="not written"):
        trainer.checkpoints.final_save(LAST)


# -- charrnn verify --------------------------------------------------------------------------


def test_verify_good_bad_and_nan(trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ok = run_cli("verify", str(trained_run))
    assert ok.returncode == 0, ok.stderr.decode()
    assert ok.stdout.decode().count("ok  ") == 2 and "digest verified" in ok.stdout.decode()
    data = bytearray((trained_run / LAST).read_bytes())
    data[len(data) // 2] ^= 0x10
    (tmp_path / "bad.safetensors").write_bytes(bytes(data))
    code, out, err = cli("verify", str(tmp_path / "bad.safetensors"), monkeypatch=monkeypatch)
    assert "digest mismatch" in assert_one_line(code, err, 3) and out == ""
    ckpt = load_checkpoint(trained_run / LAST)
    weights = dict(ckpt.weights)
    weights["head.bias"] = weights["head.bias"].clone()
    weights["head.bias"][0] = math.nan
    save_checkpoint(tmp_path / "nan.safetensors", ckpt.config, ckpt.vocab, weights, ckpt.meta, ckpt.extra)
    load_checkpoint(tmp_path / "nan.safetensors")  # a valid file...
    code, _, err = cli("verify", str(tmp_path / "nan.safetensors"), monkeypatch=monkeypatch)
    assert "NaN" in assert_one_line(code, err, 3)  # ...that is not trusted


def test_verify_checks_structure(trained_run: Path, tmp_path: Path) -> None:
    ckpt = load_checkpoint(trained_run / LAST)
    weights = {k: v for k, v in ckpt.weights.items() if k != "head.bias"}
    save_checkpoint(tmp_path / "missing.safetensors", ckpt.config, ckpt.vocab, weights, ckpt.meta, ckpt.extra)
    with pytest.raises(CheckpointError, match="do not match"):
        verify_checkpoint(tmp_path / "missing.safetensors")
    meta = {**ckpt.meta, "step": -4}
    save_checkpoint(tmp_path / "step.safetensors", ckpt.config, ckpt.vocab, ckpt.weights, meta, ckpt.extra)
    with pytest.raises(CheckpointError, match="step"):
        verify_checkpoint(tmp_path / "step.safetensors")
    extra = {**ckpt.extra, "optim.99.exp_avg": torch.zeros(2)}
    save_checkpoint(tmp_path / "optim.safetensors", ckpt.config, ckpt.vocab, ckpt.weights, ckpt.meta, extra)
    with pytest.raises(CheckpointError, match=r"optim\.99"):
        verify_checkpoint(tmp_path / "optim.safetensors")

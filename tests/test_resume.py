"""Resume exactly, refuse to resume into a different run, fine-tune with --init-from, survive kills."""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from charrnn.errors import CheckpointError, ConfigError, CorpusError, Interrupted
from charrnn.store.checkpoint import load_checkpoint, verify_checkpoint
from charrnn.store.runs import LAST
from charrnn.training.loop import Trainer, train
from charrnn.training.observer import TrainResult
from charrnn.training.options import TrainOptions
from tests.conftest import REPO, TINY_TRAIN, make_text, tiny_options


def tiny(corpus: Path, out: Path | None, **changes: object) -> TrainOptions:
    """Tiny model with dropout on (so the RNG matters) and a fixed single thread, on the CPU.

    Bit-identical resume is the CPU's promise: cuDNN's recurrent kernels are not bit-reproducible
    run to run, so on a GPU a resumed run continues from the same state but not to the same bits
    (README, "GPUs"; `test_a_run_resumes_from_its_state_on_any_device` holds for both).
    """
    base: dict[str, Any] = dict(num_layers=2, dropout=0.3, dtype="fp32", eval_every="5", save_every="5", device="cpu")
    base.update(changes)
    return tiny_options(corpus, out, **base)


class Recorder:
    """An observer that keeps warnings."""

    def __init__(self) -> None:
        self.warnings: list[str] = []

    def on_start(self, info: dict[str, Any]) -> None:
        self.info = info

    def on_log(self, row: dict[str, Any]) -> None:
        pass

    def on_eval(self, row: dict[str, Any]) -> None:
        pass

    def on_warning(self, message: str) -> None:
        self.warnings.append(message)

    def on_end(self, result: TrainResult) -> None:
        pass


class StopAt(Trainer):
    """A Trainer that receives SIGINT (as the signal handler records it) once it reaches `stop_step`."""

    stop_step = 10

    def step(self, lr: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = super().step(lr)
        if self.state.step == self.stop_step:
            self.interrupted = signal.SIGINT
        return out


class CrashAt(Trainer):
    """A Trainer that dies at `crash_step` without saving, as a kill -9 would."""

    crash_step = 13

    def step(self, lr: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = super().step(lr)
        if self.state.step == self.crash_step:
            raise SystemExit("killed")
        return out


def rows(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def assert_same_checkpoint(a: Path, b: Path) -> None:
    """Bit-identical weights, optimizer moments, carried state and RNG."""
    first, second = load_checkpoint(a), load_checkpoint(b)
    assert first.meta["step"] == second.meta["step"]
    assert first.weights.keys() == second.weights.keys() and first.extra.keys() == second.extra.keys()
    for name in first.weights:
        assert torch.equal(first.weights[name], second.weights[name]), name
    for name in first.extra:
        assert torch.equal(first.extra[name], second.extra[name]), name


def test_interrupt_and_resume_is_bit_identical(corpus_file: Path, tmp_path: Path) -> None:
    straight = train(tiny(corpus_file, tmp_path / "straight", steps=20))
    with pytest.raises(Interrupted) as stopped:
        StopAt(tiny(corpus_file, tmp_path / "halves", steps=20)).run()
    assert stopped.value.exit_code == 130 and "--resume" in str(stopped.value)
    assert load_checkpoint(tmp_path / "halves" / LAST).meta["step"] == 10
    resumed = train(TrainOptions(corpus=(), resume=str(tmp_path / "halves")))  # no other flag needed
    assert resumed.steps == 20 and resumed.stop_reason == "steps"
    assert_same_checkpoint(straight.last_path, resumed.last_path)
    assert_same_checkpoint(straight.best_path, resumed.best_path)
    vals = [(r["step"], r["val_loss"]) for r in rows(tmp_path / "halves") if r["event"] == "val"]
    assert vals == [(r["step"], r["val_loss"]) for r in rows(tmp_path / "straight") if r["event"] == "val"]
    assert [s for s, _ in vals] == [5, 10, 15, 20]


def test_crash_resumes_from_periodic_checkpoint_exactly(corpus_file: Path, tmp_path: Path) -> None:
    straight = train(tiny(corpus_file, tmp_path / "straight", steps=20, eval_every="4"))
    run = tmp_path / "crashed"
    with pytest.raises(SystemExit):
        CrashAt(tiny(corpus_file, run, steps=20, eval_every="4")).run()
    assert load_checkpoint(run / LAST).meta["step"] == 10  # saved every 5 steps: at most 5 lost
    with open(run / "metrics.jsonl", "a") as handle:  # rows written after the checkpoint, and a torn line
        handle.write(json.dumps({"event": "val", "step": 12, "val_loss": 9.0}) + "\n" + '{"event": "tr')
    (run / f".{LAST}.tmp-{dead_pid()}").write_bytes(b"half a checkpoint")
    recorder = Recorder()
    resumed = Trainer(TrainOptions(corpus=(), resume=str(run)), recorder).run()
    assert_same_checkpoint(straight.last_path, resumed.last_path)
    assert not list(run.glob(".*tmp-*"))
    assert any("interrupted save" in w for w in recorder.warnings)
    steps = [r["step"] for r in rows(run) if r["event"] == "val"]
    assert steps == [4, 8, 12, 16, 20]  # no duplicates, the stray row 12 is gone
    assert [r["val_loss"] for r in rows(run) if r["event"] == "val"] == [
        r["val_loss"] for r in rows(tmp_path / "straight") if r["event"] == "val"
    ]


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, check=True)
    return int(proc.stdout)


def test_resume_never_replaces_a_newer_better_best(corpus_file: Path, tmp_path: Path) -> None:
    from charrnn.store.checkpoint import save_checkpoint

    class CrashAt17(CrashAt):
        crash_step = 17

    run = tmp_path / "run"
    with pytest.raises(SystemExit):
        CrashAt17(tiny(corpus_file, run, steps=20, save_every="10", eval_every="5")).run()
    best = load_checkpoint(run / "best.safetensors")
    assert best.meta["step"] == 15 and load_checkpoint(run / LAST).meta["step"] == 10
    # Make the lost-from-`last` best clearly better than anything the resumed run will reach.
    meta = {**best.meta, "best_val_loss": 0.001}
    save_checkpoint(run / "best.safetensors", best.config, best.vocab, best.weights, meta, best.extra)
    train(TrainOptions(corpus=(), resume=str(run)))
    vals = [r for r in rows(run) if r["event"] == "val" and r["step"] > 10]
    assert [r["best"] for r in vals] == [True, True]  # improvements over the state resumed at step 10...
    assert load_checkpoint(run / "best.safetensors").meta["best_val_loss"] == 0.001  # ...that do not overwrite


def test_resume_keeps_the_time_budget(corpus_file: Path, tmp_path: Path) -> None:
    class StopLate(Trainer):
        def step(self, lr: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            out = super().step(lr)
            if self.state.elapsed_s >= 1.5 and self.interrupted is None:
                self.interrupted = signal.SIGTERM
            return out

    run = tmp_path / "timed"
    with pytest.raises(Interrupted) as stopped:
        StopLate(tiny(corpus_file, run, time="3s", eval_every="100")).run()
    assert stopped.value.exit_code == 143
    spent = load_checkpoint(run / LAST).meta["elapsed_s"]
    assert spent >= 1.5
    result = train(TrainOptions(corpus=(), resume=str(run)))
    assert result.stop_reason == "time"
    # The run's clock went on from `spent` and stopped at the 3 s budget: a fresh budget would have
    # taken it past spent + 3 s minus at most the quarter kept for the final validation.
    assert load_checkpoint(run / LAST).meta["elapsed_s"] < spent + 0.75 * 3.0
    # all of the budget but the few milliseconds kept for this tiny model's final validation
    assert load_checkpoint(run / LAST).meta["elapsed_s"] >= 3.0 - 0.1


def test_resume_refuses_a_different_run(corpus_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny(corpus_file, run, steps=5))
    other = tmp_path / "other.txt"
    other.write_text(make_text(300), encoding="utf-8")
    with pytest.raises(CorpusError, match="not the one this run was trained on"):
        Trainer(TrainOptions(corpus=(str(other),), resume=str(run)))
    for change, flag in [
        ({"hidden_size": 32}, "--hidden 32"),
        ({"seq_len": 8}, "--seq-len 8"),
        ({"cell": "gru"}, "--cell gru"),
        ({"dropout": 0.0}, "--dropout 0.0"),
    ]:
        with pytest.raises(ConfigError, match=flag):
            Trainer(TrainOptions(corpus=(), resume=str(run), **change))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="drop --out"):
        Trainer(TrainOptions(corpus=(), resume=str(run), out=str(tmp_path / "elsewhere")))
    with pytest.raises(ConfigError, match="only one"):
        Trainer(TrainOptions(corpus=(), resume=str(run), init_from=str(run)))
    with pytest.raises(CheckpointError, match="not found"):
        Trainer(TrainOptions(corpus=(), resume=str(tmp_path / "absent")))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CheckpointError, match="nothing to resume"):
        Trainer(TrainOptions(corpus=(), resume=str(empty)))


def test_resuming_a_finished_run_trains_no_further(corpus_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny(corpus_file, run, steps=5))
    recorder = Recorder()
    result = Trainer(TrainOptions(corpus=(), resume=str(run)), recorder).run()
    assert result.steps == 5 and load_checkpoint(run / LAST).meta["step"] == 5
    assert any("already spent" in w for w in recorder.warnings)


def test_resume_allows_budget_and_lr_changes_with_warnings(corpus_file: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    train(tiny(corpus_file, run, steps=5))
    recorder = Recorder()
    result = Trainer(TrainOptions(corpus=(str(corpus_file),), resume=str(run), steps=8, lr=1e-3), recorder).run()
    assert result.steps == 8
    assert any("--steps 8" in w for w in recorder.warnings) and any("--lr 0.001" in w for w in recorder.warnings)
    assert load_checkpoint(run / LAST).meta["train_config"]["lr"] == 1e-3


def test_init_from_fine_tunes_a_new_run(corpus_file: Path, tmp_path: Path) -> None:
    base = train(tiny(corpus_file, tmp_path / "base", steps=5))
    subset = tmp_path / "subset.txt"
    subset.write_text("the cat sat on the mat.\n" * 60, encoding="utf-8")
    trainer = Trainer(tiny(subset, tmp_path / "tuned", steps=3, init_from=str(base.last_path)))
    start = load_checkpoint(base.last_path)
    for name, tensor in trainer.model.state_dict().items():
        assert torch.equal(tensor, start.weights[name]), name
    assert trainer.parts.corpus.vocab == start.vocab and trainer.state.step == 0
    result = trainer.run()
    tuned = load_checkpoint(result.last_path)
    assert tuned.meta["step"] == 3 and tuned.vocab == start.vocab
    novel = tmp_path / "novel.txt"
    novel.write_text("ZZZ the cat\n" * 60, encoding="utf-8")
    with pytest.raises(CorpusError, match="'Z'"):
        Trainer(tiny(novel, tmp_path / "novel", steps=3, init_from=str(base.last_path)))
    with pytest.raises(ConfigError, match="--hidden 32"):
        Trainer(tiny(corpus_file, tmp_path / "wide", steps=3, hidden_size=32, init_from=str(base.last_path)))


# -- the real CLI under signals and kill -9 --------------------------------------------------


def start_training(work: Path, *extra: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    return subprocess.Popen(
        [sys.executable, "-m", "charrnn", "train", "tiny.txt", "--out", "run", *TINY_TRAIN, *extra],
        cwd=work,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        assert time.monotonic() < deadline, "training never wrote a checkpoint"
        time.sleep(0.05)


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_and_exits(tmp_path: Path, sig: signal.Signals, code: int) -> None:
    (tmp_path / "tiny.txt").write_text(make_text(), encoding="utf-8")
    proc = start_training(tmp_path, "--steps", "100000", "--save-every", "20")
    wait_for(tmp_path / "run" / LAST, proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    text = stderr.decode()
    assert proc.returncode == code, text
    assert "Traceback" not in text and "charrnn train --resume run" in text
    stopped_at = int(re.search(rf"{sig.name} at step (\d+)", text).group(1))  # type: ignore[union-attr]
    assert verify_checkpoint(tmp_path / "run" / LAST).meta["step"] == stopped_at  # saved where it stopped


def test_kill_9_leaves_a_resumable_checkpoint(tmp_path: Path) -> None:
    kill_and_resume(tmp_path, 0.7)  # mid-run, most likely mid-save: a save happens every step


@pytest.mark.slow
@pytest.mark.parametrize("delay", [0.0, 0.05, 0.13, 0.31, 0.52, 0.9, 1.37, 2.2])
def test_kill_9_at_many_moments(tmp_path: Path, delay: float) -> None:
    kill_and_resume(tmp_path, delay)


def kill_and_resume(tmp_path: Path, delay: float) -> None:
    (tmp_path / "tiny.txt").write_text(make_text(), encoding="utf-8")
    proc = start_training(tmp_path, "--steps", "100000", "--save-every", "1", "--eval-every", "7")
    wait_for(tmp_path / "run" / LAST, proc)
    time.sleep(delay)
    proc.kill()
    proc.communicate(timeout=30)
    step = verify_checkpoint(tmp_path / "run" / LAST).meta["step"]
    shutil.copy(tmp_path / "run" / LAST, tmp_path / "before.safetensors")
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    done = subprocess.run(
        [sys.executable, "-m", "charrnn", "train", "--resume", "run", "--steps", str(step + 3), "-q"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert load_checkpoint(tmp_path / "run" / LAST).meta["step"] == step + 3
    assert not list((tmp_path / "run").glob(".*tmp-*"))


def test_periodic_saves_by_steps_and_by_time(
    corpus_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from charrnn.training.checkpointing import Checkpoints

    saves: list[tuple[int, float]] = []
    try_save = Checkpoints.try_save

    def counting(self: Checkpoints, name: str) -> None:
        if name == LAST:
            saves.append((self.state.step, time.perf_counter()))
        try_save(self, name)

    monkeypatch.setattr(Checkpoints, "try_save", counting)
    train(tiny(corpus_file, tmp_path / "steps", steps=23, save_every="5", eval_every="100"))
    assert [step for step, _ in saves] == [5, 10, 15, 20]  # and the final save at 23
    assert load_checkpoint(tmp_path / "steps" / LAST).meta["step"] == 23
    saves.clear()
    train(tiny(corpus_file, tmp_path / "time", time="1.6s", save_every="0.4s", eval_every="100"))
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(saves)]
    assert len(saves) >= 2 and all(gap >= 0.39 for gap in gaps)


def test_every_run_counter_is_restored() -> None:
    from dataclasses import fields as dataclass_fields

    from charrnn.store.meta import METADATA_FIELDS, CheckpointMeta, RunState

    counters = {f.name for f in dataclass_fields(RunState)}
    assert {f.name for f in dataclass_fields(CheckpointMeta)} <= set(METADATA_FIELDS)  # each is declared...
    assert counters <= {f.name for f in dataclass_fields(CheckpointMeta)}  # ...and read back into the run


def test_malformed_resume_state_is_refused(corpus_file: Path, tmp_path: Path) -> None:
    from charrnn.store.checkpoint import save_checkpoint

    run = tmp_path / "run"
    train(tiny(corpus_file, run, steps=3))
    ckpt = load_checkpoint(run / LAST)
    for bad in (
        {"lr_scale": "half"},
        {"train_config": {"lr": 1}},
        {"options": {**ckpt.meta["options"], "threads": "x"}},
    ):
        meta = {**ckpt.meta, **bad}
        save_checkpoint(run / LAST, ckpt.config, ckpt.vocab, ckpt.weights, meta, ckpt.extra)
        with pytest.raises(CheckpointError):
            Trainer(TrainOptions(corpus=(), resume=str(run)))


def test_cli_init_from_and_resume_flags(trained_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_fuzz import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.txt").write_text(make_text(), encoding="utf-8")
    args = ["tiny.txt", "--out", "tuned", "--steps", "2", "--threads", "1", "-q"]
    code, out, err = cli("train", *args, "--init-from", str(trained_run), monkeypatch=monkeypatch)
    assert code == 0 and out == "", err
    tuned = load_checkpoint(tmp_path / "tuned" / LAST)
    assert tuned.config == load_checkpoint(trained_run / "best.safetensors").config and tuned.meta["step"] == 2
    code, _, err = cli("train", "--resume", "tuned", "--steps", "4", "-q", monkeypatch=monkeypatch)
    assert code == 0 and "resuming tuned at step 2" in err and "--steps 4" in err
    assert load_checkpoint(tmp_path / "tuned" / LAST).meta["step"] == 4


def test_stale_temp_files_of_live_writers_are_kept(tmp_path: Path) -> None:
    from charrnn.store.runs import clean_stale_temps

    dead = tmp_path / f".{LAST}.tmp-{dead_pid()}"
    mine = tmp_path / f".best.safetensors.tmp-{os.getpid()}"
    live = tmp_path / f".{LAST}.tmp-{os.getppid()}"  # another process that is still running
    other = tmp_path / "notes.tmp-1"
    for path in (dead, mine, live, other):
        path.write_bytes(b"x")
    assert sorted(clean_stale_temps(tmp_path)) == sorted([dead, mine])
    assert live.exists() and other.exists()


def test_resume_refuses_the_same_bytes_joined_into_other_text(trained_run: Path, tmp_path: Path) -> None:
    """Same files, same vocab, but not the text the run saw (an older join, another separator): refused."""
    from charrnn.store.checkpoint import save_checkpoint

    run = tmp_path / "old"
    shutil.copytree(trained_run, run)
    ckpt = load_checkpoint(run / LAST)
    corpus = {**ckpt.meta["corpus"], "chars": ckpt.meta["corpus"]["chars"] + 1}
    save_checkpoint(run / LAST, ckpt.config, ckpt.vocab, ckpt.weights, {**ckpt.meta, "corpus": corpus}, ckpt.extra)
    with pytest.raises(CorpusError, match="--doc-separator that started it"):
        Trainer(TrainOptions(corpus=(), resume=str(run)))


def test_resume_across_epochs_reads_the_streams_as_an_uninterrupted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """New runs read their streams' ends in odd epochs; a run stopped in its second epoch and resumed
    reads the same windows, bit for bit, and a run recorded before keeps the start-aligned layout."""
    corpus = tmp_path / "small.txt"
    corpus.write_text(make_text(60), encoding="utf-8")  # ~1,600 chars: an epoch is a few steps
    options = dict(steps=45, eval_every="100", save_every="5", stream_groups=1)  # 23 windows an epoch
    from charrnn.data.batches import StreamBatcher

    epochs_read: list[int] = []
    window = StreamBatcher.window

    def spy(self: StreamBatcher, index: int, pin: bool = False, epoch: int = 0) -> Any:
        epochs_read.append(epoch)
        return window(self, index, pin, epoch)

    monkeypatch.setattr(StreamBatcher, "window", spy)
    straight = train(tiny(corpus, tmp_path / "straight", **options))
    assert set(epochs_read) == {0, 1}  # the loop tells the batcher which epoch it reads
    StopAt.stop_step = 30
    try:
        with pytest.raises(Interrupted):
            StopAt(tiny(corpus, tmp_path / "halves", **options)).run()
    finally:
        StopAt.stop_step = 10
    stopped = load_checkpoint(tmp_path / "halves" / LAST)
    assert stopped.meta["epoch"] % 2 == 1 and stopped.meta["train_config"]["alternate_ends"] is True
    resumed = train(TrainOptions(corpus=(), resume=str(tmp_path / "halves")))
    assert_same_checkpoint(straight.last_path, resumed.last_path)


def test_a_run_stopped_by_its_time_is_spent_when_resumed(corpus_file: Path, tmp_path: Path) -> None:
    """The final validation's reserve the run stopped with travels in the checkpoint: resumed with
    the same --time, the run is spent (an estimate made afresh would let it train on a little)."""
    run = tmp_path / "run"
    # (a --patience: the tiny text overfits in 1.5 s, and the default rule would stop it for that)
    options = dict(time=1.5, eval_every="3", hidden_size=64, val_max_chars=100_000, patience=10**6)
    first = train(tiny(corpus_file, run, **options))
    assert first.stop_reason == "time"
    stored = load_checkpoint(run / LAST).meta
    assert stored["val_reserve_s"] > 0 and stored["elapsed_s"] + stored["val_reserve_s"] >= 1.5 - 0.001
    recorder = Recorder()
    again = Trainer(TrainOptions(corpus=(), resume=str(run)), recorder).run()
    assert again.steps == first.steps
    assert any("time budget is already spent" in w for w in recorder.warnings)


def test_ema_resumes_bit_identically_and_is_the_model(corpus_file: Path, tmp_path: Path) -> None:
    """--ema: the checkpoints' model is the average, the weights being trained ride beside it as
    raw.*, and an interrupted run resumed equals an uninterrupted one, average and all."""
    straight = train(tiny(corpus_file, tmp_path / "straight", steps=20, ema=0.9))
    with pytest.raises(Interrupted):
        StopAt(tiny(corpus_file, tmp_path / "halves", steps=20, ema=0.9)).run()
    resumed = train(TrainOptions(corpus=(), resume=str(tmp_path / "halves")))
    assert_same_checkpoint(straight.last_path, resumed.last_path)
    assert_same_checkpoint(straight.best_path, resumed.best_path)
    last = load_checkpoint(straight.last_path)
    raw = {name[len("raw.") :]: t for name, t in last.extra.items() if name.startswith("raw.")}
    assert raw.keys() == last.weights.keys()
    assert any(not torch.equal(raw[name], last.weights[name]) for name in raw)  # an average, not a copy
    plain = train(tiny(corpus_file, tmp_path / "plain", steps=20))
    assert not any(name.startswith("raw.") for name in load_checkpoint(plain.last_path).extra)
    with pytest.raises(ConfigError, match="--ema"):
        train(TrainOptions(corpus=(), resume=str(tmp_path / "halves"), ema=0.5))

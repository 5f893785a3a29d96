"""--state-reset: streams whose carried state starts again from zero, drawn from the seed and step."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from charrnn.errors import ConfigError, Interrupted
from charrnn.store.checkpoint import load_checkpoint
from charrnn.store.runs import LAST
from charrnn.training.carried import reset_rows
from charrnn.training.config import TrainConfig
from charrnn.training.loop import train
from charrnn.training.observer import TrainResult
from charrnn.training.options import TrainOptions, parse_options
from tests.conftest import tiny_options
from tests.test_resume import StopAt, assert_same_checkpoint


def state(batch: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.ones(2, batch, 3), torch.full((2, batch, 3), 2.0)


def test_rows_reset_by_chance_from_the_seed_and_step_alone() -> None:
    whole = slice(0, 16)
    h, c = state()
    assert reset_rows((h, c), 1, 5, 0.0, 16, whole) == (h, c)
    zeroed = reset_rows((h, c), 1, 5, 1.0, 16, whole)
    assert isinstance(zeroed, tuple) and not zeroed[0].any() and not zeroed[1].any()
    first = reset_rows((h, c), 1, 5, 0.5, 16, whole)
    again = reset_rows((h, c), 1, 5, 0.5, 16, whole)
    later = reset_rows((h, c), 1, 6, 0.5, 16, whole)
    assert isinstance(first, tuple) and isinstance(again, tuple) and isinstance(later, tuple)
    assert torch.equal(first[0], again[0])  # same seed and step: same streams
    kept = first[0][0, :, 0] == 1
    assert 0 < int(kept.sum()) < 16 and torch.equal(first[1][0, :, 0] == 2, kept)  # h and c go together
    assert not torch.equal(first[0], later[0])
    # two ranks holding rows 0-7 and 8-15 reset what one process resets
    halves = [reset_rows(state(8), 1, 5, 0.5, 16, rows) for rows in (slice(0, 8), slice(8, 16))]
    joined = torch.cat([part[0] for part in halves if isinstance(part, tuple)], dim=1)
    assert torch.equal(joined, first[0])
    gru = reset_rows(torch.ones(2, 16, 3), 1, 5, 0.5, 16, whole)
    assert isinstance(gru, torch.Tensor) and torch.equal(gru, first[0])


def test_resets_change_training_and_a_resumed_run_resets_the_same_streams(corpus_file: Path, tmp_path: Path) -> None:
    def options(out: str, chance: float) -> TrainOptions:
        return tiny_options(corpus_file, tmp_path / out, steps=20, state_reset=chance, device="cpu")  # bit-exact

    plain = train(options("plain", 0.0))
    straight = train(options("straight", 0.3))
    with pytest.raises(Interrupted):
        StopAt(options("halves", 0.3)).run()
    resumed = train(TrainOptions(corpus=(), resume=str(tmp_path / "halves")))
    assert_same_checkpoint(straight.last_path, resumed.last_path)
    a, b = load_checkpoint(plain.last_path), load_checkpoint(straight.last_path)
    assert not torch.equal(a.weights["rnn.weight_hh_l0"], b.weights["rnn.weight_hh_l0"])
    assert b.meta["train_config"]["state_reset"] == 0.3


def test_a_schedule_recorded_before_state_reset_existed_loads_as_no_reset(trained_run: Path) -> None:
    recorded = dict(load_checkpoint(trained_run / LAST).meta["train_config"])
    del recorded["state_reset"]
    assert TrainConfig.from_json(recorded).state_reset == 0.0
    with pytest.raises(ConfigError, match="--state-reset"):
        TrainConfig.from_json({**recorded, "state_reset": 2.5})


def make_recorded_before(first: TrainResult, name: str) -> None:
    """Strip `name` from the run's last checkpoint (schedule and options): a run recorded before
    that field existed."""
    from tests.test_hostile import forge, read_raw

    meta, tensors = read_raw(first.last_path)
    del meta["train_config"][name], meta["options"][name]
    forge(first.last_path, meta, tensors)
    (first.run_dir / "best.safetensors").unlink()


def resumed_as_if_recorded_before(first: TrainResult, name: str, steps: int) -> dict[str, Any]:
    """Make the run one recorded before `name` existed, resume it to `steps` and return the
    resumed checkpoint's metadata."""
    make_recorded_before(first, name)
    resumed = train(TrainOptions(corpus=(), resume=str(first.run_dir), steps=steps))
    return load_checkpoint(resumed.last_path).meta


def test_a_run_from_before_state_reset_resumes_without_resets_and_says_so(corpus_file: Path, tmp_path: Path) -> None:
    """Its schedule ran with no resets; the resumed run keeps that, and its record says 0, not today's default."""
    first = train(tiny_options(corpus_file, tmp_path / "old", steps=6, state_reset=0.0))
    record = resumed_as_if_recorded_before(first, "state_reset", steps=10)
    assert record["train_config"]["state_reset"] == 0.0
    assert record["options"]["state_reset"] == 0.0


def test_a_run_from_before_stream_groups_resumes_reading_one_group(corpus_file: Path, tmp_path: Path) -> None:
    first = train(tiny_options(corpus_file, tmp_path / "old", steps=6, stream_groups=1))
    record = resumed_as_if_recorded_before(first, "stream_groups", steps=10)
    assert record["train_config"]["stream_groups"] == 1 and record["options"]["stream_groups"] == 1


def test_new_runs_plan_stream_groups_and_a_resume_cannot_change_them(corpus_file: Path, tmp_path: Path) -> None:
    first = train(tiny_options(corpus_file, tmp_path / "run", steps=6))
    meta = load_checkpoint(first.last_path)
    groups = meta.info.train_config["stream_groups"]
    assert groups > 1 and meta.extra["state.h"].shape[1] == 4 * groups  # every stream's carried state
    with pytest.raises(ConfigError, match="--stream-groups 1"):
        train(parse_options((), resume=str(first.run_dir), steps=10, stream_groups=1))


def test_each_step_starts_from_the_state_its_own_group_left(corpus_file: Path, tmp_path: Path) -> None:
    """Step t reads group t % G: step G must start exactly where step 0 ended, and step 1 (another
    group, never run before) from zeros."""
    from charrnn.training.loop import Trainer

    trainer = Trainer(tiny_options(corpus_file, tmp_path / "run", steps=100, state_reset=0.0))
    groups = trainer.parts.batcher.groups
    assert groups > 2
    seen: list[tuple[torch.Tensor | None, torch.Tensor]] = []
    net = trainer.stepper.net

    def recording(x: torch.Tensor, start: Any) -> Any:
        logits, state = net(x, start)
        seen.append((None if start is None else start[0].clone(), state[0].detach().clone()))
        return logits, state

    trainer.stepper.net = recording  # type: ignore[assignment]
    for _ in range(groups + 1):
        trainer.step(1e-3)
    assert seen[0][0] is None
    first_start = seen[1][0]
    assert first_start is not None and (first_start == 0).all()
    again = seen[groups][0]
    assert again is not None and torch.equal(again, seen[0][1])

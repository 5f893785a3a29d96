"""The plan measures the machine: the same budget buys each machine the passes, model and dropout
its own training rate calls for."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from charrnn.model import ModelConfig
from charrnn.training.plan import CHARS_FOR_512, assumed_flops, chars_per_second, make_plan, probe_config
from charrnn.training.probe import Speed, measure_speed
from tests.conftest import TINY_TRAIN, run_cli

CPU = torch.device("cpu")
SHAKESPEARE_TRAIN = 1_003_854
# Training rates seen on this project's 2-core machines: AVX2-only fp32 (A) and AVX-512 BF16 (C),
# where 10 minutes bought 1,325 and 2,948 steps of 2x512.
RATE_A, RATE_C = 9.0e10, 2.0e11


def test_the_same_budget_plans_for_each_machine_its_own_passes_and_dropout() -> None:
    a = make_plan(SHAKESPEARE_TRAIN, 65, CPU, torch.float32, seconds=600, flops=RATE_A)
    c = make_plan(SHAKESPEARE_TRAIN, 65, CPU, torch.float32, seconds=600, flops=RATE_C)
    assert a.hidden_size == c.hidden_size == 512
    assert c.expected_epochs == pytest.approx(a.expected_epochs * RATE_C / RATE_A)
    assert 2 < a.expected_epochs < 3 and a.dropout == 0.1  # A: 2.7 passes, light dropout
    assert c.expected_epochs > 5 and c.dropout == 0.25  # C: 6 passes, the regularisation they call for


def test_model_size_follows_the_characters_the_budget_buys_not_the_seconds() -> None:
    wide = ModelConfig(vocab_size=65, hidden_size=512)
    seconds_for_512 = CHARS_FOR_512 / chars_per_second(wide, RATE_A)
    assert (
        make_plan(SHAKESPEARE_TRAIN, 65, CPU, torch.float32, seconds=seconds_for_512 * 0.9, flops=RATE_A).hidden_size
        == 384
    )
    assert (
        make_plan(SHAKESPEARE_TRAIN, 65, CPU, torch.float32, seconds=seconds_for_512 * 1.1, flops=RATE_A).hidden_size
        == 512
    )
    # twice the rate: the switch comes at half the seconds
    faster = make_plan(SHAKESPEARE_TRAIN, 65, CPU, torch.float32, seconds=seconds_for_512 * 0.6, flops=2 * RATE_A)
    assert faster.hidden_size == 512
    # without a measurement the rate assumed for the device and dtype is used
    assert make_plan(SHAKESPEARE_TRAIN, 65, CPU, torch.float32, seconds=600) == make_plan(
        SHAKESPEARE_TRAIN, 65, CPU, torch.float32, seconds=600, flops=assumed_flops(CPU, torch.float32)
    )


def test_measuring_times_real_steps_and_leaves_the_seed_alone() -> None:
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    config = probe_config(20_000, 30, "gru")
    speed = measure_speed(config, 4, 16, CPU, torch.float32)
    assert torch.equal(torch.rand(3), expected)  # the run's weights do not depend on being probed
    assert speed.measured and speed.steps >= 2 and speed.chars_per_s > 0
    assert speed.model == f"2x{config.hidden_size} GRU"
    assert speed.flops == pytest.approx(6 * sum(p.numel() for p in _model(config).parameters()) * speed.chars_per_s)
    assert "measured" in speed.describe() and "chars/s" in speed.describe()
    assert "not measured" in Speed(flops=1e10, measured=False).describe()


def _model(config: ModelConfig) -> torch.nn.Module:
    from charrnn.model import CharRNN

    return CharRNN(config)


def test_a_time_budget_says_what_it_measured_and_records_it(corpus_file: Path, tmp_path: Path) -> None:
    timed = run_cli("train", str(corpus_file), *TINY_TRAIN, "--time", "2s", "--out", str(tmp_path / "timed"))
    assert timed.returncode == 0, timed.stderr.decode()
    speed_lines = [line for line in timed.stderr.decode().splitlines() if line.startswith("speed")]
    assert len(speed_lines) == 1 and "measured" in speed_lines[0] and "chars/s" in speed_lines[0]
    recorded = json.loads((tmp_path / "timed" / "config.json").read_text())["speed"]
    assert recorded["measured"] is True and recorded["flops"] > 0
    # a step budget gives the passes directly: nothing to measure, nothing claimed
    stepped = run_cli("train", str(corpus_file), *TINY_TRAIN, "--steps", "2", "--out", str(tmp_path / "stepped"))
    assert stepped.returncode == 0, stepped.stderr.decode()
    assert not [line for line in stepped.stderr.decode().splitlines() if line.startswith("speed")]
    assert json.loads((tmp_path / "stepped" / "config.json").read_text())["speed"]["measured"] is False


def test_stream_groups_leave_each_stream_at_least_sixteen_windows() -> None:
    from charrnn.training.plan import stream_groups_for

    assert stream_groups_for(1_003_855, 32, 64) == 16  # Tiny Shakespeare's training text: 30 windows each
    assert stream_groups_for(100_000, 32, 64) == 3
    assert stream_groups_for(5_000, 32, 64) == 1


def test_the_docs_table_of_planned_defaults_is_the_planners_output() -> None:
    import re
    from pathlib import Path

    from charrnn.training.plan_table import planned_defaults_table

    usage = (Path(__file__).resolve().parents[1] / "docs" / "usage.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- planned-defaults:.*?-->\n(.*?)<!-- /planned-defaults -->", usage, re.S)
    assert found, "docs/usage.md lost its table of planned defaults"
    assert found.group(1) == planned_defaults_table(), (
        "regenerate it: python -c 'from charrnn.training.plan_table import planned_defaults_table as t; print(t())'"
    )

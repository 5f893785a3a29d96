"""A run resumes on whatever device and dtype it trained with: the carried state is stored as
float32, and a checkpoint from before that rule (a GPU run's fp16 or bf16 state) still resumes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from charrnn.errors import Interrupted
from charrnn.store.checkpoint import load_checkpoint
from charrnn.store.runs import LAST
from charrnn.training.carried import keep_finite_state, put_group_rows
from charrnn.training.loop import Trainer
from charrnn.training.options import TrainOptions
from tests.conftest import TINY_TRAIN, make_text, run_cli, tiny_options
from tests.test_hostile import forge, read_raw
from tests.test_resume import StopAt


def test_the_carried_state_is_float32_whatever_autocast_returned() -> None:
    new = torch.randn(2, 4, 3).to(torch.bfloat16)  # what a recurrent layer returns under autocast
    old = torch.randn(2, 4, 3)
    kept = keep_finite_state(torch.tensor(False), new, old)
    assert kept.dtype == torch.float32 and torch.equal(kept, new.float())  # widening is exact
    skipped = keep_finite_state(torch.tensor(True), (new, new.half()), (old, old))
    assert isinstance(skipped, tuple) and all(t.dtype == torch.float32 and torch.equal(t, old) for t in skipped)
    whole = put_group_rows(torch.zeros(2, 8, 3), kept, group=1, groups=2)
    assert whole.dtype == torch.float32 and torch.equal(whole[:, 1::2], kept)


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("any-device")
    (root / "tiny.txt").write_text(make_text(), encoding="utf-8")
    args = ["train", str(root / "tiny.txt"), "--out", str(root / "run"), *TINY_TRAIN, "--layers", "2"]
    proc = run_cli(*args, "--steps", "6", "--device", "cpu", "-q")
    assert proc.returncode == 0, proc.stderr.decode()
    return root


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_half_precision_state_from_an_older_gpu_run_verifies_and_resumes(
    dtype: torch.dtype, cpu_run: Path, tmp_path: Path
) -> None:
    """GPU runs stored the dtype cuDNN returned under autocast (fp16 in a bf16 run); those resume."""
    run = tmp_path / "run"
    shutil.copytree(cpu_run / "run", run)
    meta, tensors = read_raw(run / LAST)
    tensors["state.h"], tensors["state.c"] = tensors["state.h"].to(dtype), tensors["state.c"].to(dtype)
    forge(run / LAST, meta, tensors)
    verified = run_cli("verify", str(run / LAST))
    assert verified.returncode == 0, verified.stderr.decode()
    resumed = run_cli("train", "--resume", str(run), "--steps", "9", "--device", "cpu", "-q")
    assert resumed.returncode == 0, resumed.stderr.decode()
    last = load_checkpoint(run / LAST)
    assert last.meta["step"] == 9
    assert last.extra["state.h"].dtype == last.extra["state.c"].dtype == torch.float32


def test_a_state_of_another_kind_is_still_refused(cpu_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(cpu_run / "run", run)
    meta, tensors = read_raw(run / LAST)
    tensors["state.h"] = tensors["state.h"].to(torch.int32)
    forge(run / LAST, meta, tensors)
    proc = run_cli("verify", str(run / LAST))
    assert proc.returncode == 3 and "state.h is torch.int32" in proc.stderr.decode()


def test_a_run_resumes_from_its_own_state_on_any_device(tmp_path: Path) -> None:
    """The device `auto` picks (a GPU where one is visible) and its `auto` dtype: the resumed run
    starts from exactly the state that was saved, and trains on to its budget.

    (Bit-identical continuation is the CPU's promise, tests/test_resume.py; on a GPU cuDNN's
    kernels are not bit-reproducible from one run to the next.)
    """
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    options = tiny_options(corpus, tmp_path / "run", num_layers=2, steps=16, save_every="5", eval_every="8")
    with pytest.raises(Interrupted):
        StopAt(options).run()
    saved = load_checkpoint(tmp_path / "run" / LAST)
    assert saved.meta["step"] == 10
    assert saved.extra["state.h"].dtype == saved.extra["state.c"].dtype == torch.float32
    trainer = Trainer(TrainOptions(corpus=(), resume=str(tmp_path / "run")))
    try:
        assert trainer.state.step == 10 and trainer.state.window == saved.meta["window"]
        for name, tensor in trainer.model.state_dict().items():
            assert torch.equal(tensor.cpu(), saved.weights[name]), name
        carried = trainer.stepper.carried
        assert isinstance(carried, tuple)
        assert torch.equal(carried[0].cpu(), saved.extra["state.h"])
        assert torch.equal(carried[1].cpu(), saved.extra["state.c"])
    except BaseException:
        trainer.release_run()
        raise
    result = trainer.run()
    assert result.steps == 16 and result.stop_reason == "steps"
    assert load_checkpoint(result.last_path).extra["state.h"].dtype == torch.float32

"""Training under torchrun: 2 CPU processes over gloo, each with its share of the streams.

The subprocess tests start real `torchrun` runs (python -m torch.distributed.run), with the CLI
or with tests/distributed_worker.py where an event (Ctrl-C, NaN, a crash) must hit a chosen step.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist

from charrnn.data.batches import StreamBatcher
from charrnn.errors import ConfigError
from charrnn.evaluate import evaluate_ids
from charrnn.model import CharRNN, ModelConfig
from charrnn.store.checkpoint import load_checkpoint, verify_checkpoint
from charrnn.store.runs import BEST, LAST
from charrnn.training.distributed import Team, World, rank_device, world_from_env
from charrnn.training.loop import train
from charrnn.training.options import TrainOptions
from tests.conftest import REPO, TINY_TRAIN, make_text
from tests.test_resume import Recorder, assert_same_checkpoint

needs_gloo = pytest.mark.skipif(
    not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo is not available"
)
WORKER = REPO / "tests" / "distributed_worker.py"


def torchrun(*args: str, cwd: Path, nproc: int = 2, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="100", NO_COLOR="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, timeout=timeout, env=env)


def own_lines(stderr: bytes) -> list[str]:
    """charrnn's lines on stderr, without torchrun's own log lines and tracebacks."""
    return [line for line in stderr.decode().splitlines() if line.startswith("charrnn") or line[:7].strip().isalpha()]


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.txt"
    path.write_text(make_text(600), encoding="utf-8")
    return path


# -- the pieces, in one process ------------------------------------------------------------------


def test_world_comes_from_torchrun_environment() -> None:
    assert world_from_env({}) == World()
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    world = world_from_env(env)
    assert (world.rank, world.size, world.local_rank, world.local_size) == (3, 4, 1, 2)
    assert world.distributed and not world.is_main
    with pytest.raises(ConfigError, match="malformed torchrun environment"):
        world_from_env({**env, "RANK": "x"})
    with pytest.raises(ConfigError, match="inconsistent"):
        world_from_env({**env, "RANK": "4"})


def test_streams_split_evenly_over_ranks() -> None:
    assert [World(r, 4).rows(32) for r in range(4)] == [slice(0, 8), slice(8, 16), slice(16, 24), slice(24, 32)]
    with pytest.raises(ConfigError, match="--batch-size 30 does not split evenly over 4 processes"):
        World(1, 4).rows(30)
    ids = np.arange(10_000, dtype=np.uint16)
    whole = StreamBatcher(ids, 8, 16)
    halves = [StreamBatcher(ids, 8, 16, World(r, 2).rows(8)) for r in range(2)]
    x, y = whole.window(3)
    assert torch.equal(torch.cat([h.window(3)[0] for h in halves]), x)
    assert torch.equal(torch.cat([h.window(3)[1] for h in halves]), y)
    assert halves[0].windows_per_epoch == whole.windows_per_epoch and halves[0].chars_per_window == 8 * 16


def test_a_team_of_one_changes_nothing() -> None:
    team = Team(World(), torch.device("cpu"))
    assert team.agree([0, 1, 5]) == [0, 1, 5] and team.share({"a": 1}) == {"a": 1}
    t = torch.arange(6.0).reshape(1, 2, 3)
    assert team.gather_rows(t, 1) is t and team.sum(t) is t
    assert team.gather_cpu(torch.ones(3, dtype=torch.uint8)).shape == (1, 3)
    team.close()


def test_one_gpu_per_local_rank(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert rank_device(torch.device("cpu"), World(1, 2, 1, 2)) == torch.device("cpu")
    assert rank_device(torch.device("cuda"), World()) == torch.device("cuda")
    with pytest.raises(ConfigError, match="2 processes per node but 1 GPU"):
        rank_device(torch.device("cuda"), World(1, 2, 1, 2))
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert rank_device(torch.device("cuda"), World(3, 4, 1, 2)) == torch.device("cuda", 1)


def test_sharded_validation_sums_to_the_whole() -> None:
    """Three ranks (threads here) each score their chunks, swap end states and agree on one pass."""
    import threading

    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=20, hidden_size=16, embed_size=8, num_layers=1))
    ids = np.random.default_rng(0).integers(0, 20, 20_000).astype(np.uint8)
    whole = evaluate_ids(model, ids, torch.device("cpu"), streams=5, burn_in=2)
    ranks, barrier = 3, threading.Barrier(3)
    posted: dict[int, torch.Tensor] = {}
    results: dict[int, float] = {}

    def collective(rank: int, tensor: torch.Tensor, join: bool) -> torch.Tensor:
        barrier.wait()
        posted[rank] = tensor.clone()
        barrier.wait()
        parts = [posted[r] for r in range(ranks)]
        barrier.wait()
        return torch.cat(parts, dim=1) if join else sum(parts[1:], parts[0])

    def one_rank(rank: int) -> None:
        result = evaluate_ids(  # 5 chunks over 3 ranks: 2, 2 and 1 (+ a padding row)
            model,
            ids,
            torch.device("cpu"),
            streams=5,
            burn_in=2,  # too short a warm-up: the end states must be handed across ranks
            shard=(rank, ranks),
            reduce=lambda t: collective(rank, t, join=False),
            gather=lambda t: collective(rank, t, join=True),
        )
        results[rank] = result.loss

    threads = [threading.Thread(target=one_rank, args=(rank,)) for rank in range(ranks)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    one = evaluate_ids(model, ids, torch.device("cpu"), streams=1)
    assert set(results) == {0, 1, 2}
    for loss in results.values():
        assert loss == pytest.approx(whole.loss, rel=1e-9)
        assert loss == pytest.approx(one.loss, abs=1e-6)


# -- real torchrun runs ----------------------------------------------------------------------------

# gloo on the CPU: two ranks cannot share one GPU (the refusal is tested above), and CI has none
RUN = [*TINY_TRAIN, "--layers", "2", "--dropout", "0", "--dtype", "fp32", "--batch-size", "8", "--device", "cpu", "-q"]


@needs_gloo
def test_two_ranks_train_like_one_and_only_rank_0_writes(corpus: Path, tmp_path: Path) -> None:
    flags = [str(corpus), *RUN, "--steps", "40", "--eval-every", "20"]
    two = torchrun("-m", "charrnn", "train", *flags, "--out", "two", cwd=tmp_path)
    assert two.returncode == 0, two.stderr.decode()[-2000:]
    summary = [line for line in own_lines(two.stderr) if line.startswith("done")]
    assert len(summary) == 1  # rank 1 printed nothing
    one = subprocess.run(
        [sys.executable, "-m", "charrnn", "train", *flags, "--out", "one"],
        cwd=tmp_path,
        capture_output=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert one.returncode == 0, one.stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["one", "two"]
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [
        "best.safetensors",
        "config.json",
        "last.safetensors",
        "metrics.jsonl",
    ]
    a, b = load_checkpoint(tmp_path / "one" / LAST), load_checkpoint(tmp_path / "two" / LAST)
    assert b.meta["world_size"] == 2 and b.extra["rng.torch.ranks"].shape[0] == 2
    assert b.extra["state.h"].shape == a.extra["state.h"].shape  # the whole batch's state, gathered
    for name, weight in a.weights.items():  # 2 ranks x 4 streams = 1 rank x 8 streams, up to summation order
        torch.testing.assert_close(b.weights[name], weight, atol=1e-4, rtol=1e-4)
    losses = [[h["val_loss"] for h in c.meta["history"] if h["event"] == "val"] for c in (a, b)]
    assert len(losses[0]) == 2 and losses[0] == pytest.approx(losses[1], abs=1e-4)
    sampled = subprocess.run(
        [sys.executable, "-m", "charrnn", "sample", "-c", "two", "-l", "40", "--seed", "1"],
        cwd=tmp_path,
        capture_output=True,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert sampled.returncode == 0 and len(sampled.stdout.decode()) == 40


@needs_gloo
def test_two_rank_run_resumes_exactly_and_on_one_rank_with_a_warning(corpus: Path, tmp_path: Path) -> None:
    straight = torchrun(str(WORKER), str(corpus), "straight", "--steps", "20", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr.decode()[-2000:]
    halted = torchrun(str(WORKER), str(corpus), "halves", "--steps", "20", "--stop-at", "10", cwd=tmp_path)
    assert halted.returncode != 0  # torchrun reports the ranks' exit code 130
    assert verify_checkpoint(tmp_path / "halves" / LAST).meta["step"] == 10  # both ranks stopped at step 10
    resumed = torchrun(str(WORKER), str(corpus), "halves", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert_same_checkpoint(tmp_path / "straight" / LAST, tmp_path / "halves" / LAST)
    assert_same_checkpoint(tmp_path / "straight" / BEST, tmp_path / "halves" / BEST)

    recorder = Recorder()  # the same run continued by a single process
    result = train(TrainOptions(corpus=(), resume=str(tmp_path / "straight"), steps=26, threads=1), recorder)
    assert result.steps == 26
    assert any("2 process(es) and goes on with 1" in w and "re-sharded" in w for w in recorder.warnings)


@needs_gloo
def test_errors_only_rank_0_can_see_stop_every_rank_at_once(corpus: Path, tmp_path: Path) -> None:
    """An --out that holds a run (only rank 0 checks it) and stdin (one pipe for all ranks): one line, no hang."""
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / LAST).write_bytes(b"x")
    start = time.monotonic()
    taken = torchrun("-m", "charrnn", "train", str(corpus), *RUN, "--steps", "5", "--out", "taken", cwd=tmp_path)
    assert taken.returncode != 0
    errors = [line for line in own_lines(taken.stderr) if line.startswith("charrnn: error:")]
    assert errors and all("already holds a run" in line for line in errors), taken.stderr.decode()[-2000:]
    piped = torchrun("-m", "charrnn", "train", "-", *RUN, "--steps", "5", cwd=tmp_path)
    assert piped.returncode != 0 and "stdin (-) cannot be shared" in piped.stderr.decode()
    assert time.monotonic() - start < 60  # nobody waited in a collective for a rank that had left


@needs_gloo
def test_nan_on_one_rank_is_skipped_by_all(corpus: Path, tmp_path: Path) -> None:
    proc = torchrun(str(WORKER), str(corpus), "run", "--steps", "12", "--nan-at", "1:5", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    warnings = [line for line in proc.stderr.decode().splitlines() if line.startswith("warning:")]
    assert any("step 5: loss or gradients are NaN/inf; update skipped" in w for w in warnings), warnings
    assert verify_checkpoint(tmp_path / "run" / LAST).meta["step"] == 12


@needs_gloo
def test_a_failing_rank_stops_the_run(corpus: Path, tmp_path: Path) -> None:
    start = time.monotonic()
    proc = torchrun(str(WORKER), str(corpus), "run", "--steps", "100000", "--fail-at", "1:7", cwd=tmp_path)
    assert proc.returncode != 0 and "injected failure on rank 1" in proc.stderr.decode()
    assert time.monotonic() - start < 60  # nobody waited for the dead rank


@needs_gloo
def test_a_full_disk_on_rank_0_stops_every_rank_together(corpus: Path, tmp_path: Path) -> None:
    """Only rank 0 writes; its third failed save in a row must stop the others too, not strand them."""
    start = time.monotonic()
    proc = torchrun(str(WORKER), str(corpus), "run", "--steps", "100000", "--full-disk", cwd=tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode != 0
    assert err.count("TrainingError: could not write") == 2, err[-3000:]  # raised on both ranks
    assert "3 times in a row (No space left on device); stopped at step 9" in err
    assert time.monotonic() - start < 60


@needs_gloo
def test_ctrl_c_stops_every_rank_with_a_checkpoint(corpus: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="100", NO_COLOR="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    command += ["-m", "charrnn", "train", str(corpus), *RUN, "--time", "5m", "--out", "run"]
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )
    deadline = time.monotonic() + 60
    while not (tmp_path / "run" / "config.json").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read().decode() if proc.stderr else ""
        time.sleep(0.05)
    time.sleep(1.0)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does: torchrun and both ranks get it
    _, stderr = proc.communicate(timeout=60)
    stopped = [line for line in own_lines(stderr) if "interrupted: SIGINT at step" in line]
    assert len(stopped) == 1, stderr.decode()[-2000:]  # one message, from rank 0
    step = int(re.search(r"at step (\d+)", stopped[0]).group(1))  # type: ignore[union-attr]
    last = verify_checkpoint(tmp_path / "run" / LAST)
    streams = 8 * last.meta["train_config"]["stream_groups"]  # both ranks' rows of every group
    assert last.meta["step"] == step and last.extra["state.h"].shape[1] == streams

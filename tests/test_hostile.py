"""A hostile tester's checkpoints, files and streams: every command answers with one line and its
documented exit code, and `verify` says ok exactly when `train --resume` can use the file.

Forged files here carry a *valid* digest (recomputed after the change): the digest is an integrity
check, not a signature, so everything past it must be checked by the schema.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import save

from charrnn.store.checkpoint import payload_digest
from charrnn.store.meta import FORMAT, FORMAT_VERSION
from tests.conftest import REPO, TINY_TRAIN, make_text, run_cli
from tests.test_fuzz import assert_one_line, cli

Meta = dict[str, Any]
Tensors = dict[str, torch.Tensor]


def read_raw(path: Path) -> tuple[Meta, Tensors]:
    """The stored metadata JSON and every tensor of a checkpoint, as written."""
    with safe_open(str(path), framework="pt") as handle:
        meta = json.loads(handle.metadata()["meta"])
        tensors = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118
    return meta, tensors


def forge(path: Path, meta: Meta, tensors: Tensors) -> None:
    """Write a checkpoint whose digest matches its (hostile) content."""
    meta_json = json.dumps(meta, sort_keys=True)  # ASCII: \u escapes carry even lone surrogates
    header = {"format": FORMAT, "format_version": str(FORMAT_VERSION)}
    header.update(digest=payload_digest(meta_json, tensors), meta=meta_json)
    path.write_bytes(save({k: v.contiguous() for k, v in tensors.items()}, metadata=header))


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real run directory (LSTM, 2 layers, trained 4 steps) and its corpus, `tiny.txt`."""
    root = tmp_path_factory.mktemp("hostile")
    (root / "tiny.txt").write_text(make_text(), encoding="utf-8")
    args = ["train", str(root / "tiny.txt"), "--out", str(root / "run"), *TINY_TRAIN, "--layers", "2", "--steps", "4"]
    proc = run_cli(*args, "-q")
    assert proc.returncode == 0, proc.stderr.decode()
    return root


# -- the mutations --------------------------------------------------------------------------------

WRONG_VALUES: tuple[Any, ...] = ("abc", 32.0, True, None, -1, 10**12, [], {})


def meta_mutations(meta: Meta) -> list[tuple[str, Callable[[Meta], None]]]:
    """Every field of the metadata (and of model_config) set to each wrong kind of value, or removed."""

    def setter(keys: tuple[str, ...], value: Any) -> Callable[[Meta], None]:
        def apply(target: Meta) -> None:
            for key in keys[:-1]:
                target = target[key]
            if value is REMOVE:
                target.pop(keys[-1], None)
            else:
                target[keys[-1]] = value

        return apply

    fields = [(key,) for key in meta] + [("model_config", key) for key in meta["model_config"]]
    fields += [("train_config", key) for key in meta["train_config"]]
    return [
        (f"{'.'.join(keys)} = {value!r}", setter(keys, value)) for keys in fields for value in (*WRONG_VALUES, REMOVE)
    ]


REMOVE = object()


def tensor_mutations(tensors: Tensors) -> list[tuple[str, Callable[[Tensors], None]]]:
    """Every tensor as another dtype, another shape, or gone; and tensors that should not be there."""

    def change(name: str, how: str) -> Callable[[Tensors], None]:
        def apply(target: Tensors) -> None:
            tensor = target[name]
            if how == "float64":
                target[name] = tensor.double() if tensor.is_floating_point() else tensor.float()
            elif how == "int64":
                target[name] = tensor.long()
            elif how == "shape":
                flat = tensor.reshape(-1)
                target[name] = torch.cat([flat, flat[:1]]) if flat.numel() else torch.zeros(1)
            elif how == "gone":
                del target[name]

        return apply

    def extra(name: str, value: torch.Tensor) -> Callable[[Tensors], None]:
        def apply(target: Tensors) -> None:
            target[name] = value

        return apply

    out = [(f"{name} {how}", change(name, how)) for name in tensors for how in ("float64", "int64", "shape", "gone")]
    out += [
        ("optim.999.exp_avg added", extra("optim.999.exp_avg", torch.zeros(3))),
        ("junk.tensor added", extra("junk.tensor", torch.zeros(3))),
        ("state.c for 4 streams too many", extra("state.c", torch.zeros(2, 8, 16))),
    ]
    return out


def mutated(root: Path, name: str, meta_change: Callable[[Meta], None] | None, tensor_change: Any) -> Path:
    """A copy of the real run whose last checkpoint carries one mutation (digest recomputed)."""
    run = root / name
    shutil.rmtree(run, ignore_errors=True)  # (a copy an earlier example left)
    shutil.copytree(root / "run", run)
    meta, tensors = read_raw(run / "last.safetensors")
    if meta_change is not None:
        meta_change(meta)
    if tensor_change is not None:
        tensor_change(tensors)
    forge(run / "last.safetensors", meta, tensors)
    (run / "best.safetensors").unlink()
    return run


def check_case(run: Path, corpus: Path, monkeypatch: pytest.MonkeyPatch, full: bool) -> tuple[int, int]:
    """verify and train --resume agree; with `full`, info, sample, eval and --init-from stay clean too."""
    last = str(run / "last.safetensors")
    verified, _, verify_err = cli("verify", last, monkeypatch=monkeypatch)
    if verified:
        assert_one_line(verified, verify_err, 3)
    resumed, _, resume_err = cli("train", "--resume", str(run), "--steps", "6", "-q", monkeypatch=monkeypatch)
    if verified == 0:
        assert resumed in (0, 2), resume_err  # 2: a valid file whose stored options conflict
    else:
        assert_one_line(resumed, resume_err, 3)  # what verify refuses, resume refuses the same way
    if full:
        for args in (
            ("info", last),
            ("sample", "-c", last, "--length", "20", "--seed", "1"),
            ("eval", str(corpus), "-c", last),
            ("train", str(corpus), "--init-from", last, "--out", str(run.parent / (run.name + "-ft")), "--steps", "1"),
        ):
            code, out, err = cli(*args, monkeypatch=monkeypatch)
            if code:
                assert_one_line(code, err, 3)
                assert out == "", args
            elif args[0] == "sample":
                assert len(out) == 20, out  # the whole sample, no crash half-way
    return verified, resumed


def sweep(real_run: Path, monkeypatch: pytest.MonkeyPatch, every: int) -> None:
    """Forge each meta field and each tensor (every `every`-th way of mutating it) through verify and resume."""
    monkeypatch.chdir(real_run)
    meta, tensors = read_raw(real_run / "run" / "last.safetensors")
    cases = [(label, change, None) for label, change in meta_mutations(meta)]
    cases += [(label, None, change) for label, change in tensor_mutations(tensors)]
    cases = cases[::every]
    outcomes: dict[int, int] = {}
    failures = []
    for index, (label, meta_change, tensor_change) in enumerate(cases):
        run = mutated(real_run, f"case{index}", meta_change, tensor_change)
        try:
            verified, _ = check_case(run, real_run / "tiny.txt", monkeypatch, full=index % 9 == 0)
            outcomes[verified] = outcomes.get(verified, 0) + 1
        except AssertionError as exc:
            failures.append(f"{label}: {str(exc).splitlines()[0]}")
        except Exception as exc:  # escaped `main`: a traceback for the user
            failures.append(f"{label}: {type(exc).__name__}: {exc}")
        shutil.rmtree(run)
        shutil.rmtree(real_run / f"case{index}-ft", ignore_errors=True)
    assert not failures, "\n".join(failures)
    assert set(outcomes) <= {0, 3} and outcomes.get(3, 0) > len(cases) // 2, outcomes
    print(f"{len(cases)} forged checkpoints: {outcomes.get(3, 0)} refused (exit 3), {outcomes.get(0, 0)} valid")


def test_fields_and_tensors_forged(real_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every 13th mutation of the sweep (the slow test below tries them all)."""
    sweep(real_run, monkeypatch, every=13)


@pytest.mark.slow
def test_every_field_and_tensor_forged_every_way(real_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sweep(real_run, monkeypatch, every=1)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_forgeries_through_every_command(data: st.DataObject, real_run: Path, monkeypatch: Any) -> None:
    """Two to four mutations at once, drawn by hypothesis, through all six commands."""
    monkeypatch.chdir(real_run)
    meta, tensors = read_raw(real_run / "run" / "last.safetensors")
    meta_changes = data.draw(st.lists(st.sampled_from(meta_mutations(meta)), min_size=1, max_size=2))
    tensor_changes = data.draw(st.lists(st.sampled_from(tensor_mutations(tensors)), max_size=2))

    def apply_meta(target: Meta) -> None:
        for _, change in meta_changes:
            # a change that edits inside a record an earlier one replaced (by a number, say) has nothing to edit
            with contextlib.suppress(TypeError, AttributeError, KeyError, IndexError):
                change(target)

    def apply_tensors(target: Tensors) -> None:
        for label, change in tensor_changes:
            name = label.split(" ")[0]
            if name in target or "added" in label:
                change(target)

    run = mutated(real_run, "random", apply_meta, apply_tensors)
    try:
        check_case(run, real_run / "tiny.txt", monkeypatch, full=True)
    finally:
        shutil.rmtree(run)
        shutil.rmtree(real_run / "random-ft", ignore_errors=True)


# -- the classes of the report, one example each ---------------------------------------------------


def forged_copy(real_run: Path, name: str, change: Callable[[Meta, Tensors], None]) -> Path:
    run = real_run / name
    shutil.rmtree(run, ignore_errors=True)
    shutil.copytree(real_run / "run", run)
    meta, tensors = read_raw(run / "last.safetensors")
    change(meta, tensors)
    forge(run / "last.safetensors", meta, tensors)
    (run / "best.safetensors").unlink()
    return run


REPORTED: dict[str, Callable[[Meta, Tensors], None]] = {
    "hidden_size 16.0": lambda m, t: m["model_config"].update(hidden_size=16.0),
    "vocab one short": lambda m, t: m.update(vocab=m["vocab"][:-1]),
    "optimizer a string": lambda m, t: m.update(optimizer="x"),
    "exp_avg of the wrong shape": lambda m, t: t.update({"optim.0.exp_avg": torch.zeros(3, 3)}),
    "float RNG state": lambda m, t: t.update({"rng.torch": t["rng.torch"].float()}),
    "hidden state of another batch": lambda m, t: t.update({"state.h": torch.zeros(2, 5, 16)}),
    "seq_len 16.5": lambda m, t: m["train_config"].update(seq_len=16.5),
    "step abc": lambda m, t: m.update(step="abc"),
    "num_layers 10**8": lambda m, t: m["model_config"].update(num_layers=10**8),
    "duplicate vocab chars": lambda m, t: m.update(vocab=m["vocab"][:-1] + m["vocab"][0]),
}


@pytest.mark.parametrize("name", list(REPORTED))
def test_reported_forgeries_are_one_line_and_exit_3(name: str, real_run: Path, monkeypatch: Any) -> None:
    monkeypatch.chdir(real_run)
    run = forged_copy(real_run, name.replace(" ", "_"), REPORTED[name])
    last = str(run / "last.safetensors")
    for args in (("verify", last), ("train", "--resume", str(run), "--steps", "6")):
        code, out, err = cli(*args, monkeypatch=monkeypatch)
        assert_one_line(code, err, 3)
        assert out == ""


# The child imports charrnn and torch first, then caps its address space 1 GiB above what that
# took: a fixed cap would fail on a CUDA build of torch, whose libraries alone map several GiB.
CAPPED_VERIFY = (
    "import resource, sys, torch; from charrnn.cli.app import main\n"
    "size = int(next(l for l in open('/proc/self/status') if l.startswith('VmSize:')).split()[1]) * 1024\n"
    "resource.setrlimit(resource.RLIMIT_AS, (size + 2**30, size + 2**30))\n"
    "sys.argv = ['charrnn', 'verify', sys.argv[1]]; main()"
)


def verify_under_memory_cap(path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", CAPPED_VERIFY, str(path)], capture_output=True, env=env, timeout=60)


def test_num_layers_bomb_is_refused_within_a_small_memory_limit(real_run: Path) -> None:
    """10**8 layers: refused before anything is sized by it, with 1 GiB of address space to spare."""
    run = forged_copy(real_run, "bomb", REPORTED["num_layers 10**8"])
    proc = verify_under_memory_cap(run / "last.safetensors")
    assert proc.returncode == 3, proc.stderr.decode()
    assert "num_layers" in proc.stderr.decode() and b"Traceback" not in proc.stderr
    assert resource.getrlimit(resource.RLIMIT_AS)  # (the cap applied to the child only)


def test_deeply_nested_header_is_one_line(tmp_path: Path) -> None:
    raw = b"[" * 100_000
    path = tmp_path / "deep.safetensors"
    path.write_bytes(len(raw).to_bytes(8, "little") + raw)
    proc = run_cli("info", str(path))
    assert proc.returncode == 3 and b"Traceback" not in proc.stderr
    assert proc.stderr.decode().count("\n") == 1


def test_huge_foreign_file_is_refused_from_its_first_bytes(tmp_path: Path) -> None:
    """A 4 GiB sparse file of zeros: the header length (0) is refused before the file is read."""
    path = tmp_path / "huge.safetensors"
    with open(path, "wb") as handle:
        handle.truncate(4 * 2**30)
    proc = verify_under_memory_cap(path)
    assert proc.returncode == 3 and b"Traceback" not in proc.stderr, proc.stderr.decode()


@pytest.mark.parametrize("command", ["verify", "info", "sample", "eval", "train"])
def test_fifos_never_hang(command: str, tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    args = {
        "verify": ["verify", str(fifo)],
        "info": ["info", str(fifo)],
        "sample": ["sample", "-c", str(fifo)],
        "eval": ["eval", str(fifo), "-c", str(fifo)],
        "train": ["train", str(fifo), "--steps", "1"],
    }[command]
    proc = run_cli(*args, cwd=tmp_path, timeout=60)  # a hang is a timeout: the test fails
    assert proc.returncode == 3, proc.stderr.decode()
    assert "FIFO" in proc.stderr.decode() and proc.stderr.decode().count("\n") == 1


def test_two_trainers_never_share_a_run_directory(real_run: Path, tmp_path: Path) -> None:
    corpus = real_run / "tiny.txt"
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    base = [sys.executable, "-m", "charrnn", "train", str(corpus), *TINY_TRAIN, "--steps", "400", "-q"]
    same = [subprocess.Popen([*base, "--out", "same"], cwd=tmp_path, env=env, stderr=subprocess.PIPE) for _ in "ab"]
    codes = sorted(proc.wait(timeout=300) for proc in same)
    errors = b"".join(proc.stderr.read() for proc in same if proc.stderr)
    assert codes == [0, 2], errors.decode()  # one trains, the other is told why it may not
    assert b"in use by another charrnn process" in errors or b"already holds a run" in errors
    named = [subprocess.Popen(base, cwd=tmp_path, env=env) for _ in "ab"]
    assert [proc.wait(timeout=300) for proc in named] == [0, 0]
    runs = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert runs == ["tiny", "tiny-2"]  # the default name: each claims its own directory


def test_resume_of_a_running_run_is_refused(real_run: Path, tmp_path: Path) -> None:
    from charrnn.store.lock import RunLock

    shutil.copytree(real_run / "run", tmp_path / "run")
    lock = RunLock.acquire(tmp_path / "run")  # this process is "training" it
    try:
        proc = run_cli("train", "--resume", str(tmp_path / "run"), "--steps", "6")
    finally:
        lock.release()
    assert proc.returncode == 2 and b"in use by another charrnn process" in proc.stderr, proc.stderr.decode()
    assert run_cli("train", "--resume", str(tmp_path / "run"), "--steps", "6", "-q").returncode == 0


def test_disk_full_at_start_is_one_line(real_run: Path, tmp_path: Path, monkeypatch: Any) -> None:
    from tests.test_faults import DiskFull

    monkeypatch.chdir(tmp_path)
    DiskFull(monkeypatch)  # every fsync fails with ENOSPC: config.json is the first write
    code, _, err = cli("train", str(real_run / "tiny.txt"), *TINY_TRAIN, "--steps", "2", monkeypatch=monkeypatch)
    line = assert_one_line(code, err, 1)
    assert "config.json" in line and "No space left" in line


@pytest.mark.parametrize(
    "args",
    [
        ["info", "run"],
        ["verify", "run"],
        ["runs", "."],
        ["eval", "tiny.txt", "-c", "run", "--json"],
        ["plot", "run"],
        ["sample", "-c", "run", "--length", "50"],
    ],
)
def test_full_stdout_is_one_line_and_exit_1(args: list[str], real_run: Path) -> None:
    with open("/dev/full", "wb") as full:
        env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
        proc = subprocess.run(
            [sys.executable, "-m", "charrnn", *args], cwd=real_run, stdout=full, stderr=subprocess.PIPE, env=env
        )
    assert proc.returncode == 1, proc.stderr.decode()
    assert proc.stderr.decode() == "charrnn: error: cannot write the output (No space left on device)\n"


@pytest.mark.parametrize("args", [["info", "run"], ["runs", "."], ["train", "--help"], ["plot", "run"]])
def test_reader_going_away_is_exit_0(args: list[str], real_run: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    for _ in range(3):  # the race between the writer and `head` falls either way: both must be 0
        proc = subprocess.Popen(
            [sys.executable, "-m", "charrnn", *args],
            cwd=real_run,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stdout.read(5)
        proc.stdout.close()
        assert proc.wait(timeout=60) == 0
        assert proc.stderr is not None and proc.stderr.read() == b""


def test_edges_are_refused_alike(real_run: Path, tmp_path: Path) -> None:
    (tmp_path / "one.txt").write_text("a", encoding="utf-8")
    run = str(real_run / "run")
    one = run_cli("eval", str(tmp_path / "one.txt"), "-c", run, "--json")
    assert one.returncode == 3 and one.stdout == b"" and b"at least 2 characters" in one.stderr
    threads = run_cli("sample", "-c", run, "--threads", "100000")
    assert threads.returncode == 2 and b"--threads" in threads.stderr
    for command in (["eval", str(tmp_path / "one.txt"), "-c", run], ["train", str(tmp_path / "one.txt")]):
        proc = run_cli(*command, "--errors", "foo")
        assert proc.returncode == 2 and b"--errors" in proc.stderr, proc.stderr.decode()


def small_tmpfs(tmp_path: Path, free: int) -> Any:
    """A 64 KiB tmpfs filled up to `free` bytes (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "full"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)]).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        fd = os.open(mount / "filler", os.O_WRONLY | os.O_CREAT)
        limit, written = (64 << 10) - free if free else None, 0
        try:
            while limit is None or written < limit:
                if not (count := os.write(fd, b"\0" * 512)):
                    break
                written += count
        except OSError:  # ENOSPC: full
            pass
        finally:
            os.close(fd)
        yield mount
    finally:
        subprocess.run(["umount", str(mount)])


@pytest.fixture
def full_disk(tmp_path: Path) -> Any:
    """A 64 KiB tmpfs, filled to the last byte."""
    yield from small_tmpfs(tmp_path, 0)


@pytest.fixture
def nearly_full_disk(tmp_path: Path) -> Any:
    """A 64 KiB tmpfs with 16 KiB left: room for a temporary directory, not for a copy of much text."""
    yield from small_tmpfs(tmp_path, 16 << 10)


def test_a_really_full_disk_at_start_is_one_line(real_run: Path, full_disk: Path) -> None:
    proc = run_cli("train", str(real_run / "tiny.txt"), *TINY_TRAIN, "--steps", "2", "--out", str(full_disk / "run"))
    lines = proc.stderr.decode().strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr.decode()
    assert lines[0].startswith("charrnn: error: ") and "No space left on device" in lines[0]


def train_from_stdin(stdin: Any, tmp_path: Path, file_limit: int) -> subprocess.CompletedProcess:
    """`charrnn train -` with its temporary copy under `tmp_path` and a file-size limit on the process."""

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, file_limit))

    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1", TMPDIR=str(tmp_path))
    command = [sys.executable, "-m", "charrnn", "train", "-", *TINY_TRAIN, "--steps", "1", "--out", "run"]
    return subprocess.run(
        command, stdin=stdin, capture_output=True, env=env, cwd=tmp_path, preexec_fn=limit, timeout=120
    )


def test_endless_binary_stdin_is_refused_as_it_streams(tmp_path: Path) -> None:
    """`train - < /dev/zero`: refused from the first block, exit 3 (the limit only bounds a copy gone wrong)."""
    with open("/dev/zero", "rb") as zeros:
        proc = train_from_stdin(zeros, tmp_path, 64 << 20)
    line = assert_one_line(proc.returncode, proc.stderr.decode(), 3)
    assert "stdin: looks like a binary file (a NUL byte at byte 0)" in line
    assert not any(tmp_path.glob("charrnn-stdin-*"))  # the temporary copy is gone


def test_stdin_copy_over_the_file_size_limit_names_the_copy(tmp_path: Path) -> None:
    text = tmp_path / "text.txt"
    text.write_bytes(make_text().encode() * 200)  # ~2 MB against a 1 MiB limit
    with open(text, "rb") as stdin:
        proc = train_from_stdin(stdin, tmp_path, 1 << 20)
    line = assert_one_line(proc.returncode, proc.stderr.decode(), 1)
    assert "stdin: cannot keep a temporary copy in" in line and str(tmp_path) in line
    assert "File too large" in line and "ulimit -f" in line and "cannot write the output" not in line


def test_stdin_copy_on_a_full_disk_names_the_copy(nearly_full_disk: Path, tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1", TMPDIR=str(nearly_full_disk))
    command = [sys.executable, "-m", "charrnn", "train", "-", *TINY_TRAIN, "--steps", "1", "--out", "run"]
    text = make_text().encode() * 10  # ~120 KB into 16 KiB
    proc = subprocess.run(command, input=text, capture_output=True, env=env, cwd=tmp_path, timeout=120)
    line = assert_one_line(proc.returncode, proc.stderr.decode(), 1)
    assert f"stdin: cannot keep a temporary copy in {nearly_full_disk}" in line
    assert "No space left on device" in line and "TMPDIR" in line

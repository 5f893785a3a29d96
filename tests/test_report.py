"""What a user sees while training: terminal (pseudo-terminal) vs log-file output, --quiet, NO_COLOR,
and the metrics.jsonl rows behind them."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import pty
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from charrnn.cli.report import PLAIN_EVERY_S, TrainReport, one_line
from charrnn.store.metrics import STABLE_KEYS, metrics_row
from charrnn.training.observer import TrainResult
from tests.conftest import REPO, TINY_TRAIN, make_text, run_cli

ANSI = re.compile(rb"\x1b\[")
COLOR = re.compile(rb"\x1b\[[0-9;]*(?:3[0-7]|9[0-7]|38;[0-9;]+)m")


def banner() -> dict[str, Any]:
    return {
        "corpus": {"sources": ["poems.txt"], "chars": 12_345, "train_chars": 11_000, "val_chars": 1_345},
        "vocab_size": 40,
        "model": {"num_layers": 2, "hidden_size": 16, "cell": "lstm", "embed_size": 8, "dropout": 0.0},
        "parameters": 4_321,
        "device": "cpu",
        "dtype": "fp32",
        "threads": 1,
        "batch_size": 4,
        "seq_len": 16,
        "lr": 0.002,
        "decay": "linear",
        "stream_groups": 16,
        "budget": "100 steps",
        "eval_every": "50 steps",
        "run_dir": "checkpoints/poems",
        "sample": lambda n: ("ab\ncd" * n)[:n],
    }


def log_row(step: int, elapsed: float, loss: float) -> dict[str, Any]:
    return {
        "event": "train",
        "step": step,
        "epoch": step / 100,
        "elapsed_s": elapsed,
        "chars_per_s": 1234.0,
        "lr": 1e-3,
        "train_loss": loss,
        "progress": step / 100,
    }


def result(tmp_path: Path) -> TrainResult:
    return TrainResult(
        run_dir=tmp_path,
        best_path=tmp_path / "best.safetensors",
        last_path=tmp_path / "last.safetensors",
        best_val_loss=1.5,
        steps=100,
        epochs=1.0,
        elapsed_s=12.0,
        chars_per_s=1000.0,
        stop_reason="steps",
    )


def feed(report: TrainReport, tmp_path: Path) -> None:
    report.on_start(banner())
    for i in range(1, 11):  # a log row every second of (simulated) run time
        report.on_log(log_row(i * 10, float(i), 3.0 - i * 0.1))
        if i == 5:
            report.on_eval({"event": "val", "step": 50, "val_loss": 2.0, "best": True})
    report.on_warning("something to know")
    report.on_eval({"event": "val", "step": 100, "val_loss": 1.5, "best": True})
    report.on_end(result(tmp_path))


def test_log_file_output_is_plain_and_throttled(tmp_path: Path) -> None:
    stream = io.StringIO()
    feed(TrainReport(stream=stream), tmp_path)
    text = stream.getvalue()
    assert "\x1b" not in text and "\r" not in text
    steps = [line for line in text.splitlines() if line.startswith("step ")]
    assert len(steps) == math.ceil(10 / PLAIN_EVERY_S)  # ten log rows over 10 s, one line per PLAIN_EVERY_S
    for needle in ("corpus  poems.txt", "4,321 parameters", "1 thread,", "run     checkpoints/poems", "val     step"):
        assert needle in text
    assert "sample  ab⏎cd" in text  # the sample at validation, on one line
    assert "charrnn: warning: something to know" in text
    assert f"-> {tmp_path / 'best.safetensors'}" in text and "1.5000 nats/char" in text
    assert "● val" in text and "· train" in text  # the loss curve in the summary


def test_quiet_shows_only_warnings_and_summary(tmp_path: Path) -> None:
    stream = io.StringIO()
    feed(TrainReport(quiet=True, stream=stream), tmp_path)
    lines = stream.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == ["charrnn:", "done", "best"]


def test_ascii_stream_gets_ascii_chart(tmp_path: Path) -> None:
    raw = io.BytesIO()
    stream = io.TextIOWrapper(raw, encoding="ascii")
    feed(TrainReport(stream=stream), tmp_path)
    stream.flush()
    assert "o val" in raw.getvalue().decode("ascii")


def test_diverged_validation_shows_no_best_and_no_sample(tmp_path: Path) -> None:
    stream = io.StringIO()
    report = TrainReport(stream=stream)
    info = banner()
    info["sample"] = lambda n: 1 / 0  # as sampling from a NaN model would fail
    report.on_start(info)
    report.on_eval({"event": "val", "step": 10, "val_loss": None, "best": True})
    report.on_eval({"event": "val", "step": 20, "val_loss": float("nan"), "best": False})
    text = stream.getvalue()
    assert "loss n/a nats/char" in text and "(best)" not in text and "sample" not in text
    info["sample"] = lambda n: 1 / 0
    report.on_start(info)
    report.on_eval({"event": "val", "step": 30, "val_loss": 2.0, "best": True})
    assert "sample  (no sample: ZeroDivisionError)" in stream.getvalue()
    diverged = TrainReport(stream=io.StringIO())
    diverged.on_eval({"event": "val", "step": 10, "val_loss": None, "best": True})
    diverged.on_end(dataclasses.replace(result(tmp_path), best_val_loss=None))
    assert "diverged" in diverged.stream.getvalue() and "--lr" in diverged.stream.getvalue()


def test_one_line_sample() -> None:
    assert one_line("a\nb\tc\x00", 80) == "a⏎b→c·"
    assert one_line("x" * 50, 10) == "x" * 9 + "…"


def test_metrics_row_has_stable_keys_and_flags_nan() -> None:
    row = metrics_row({"event": "train", "step": 3, "train_loss": float("nan"), "train_bpc": None, "grad_norm": 1.0})
    assert set(STABLE_KEYS) <= set(row)
    assert row["train_loss"] is None and row["bpc"] is None and row["val_loss"] is None
    assert set(row["nonfinite"]) == {"train_loss", "train_bpc"}
    json.dumps(row, allow_nan=False)
    val = metrics_row({"event": "val", "step": 3, "val_loss": 2.0, "val_bpc": 2.0 / math.log(2)})
    assert val["bpc"] == val["val_bpc"] and val["nonfinite"] == [] and val["train_loss"] is None


def test_metrics_file_rows_share_keys(trained_run: Path) -> None:
    rows = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    assert {r["event"] for r in rows} == {"train", "val"}
    for row in rows:
        assert set(STABLE_KEYS) | {"nonfinite"} <= set(row)
        assert row["bpc"] == (row["train_bpc"] if row["event"] == "train" else row["val_bpc"])
        assert math.isclose(row["bpc"], (row["train_loss"] or row["val_loss"]) / math.log(2))


def test_sample_hook_leaves_training_untouched(corpus_file: Path, tmp_path: Path) -> None:
    import torch

    from charrnn.training.describe import banner
    from charrnn.training.loop import Trainer
    from charrnn.training.options import TrainOptions

    options = TrainOptions(
        corpus=(str(corpus_file),), out=str(tmp_path / "r"), hidden_size=16, embed_size=8, batch_size=4, seq_len=16
    )
    trainer = Trainer(options)
    sampler = banner(trainer.parts, trainer.state)["sample"]
    rng = torch.get_rng_state()
    text = sampler(40)
    assert len(text) == 40 and set(text) <= set(make_text())
    assert torch.equal(rng, torch.get_rng_state())  # the global RNG (dropout, resume) is not disturbed
    assert trainer.model.training
    assert sampler(40) == text  # seeded: the same model gives the same line


# -- the real CLI on a pseudo-terminal and on a pipe ------------------------------------------


def run_on_pty(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[bytes, bytes, int]:
    """Run the CLI with stderr on a pseudo-terminal (100 columns); returns (stderr, stdout, code)."""
    import fcntl
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 100, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "charrnn", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    stdout = proc.stdout.read() if proc.stdout else b""
    return b"".join(chunks), stdout, proc.wait(timeout=120)


TRAIN_ARGS = ["train", "tiny.txt", "--steps", "200", "--eval-every", "100", *TINY_TRAIN]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "tiny.txt").write_text(make_text(), encoding="utf-8")
    return tmp_path


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TERM", "COLUMNS")}
    return {**env, "PYTHONPATH": str(REPO), "TERM": "xterm-256color", **extra}


def test_terminal_gets_live_progress_in_colour(work: Path) -> None:
    err, out, code = run_on_pty(TRAIN_ARGS, work, cli_env())
    assert code == 0, err.decode(errors="replace")
    assert out == b""
    assert ANSI.search(err) and COLOR.search(err)
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err.decode())
    needles = ("corpus", "model", "budget  200 steps", "step 200/200", "chars/s", "ETA", "100%", "sample", "(best)")
    for needle in (*needles, "done"):
        assert needle in text, needle
    assert "\x1b[?25h" in err.decode()  # the cursor is shown again


def test_no_color_on_a_terminal(work: Path) -> None:
    err, _, code = run_on_pty(TRAIN_ARGS, work, cli_env(NO_COLOR="1"))
    assert code == 0, err.decode(errors="replace")
    assert not COLOR.search(err)
    assert b"done" in err


def test_pipe_gets_no_control_characters(work: Path) -> None:
    proc = run_cli(*TRAIN_ARGS, cwd=work)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"\x1b" not in proc.stderr and b"\r" not in proc.stderr
    text = proc.stderr.decode()
    assert "step    200" in text and "sample  " in text and "· train" in text


def test_quiet_cli(work: Path) -> None:
    proc = run_cli(*TRAIN_ARGS, "--quiet", cwd=work)
    assert proc.returncode == 0, proc.stderr.decode()
    assert [line.split()[0] for line in proc.stderr.decode().splitlines()] == ["done", "best"]

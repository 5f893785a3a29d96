"""`charrnn repl`: the session logic directly, then the real command through stdin and a pty."""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from charrnn.sampling.controls import RunSettings, SampleSettings
from charrnn.sampling.generate import generate
from charrnn.sampling.repl import Continuation, Message, Quit, Session
from charrnn.store.checkpoint import load_checkpoint, load_model
from tests.conftest import REPO, run_cli


def session(run_dir: Path, **kwargs: object) -> Session:
    ckpt = load_checkpoint(run_dir / "best.safetensors")
    return Session(load_model(ckpt), ckpt.vocab, **kwargs)  # type: ignore[arg-type]


def reply(s: Session, line: str) -> str:
    answer = s.handle(line)
    assert isinstance(answer, Continuation), answer
    return "".join(answer.chunks)


def test_commands_change_the_settings(trained_run: Path) -> None:
    s = session(trained_run)
    assert s.handle(":temp 0.5") == Message("temp 0.5") and s.settings.temperature == 0.5
    assert s.handle(":length 30") == Message("length 30") and len(reply(s, "the ")) == 30
    assert s.handle(":seed 9") == Message("seed 9") and s.seed == 9
    assert s.handle(":seed") == Message("seed random") and s.seed is None
    assert "temp 0.5  length 30  seed random" in s.handle(":show").text  # type: ignore[union-attr]
    assert ":reset" in s.handle(":help").text  # type: ignore[union-attr]
    assert isinstance(s.handle(":quit"), Quit)


@pytest.mark.parametrize("line", [":temp -1", ":temp hot", ":length 0", ":length", ":seed x", ":warp 9"])
def test_bad_commands_are_messages_not_crashes(trained_run: Path, line: str) -> None:
    s = session(trained_run)
    answer = s.handle(line)
    assert isinstance(answer, Message) and ("error" in answer.text or "unknown" in answer.text)
    assert s.settings == SampleSettings() and s.length == 200


def test_prime_outside_vocab_is_a_message(trained_run: Path) -> None:
    answer = session(trained_run).handle("QQ")
    assert isinstance(answer, Message) and "'Q'" in answer.text


def test_replies_build_on_the_conversation_until_reset(trained_run: Path) -> None:
    ckpt = load_checkpoint(trained_run / "best.safetensors")
    model, vocab = load_model(ckpt), ckpt.vocab
    s = session(trained_run, length=40, seed=3)
    first = reply(s, "the cat")
    run = RunSettings(length=40, seed=3)
    assert first == "".join(generate(model, vocab, "the cat", SampleSettings(), run))  # first reply: seed 3
    second = reply(s, "a dog")  # primed by the whole conversation, seed 4
    run = RunSettings(length=40, seed=4)
    assert second == "".join(generate(model, vocab, "the cat" + first + "\na dog", SampleSettings(), run))
    assert s.handle(":reset") == Message("context cleared")
    run = RunSettings(length=40, seed=5)
    assert reply(s, "a dog") == "".join(generate(model, vocab, "a dog", SampleSettings(), run))


def test_set_changes_any_control_as_its_flag_does(trained_run: Path) -> None:
    ckpt = load_checkpoint(trained_run / "best.safetensors")
    model, vocab = load_model(ckpt), ckpt.vocab
    s = session(trained_run, length=40, seed=3)
    assert s.handle(":set top-k 1").text == "top-k 1" and s.settings.top_k == 1  # type: ignore[union-attr]
    assert s.handle(":set --top-p 0.9").text == "top-p 0.9" and s.settings.top_p == 0.9  # type: ignore[union-attr]
    assert "top-k 1" in s.handle(":show").text and "top-p 0.9" in s.handle(":show").text  # type: ignore[union-attr]
    greedy = "".join(generate(model, vocab, "the cat", SampleSettings(temperature=0), RunSettings(length=40)))
    assert reply(s, "the cat") == greedy  # top-k 1 is the argmax, whatever the seed
    assert s.handle(":set top-k").text == "top-k None" and s.settings.top_k is None  # type: ignore[union-attr]
    answer = s.handle(":set top-p 0")
    assert answer == Message("error: --top-p must be in (0, 1], got 0.0") and s.settings.top_p == 0.9
    assert s.handle(":set warp 9") == Message("unknown control 'warp'; :set lists them")
    assert "top-k" in s.handle(":set").text  # type: ignore[union-attr]


def test_repl_through_stdin(trained_run: Path) -> None:
    lines = ":temp 0\n:length 25\nthe cat\n:nope\n\n:quit\nnever read\n"
    proc = run_cli("repl", "-c", str(trained_run), input=lines.encode())
    assert proc.returncode == 0, proc.stderr.decode()
    # a reply is its prime line echoed (stdin is not a terminal), the continuation, and a newline
    greedy = "".join(
        generate(*session_parts(trained_run), "the cat", SampleSettings(temperature=0), RunSettings(length=25))
    )
    assert proc.stdout.decode().startswith("the cat" + greedy + "\n")
    stderr = proc.stderr.decode()
    assert "temp 0.0" in stderr and "length 25" in stderr and "unknown command :nope" in stderr
    assert "never read" not in proc.stdout.decode()


def session_parts(run_dir: Path) -> tuple:
    ckpt = load_checkpoint(run_dir / "best.safetensors")
    return load_model(ckpt), ckpt.vocab


def read_until(fd: int, needle: bytes, timeout: float = 60) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while needle not in data and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                data += os.read(fd, 4096)
            except OSError:
                break
    return data


@pytest.mark.skipif(sys.platform == "win32", reason="needs a pseudo-terminal")
def test_repl_in_a_terminal(trained_run: Path) -> None:
    """Through a pty: a prompt appears, a typed line gets a reply, Ctrl-D leaves cleanly."""
    import pty

    leader, follower = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(REPO), NO_COLOR="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "charrnn", "repl", "-c", str(trained_run), "--length", "12", "--seed", "1"],
        stdin=follower, stdout=follower, stderr=follower, env=env, close_fds=True,
    )  # fmt: skip
    os.close(follower)
    try:
        assert b"> " in read_until(leader, b"> ")
        os.write(leader, b"the \n")
        shown = read_until(leader, b"\n> ")
        settings = SampleSettings(temperature=0.8)  # the repl's default
        run = RunSettings(length=12, seed=1)
        expected = "".join(generate(*session_parts(trained_run), "the ", settings, run))
        # the terminal echoes the typed line; the reply follows on its own line (newlines shown as CRLF)
        assert shown.startswith(b"the \r\n" + expected.replace("\n", "\r\n").encode() + b"\r\n")
        os.write(leader, b"\x04")  # Ctrl-D
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(leader)

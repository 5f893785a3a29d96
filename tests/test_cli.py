"""End to end through the real CLI in a subprocess: train -> sample -> eval -> info, and the errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_TRAIN, make_text, run_cli


def assert_clean_error(proc: subprocess.CompletedProcess, code: int, *needles: str) -> str:
    stderr = proc.stderr.decode()
    assert proc.returncode == code, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("charrnn: error: ")
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert proc.stdout == b""
    return lines[0]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`charrnn train` run once through the CLI; cwd is the returned directory."""
    work = tmp_path_factory.mktemp("cli")
    (work / "tiny.txt").write_text(make_text(), encoding="utf-8")
    proc = run_cli("train", "tiny.txt", "--steps", "30", *TINY_TRAIN, cwd=work)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b""  # progress and banners belong on stderr
    stderr = proc.stderr.decode()
    assert "corpus" in stderr and "val" in stderr and "done" in stderr
    return work


def test_train_creates_run_under_checkpoints(cli_run: Path) -> None:
    run = cli_run / "checkpoints" / "tiny"
    assert (run / "best.safetensors").is_file() and (run / "last.safetensors").is_file()
    config = json.loads((run / "config.json").read_text())
    assert config["command"].startswith("charrnn train tiny.txt")


def test_sample_defaults_to_newest_run_and_streams_only_text(cli_run: Path) -> None:
    proc = run_cli("sample", "--temp", "0.8", "--length", "120", "--seed", "3", cwd=cli_run)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b""
    text = proc.stdout.decode("utf-8")
    assert len(text) == 120
    assert set(text) <= set(make_text())
    again = run_cli("sample", "--temp", "0.8", "--length", "120", "--seed", "3", cwd=cli_run)
    assert again.stdout == proc.stdout


def test_sample_prime_is_printed_first(cli_run: Path) -> None:
    proc = run_cli("sample", "-c", "checkpoints/tiny", "--prime", "the ", "--length", "10", "--top-k", "3", cwd=cli_run)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout.decode().startswith("the ") and len(proc.stdout.decode()) == 14


def test_sample_into_head_exits_quietly(cli_run: Path) -> None:
    cmd = f"{sys.executable} -m charrnn sample --temp 0.8 --length 20000 | head -c 100"
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd], cwd=cli_run, capture_output=True, env={"PYTHONPATH": str(REPO)}
    )
    assert len(proc.stdout) == 100
    assert proc.stderr == b""
    assert proc.returncode == 0


def test_eval_text_and_json(cli_run: Path) -> None:
    text = run_cli("eval", "tiny.txt", "-c", "checkpoints/tiny/best.safetensors", cwd=cli_run)
    assert text.returncode == 0, text.stderr.decode()
    assert "nats/char" in text.stdout.decode() and "perplexity" in text.stdout.decode()
    proc = run_cli("eval", "tiny.txt", "--json", cwd=cli_run)
    result = json.loads(proc.stdout)
    assert set(result) == {"loss", "bpc", "perplexity", "chars"}
    assert result["chars"] == len(make_text()) - 1
    assert 0 < result["loss"] < 4.0


def test_info_text_and_json(cli_run: Path) -> None:
    proc = run_cli("info", "checkpoints/tiny/best.safetensors", "--json", cwd=cli_run)
    assert proc.returncode == 0, proc.stderr.decode()
    info = json.loads(proc.stdout)
    assert info["model"]["hidden_size"] == 16 and info["vocab_size"] == len(set(make_text()))
    assert info["parameters"] > 0 and info["step"] == 30 and info["best_val_loss"] > 0
    text = run_cli("info", cwd=cli_run).stdout.decode()
    assert "parameters" in text and "best val" in text


def test_help_and_version() -> None:
    assert run_cli("--help").returncode == 0
    version = run_cli("--version")
    assert version.returncode == 0 and version.stdout.decode().startswith("charrnn ")
    for command in ("train", "sample", "eval", "info", "corpus"):
        assert run_cli(command, "--help").returncode == 0


# -- errors: one line on stderr, documented exit code, no traceback ---------------------------


def test_missing_corpus(tmp_path: Path) -> None:
    assert_clean_error(run_cli("train", "nope.txt", cwd=tmp_path), 3, "nope.txt", "not found")


def test_empty_corpus(tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    assert_clean_error(run_cli("train", "empty.txt", cwd=tmp_path), 3, "empty")


def test_unreadable_corpus(tmp_path: Path) -> None:
    path = tmp_path / "secret.txt"
    path.write_text("x" * 1000)
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as a user who can read any file (root)")
        proc = run_cli("train", "secret.txt", cwd=tmp_path)
    finally:
        path.chmod(0o644)
    assert_clean_error(proc, 3, "secret.txt", "permission denied")


def test_binary_corpus(tmp_path: Path) -> None:
    (tmp_path / "img.txt").write_bytes(b"\x89PNG\x00\x00" + bytes(range(256)))
    assert_clean_error(run_cli("train", "img.txt", cwd=tmp_path), 3, "binary")


def test_corpus_shorter_than_a_window(tmp_path: Path) -> None:
    (tmp_path / "short.txt").write_text("hello world")
    assert_clean_error(run_cli("train", "short.txt", "--seq-len", "64", cwd=tmp_path), 3, "--seq-len")


def test_invalid_utf8_then_replace(tmp_path: Path) -> None:
    (tmp_path / "latin.txt").write_bytes(make_text().encode() + b"caf\xe9\n" + make_text().encode())
    line = assert_clean_error(run_cli("train", "latin.txt", *TINY_TRAIN, "--steps", "2", cwd=tmp_path), 3)
    assert f"byte {len(make_text().encode()) + 3}" in line and "--errors replace" in line
    ok = run_cli("train", "latin.txt", *TINY_TRAIN, "--steps", "2", "--errors", "replace", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr.decode()


def test_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("just some text, not a model")
    assert_clean_error(run_cli("sample", "-c", "notes.txt", cwd=tmp_path), 3, "not a charrnn checkpoint")


def test_corrupted_checkpoint(cli_run: Path, tmp_path: Path) -> None:
    data = bytearray((cli_run / "checkpoints" / "tiny" / "best.safetensors").read_bytes())
    data[-10] ^= 0x01
    (tmp_path / "bad.safetensors").write_bytes(bytes(data))
    assert_clean_error(run_cli("info", "bad.safetensors", cwd=tmp_path), 3, "corrupted")
    assert_clean_error(run_cli("sample", "-c", "bad.safetensors", cwd=tmp_path), 3, "corrupted")


def test_no_checkpoint_anywhere(tmp_path: Path) -> None:
    assert_clean_error(run_cli("sample", cwd=tmp_path), 3, "charrnn train")


def test_bad_sampling_values(cli_run: Path) -> None:
    assert_clean_error(run_cli("sample", "--temp", "-1", cwd=cli_run), 2, "--temp")
    assert_clean_error(run_cli("sample", "--top-p", "0", cwd=cli_run), 2, "--top-p")
    assert_clean_error(run_cli("sample", "--top-p", "1.5", cwd=cli_run), 2, "--top-p")


def test_prime_outside_vocab(cli_run: Path) -> None:
    assert_clean_error(run_cli("sample", "--prime", "QQ€", cwd=cli_run), 3, "'Q'", "'€'")


def test_bad_duration(tmp_path: Path, corpus_file: Path) -> None:
    assert_clean_error(run_cli("train", str(corpus_file), "--time", "soon", cwd=tmp_path), 2, "90s")


def test_stdin_corpus(tmp_path: Path) -> None:
    proc = run_cli("train", "-", *TINY_TRAIN, "--steps", "3", cwd=tmp_path, input=make_text().encode())
    assert proc.returncode == 0, proc.stderr.decode()
    assert (tmp_path / "checkpoints" / "stdin" / "best.safetensors").is_file()


# -- sample: priming, stopping, many samples, formats, pipes ----------------------------------


def sample_out(cli_run: Path, *args: str, input: bytes | None = None) -> str:
    proc = run_cli("sample", "-c", "checkpoints/tiny", "--temp", "0.8", *args, cwd=cli_run, input=input)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stderr == b""
    return proc.stdout.decode("utf-8")


def test_sample_prime_file_and_stdin(cli_run: Path) -> None:
    (cli_run / "prime.txt").write_text("the dog\n", encoding="utf-8")
    from_file = sample_out(cli_run, "--prime-file", "prime.txt", "--length", "30", "--seed", "4")
    from_stdin = sample_out(cli_run, "--prime-file", "-", "--length", "30", "--seed", "4", input=b"the dog\n")
    from_flag = sample_out(cli_run, "--prime", "the dog\n", "--length", "30", "--seed", "4")
    assert from_file == from_stdin == from_flag
    assert from_file.startswith("the dog\n") and len(from_file) == len("the dog\n") + 30
    bare = sample_out(cli_run, "--prime", "the dog\n", "--length", "30", "--seed", "4", "--no-include-prime")
    assert from_file == "the dog\n" + bare


def test_sample_prime_errors(cli_run: Path) -> None:
    assert_clean_error(run_cli("sample", "--prime", "a", "--prime-file", "x.txt", cwd=cli_run), 2, "--prime-file")
    assert_clean_error(run_cli("sample", "--prime-file", "missing.txt", cwd=cli_run), 3, "missing.txt")
    (cli_run / "latin1.txt").write_bytes(b"caf\xe9")
    assert_clean_error(run_cli("sample", "--prime-file", "latin1.txt", cwd=cli_run), 3, "UTF-8")
    assert_clean_error(run_cli("sample", "--format", "yaml", cwd=cli_run), 2, "--format")
    assert_clean_error(run_cli("sample", "--stop", "", cwd=cli_run), 2, "--stop")


def test_sample_stop_keep_and_drop(cli_run: Path) -> None:
    args = ("--prime", "the ", "--length", "400", "--seed", "2", "--no-include-prime")
    free = sample_out(cli_run, *args)
    kept = sample_out(cli_run, *args, "--stop", "\n", "--stop", ".")
    dropped = sample_out(cli_run, *args, "--stop", "\n", "--stop", ".", "--no-keep-stop")
    cut = min(i for i in (free.find("\n"), free.find(".")) if i >= 0) + 1
    assert kept == free[:cut] and dropped == free[: cut - 1]


def test_sample_many_text_and_jsonl(cli_run: Path) -> None:
    text = sample_out(cli_run, "-n", "3", "--prime", "a ", "--length", "40", "--seed", "11")
    jsonl = sample_out(cli_run, "-n", "3", "--prime", "a ", "--length", "40", "--seed", "11", "--format", "jsonl")
    records = [json.loads(line) for line in jsonl.splitlines()]
    assert [r["index"] for r in records] == [0, 1, 2] and [r["seed"] for r in records] == [11, 12, 13]
    assert all(r["text"].startswith("a ") and len(r["text"]) == 42 for r in records)
    separators = ["" if r["text"].endswith("\n\n") else "\n" if r["text"].endswith("\n") else "\n\n" for r in records]
    assert text == records[0]["text"] + separators[0] + records[1]["text"] + separators[1] + records[2]["text"]
    # any one sample is reproduced alone by its seed, and whichever engine computes it
    alone = sample_out(cli_run, "--prime", "a ", "--length", "40", "--seed", "12", "--engine", "module")
    assert alone == records[1]["text"]


def test_sample_into_grep_exits_quietly(cli_run: Path) -> None:
    cmd = f"{sys.executable} -m charrnn sample --temp 0.8 --length 200000 --seed 1 | grep -m1 the"
    proc = subprocess.run(
        ["bash", "-o", "pipefail", "-c", cmd], cwd=cli_run, capture_output=True, env={"PYTHONPATH": str(REPO)}
    )
    assert proc.returncode == 0 and proc.stderr == b""
    assert b"the" in proc.stdout and proc.stdout.count(b"\n") == 1


def test_sample_writes_utf8_whatever_the_locale(tmp_path: Path) -> None:
    import torch

    from charrnn.model import CharRNN, ModelConfig
    from charrnn.store.checkpoint import save_checkpoint
    from charrnn.vocab import Vocab

    vocab = Vocab.from_text("héllo wörld €→\n")
    torch.manual_seed(0)
    model = CharRNN(ModelConfig(vocab_size=vocab.size, hidden_size=8, embed_size=4))
    save_checkpoint(tmp_path / "u.safetensors", model.config, vocab, model.state_dict())
    env = dict(os.environ, PYTHONPATH=str(REPO), LC_ALL="C", LANG="C", PYTHONIOENCODING="ascii")
    proc = subprocess.run(
        [sys.executable, "-m", "charrnn", "sample", "-c", "u.safetensors", "--prime", "€→", "--length", "50"],
        cwd=tmp_path, capture_output=True, env=env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode("utf-8")
    assert out.startswith("€→") and len(out) == 52 and set(out) <= set(vocab.chars)


def test_sample_advanced_options(cli_run: Path) -> None:
    int8 = sample_out(cli_run, "--weights", "int8", "--threads", "1", "--length", "50", "--seed", "3")
    assert len(int8) == 50 and set(int8) <= set(make_text())
    assert_clean_error(run_cli("sample", "--engine", "module", "--weights", "int8", cwd=cli_run), 2, "--weights")
    assert_clean_error(run_cli("sample", "--weights", "fp8", cwd=cli_run), 2, "--weights")
    assert_clean_error(run_cli("sample", "--engine", "warp", cwd=cli_run), 2, "engine")
    assert_clean_error(run_cli("sample", "--threads", "0", cwd=cli_run), 2, "--threads")
    assert_clean_error(run_cli("sample", "-n", "0", cwd=cli_run), 2, "--num-samples")


def test_text_output_separates_samples_by_one_blank_line() -> None:
    from charrnn.cli.output import text_output
    from charrnn.sampling.generate import Piece

    pieces = [Piece(0, "ab"), Piece(0, "c", True), Piece(1, "d\n", True), Piece(2, "e\n\n", True), Piece(3, "f", True)]
    assert "".join(text_output("> ", iter(pieces))) == "> abc\n\n> d\n\n> e\n\n> f"


def test_train_on_directory_skips_binary_file_with_one_warning(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    (docs / ".git").mkdir(parents=True)
    (docs / ".git" / "index").write_bytes(b"\x00DIRC")
    (docs / "a.txt").write_text(make_text(200), encoding="utf-8")
    (docs / "b.md").write_text(make_text(200), encoding="utf-8")
    (docs / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00")
    proc = run_cli("train", "docs", "--steps", "2", "--out", "run", "--quiet", *TINY_TRAIN, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b""
    warnings = [line for line in proc.stderr.decode().splitlines() if "warning" in line]
    assert warnings == [f"charrnn: warning: skipped {Path('docs') / 'logo.png'}: not text, binary (NUL bytes)"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert [Path(s).name for s in config["corpus"]["sources"]] == ["a.txt", "b.md"]

"""Hostile inputs: broken and foreign checkpoints, odd corpora, absurd flag values, and properties.

Every checkpoint case must end as one line `charrnn: error: ...`, exit 3, no traceback and no code
run; every corpus must either train or fail with a clear error; every absurd flag must be refused.
"""

from __future__ import annotations

import io
import json
import pickle
import random
import struct
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charrnn.errors import CheckpointError, ConfigError, CorpusError, InputError
from charrnn.sampling.controls import RunSettings, SampleSettings
from charrnn.sampling.generate import generate
from charrnn.store.checkpoint import (
    FORMAT_VERSION,
    load_checkpoint,
    parse_checkpoint,
    payload_digest,
    save_checkpoint,
    verify_checkpoint,
)
from charrnn.training.loop import Trainer
from charrnn.vocab import Vocab
from tests.conftest import make_text, run_cli, tiny_options
from tests.test_checkpoint import write_tiny
from tests.test_cli import assert_clean_error


def cli(*args: str, monkeypatch: pytest.MonkeyPatch) -> tuple[int, str, str]:
    """The CLI's `main` in this process (fast); an exception escaping it would be a traceback."""
    from charrnn.cli.app import main

    monkeypatch.setattr(sys, "argv", ["charrnn", *args])
    out, err = io.TextIOWrapper(io.BytesIO(), encoding="utf-8"), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as exited:
        main()
    out.flush()
    return int(exited.value.code or 0), out.buffer.getvalue().decode(), err.getvalue()  # type: ignore[attr-defined]


def assert_one_line(code: int, err: str, expected: int) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == expected, err
    assert len(lines) == 1 and lines[0].startswith("charrnn: error: "), err
    return lines[0]


# -- checkpoints ------------------------------------------------------------------------------


class Payload:
    """Unpickling this creates `marker`: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (Path.touch, (self.marker,))


def hostile_files(root: Path, good: Path, marker: Path) -> dict[str, Path]:
    """Named hostile checkpoint files (and one directory) built from a good checkpoint `good`."""
    data = good.read_bytes()
    files: dict[str, bytes] = {
        "zero-length": b"",
        "seven bytes": data[:7],
        "truncated header": data[:200],
        "truncated tensors": data[: len(data) - 13],
        "flipped tensor byte": data[:-20] + bytes([data[-20] ^ 0x04]) + data[-19:],
        "pickle payload": pickle.dumps(Payload(marker)),
        "random bytes": random.Random(7).randbytes(4096),
        "text": b"hello, I am not a model\n",
        "header length bomb": struct.pack("<Q", 2**62) + b"{}",
        "header not JSON": struct.pack("<Q", 8) + b"\xff\xfe{[}]\x00\x01",
        "header a list": struct.pack("<Q", 2) + b"[]",
        "future version": data.replace(
            f'"format_version":"{FORMAT_VERSION}"'.encode(), f'"format_version":"{FORMAT_VERSION + 1}"'.encode()
        ),
        "newline in header": with_newline(data),
    }
    buffer = io.BytesIO()
    torch.save({"weights": torch.zeros(3), "payload": Payload(marker)}, buffer)
    files["torch pickle"] = buffer.getvalue()
    files["forged offsets"] = forged(offsets=[0, 10**12])
    files["forged huge model"] = forged(model_config={"vocab_size": 4, "hidden_size": 10**9})
    files["forged meta list"] = forged(meta="[1, 2]")
    paths = {}
    for name, content in files.items():
        path = root / (name.replace(" ", "_") + ".safetensors")
        path.write_bytes(content)
        paths[name] = path
    (root / "a_directory").mkdir()
    paths["directory"] = root / "a_directory"
    return paths


def with_newline(data: bytes) -> bytes:
    """Same JSON with one newline added: only the whitespace check notices (offsets are header-relative)."""
    (size,) = struct.unpack("<Q", data[:8])
    header = data[8 : 8 + size].replace(b',"', b',\n"', 1)
    return struct.pack("<Q", len(header)) + header + data[8 + size :]


def forged(offsets: list[int] | None = None, model_config: dict | None = None, meta: str | None = None) -> bytes:
    """A charrnn-looking file with a *valid* digest but hostile content: a digest is no signature."""
    tensor = torch.zeros(4)
    if meta is None:
        meta = json.dumps({"model_config": model_config or {"vocab_size": 4}, "vocab": "abcd"})
    header = {
        "__metadata__": {
            "format": "charrnn-checkpoint",
            "format_version": str(FORMAT_VERSION),
            "digest": payload_digest(meta, {"model.w": tensor}),
            "meta": meta,
        },
        "model.w": {"dtype": "F32", "shape": [4], "data_offsets": offsets or [0, 16]},
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + tensor.numpy().tobytes()


COMMANDS = [
    ("verify", "{}"),
    ("info", "{}"),
    ("sample", "-c", "{}", "--length", "5"),
    ("eval", "tiny.txt", "-c", "{}"),
    ("train", "--resume", "{}"),
    ("train", "tiny.txt", "--init-from", "{}", "--steps", "1"),
]


def test_hostile_checkpoints_through_every_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.txt").write_text(make_text(), encoding="utf-8")
    marker = tmp_path / "PWNED"
    write_tiny(tmp_path / "good.safetensors")
    files = hostile_files(tmp_path, tmp_path / "good.safetensors", marker)
    marker.unlink(missing_ok=True)  # torch.save does not run the payload, but be sure
    cases = 0
    for name, path in files.items():
        for command in COMMANDS:
            args = [part.format(path) for part in command]
            code, out, err = cli(*args, monkeypatch=monkeypatch)
            line = assert_one_line(code, err, 3)
            assert str(path) in line or "--resume" in line, (name, line)
            assert out == "", (name, args)
            cases += 1
    assert not marker.exists(), "a checkpoint ran code"
    assert not (tmp_path / "checkpoints").exists()  # no run was started from a bad file
    assert cases == len(files) * len(COMMANDS) >= 100


def test_pickle_payload_never_runs_in_a_real_process(tmp_path: Path) -> None:
    marker = tmp_path / "PWNED"
    (tmp_path / "evil.pt").write_bytes(pickle.dumps(Payload(marker)))
    for args in (["verify", "evil.pt"], ["train", "--resume", "evil.pt"]):
        assert_clean_error(run_cli(*args, cwd=tmp_path), 3, "not a charrnn checkpoint")
    assert not marker.exists()


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("fuzz") / "m.safetensors"
    write_tiny(path)
    return path.read_bytes()


def sampled_offsets(size: int, count: int = 250) -> list[int]:
    """The first 64 offsets (length prefix and header start), then `count` seeded random ones."""
    rng = random.Random(size)
    return sorted(set(range(min(64, size))) | set(rng.sample(range(size), min(count, size))))


def test_truncations_are_caught(tiny_checkpoint: bytes, tmp_path: Path) -> None:
    path = tmp_path / "cut.safetensors"
    for size in sampled_offsets(len(tiny_checkpoint)):
        path.write_bytes(tiny_checkpoint[:size])
        with pytest.raises(CheckpointError):
            load_checkpoint(path)


def test_byte_flips_are_caught(tiny_checkpoint: bytes, tmp_path: Path) -> None:
    """Sampled offsets flipped with a random mask (every offset and bit: the slow tests below)."""
    path = tmp_path / "flip.safetensors"
    rng = random.Random(0)
    for offset in sampled_offsets(len(tiny_checkpoint)):
        data = bytearray(tiny_checkpoint)
        data[offset] ^= rng.randrange(1, 256)
        path.write_bytes(bytes(data))
        with pytest.raises(CheckpointError):
            load_checkpoint(path)


@pytest.mark.slow
def test_every_truncation_is_caught(tiny_checkpoint: bytes) -> None:
    for size in range(len(tiny_checkpoint)):
        with pytest.raises(CheckpointError):
            parse_checkpoint(tiny_checkpoint[:size], "m")


@pytest.mark.slow
def test_every_bit_flip_is_caught(tiny_checkpoint: bytes) -> None:
    for offset in range(len(tiny_checkpoint)):
        for bit in range(8):
            data = bytearray(tiny_checkpoint)
            data[offset] ^= 1 << bit
            with pytest.raises(CheckpointError):
                parse_checkpoint(bytes(data), "m")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=512))
def test_arbitrary_bytes_are_refused(tmp_path: Path, blob: bytes) -> None:
    path = tmp_path / "blob.safetensors"
    path.write_bytes(blob)
    with pytest.raises(CheckpointError):
        verify_checkpoint(path)


# -- corpora ----------------------------------------------------------------------------------


def corpus_cases() -> dict[str, tuple[bytes, dict[str, object], str | None]]:
    """name -> (file bytes, extra options, None if it must train else a phrase of the expected error)."""
    text = make_text().encode()
    return {
        "binary": (b"\x89PNG\r\n\x1a\n\x00\x00" + bytes(range(256)) * 8, {}, "binary"),
        "NUL bytes": (text[:100] + b"\x00" + text, {}, "binary"),
        "NUL far into the file": (text * 7 + b"\x00" + text, {}, f"NUL byte at byte {len(text) * 7}"),
        "invalid UTF-8": (text + b"caf\xe9" + text, {}, "invalid UTF-8"),
        "invalid UTF-8, replaced": (text + b"caf\xe9" + text, {"errors": "replace"}, None),
        "BOM": (b"\xef\xbb\xbf" + text, {}, None),
        "CRLF": (text.replace(b"\n", b"\r\n"), {}, None),
        "one huge line": (text.replace(b"\n", b" ") * 3, {}, None),
        "a single repeated char": (b"a" * 5000, {}, None),
        "hundreds of distinct chars": ("".join(chr(0x400 + i % 600) for i in range(20000)).encode(), {}, None),
        "astral chars": (("🙂 ok 𝄞 fine\n" * 600).encode(), {}, None),
        "shorter than a window": (b"hello world", {}, "--seq-len"),
        "one char": (b"x", {}, "--seq-len"),
        "only a BOM": (b"\xef\xbb\xbf", {}, "empty"),
        "whitespace only": (b" \n\t " * 400, {}, None),
        "too short for the batch": (b"abcdefghij" * 5, {"batch_size": 64}, "--batch-size"),
        "lone surrogate bytes": (text + b"\xed\xa0\x80" + text, {}, "invalid UTF-8"),
        "overlong encoding": (text + b"\xc0\xaf" + text, {}, "invalid UTF-8"),
    }


@pytest.mark.parametrize("name", list(corpus_cases()))
def test_hostile_corpus(tmp_path: Path, name: str) -> None:
    data, extra, error = corpus_cases()[name]
    path = tmp_path / "corpus.txt"
    path.write_bytes(data)
    options = tiny_options(path, tmp_path / "run", **{"steps": 2, "val_frac": 0.1, **extra})
    if error is not None:
        with pytest.raises(CorpusError, match=error):
            Trainer(options).run()
        return
    trainer = Trainer(options)
    result = trainer.run()
    ckpt = verify_checkpoint(result.last_path)
    expected = data.decode("utf-8", str(extra.get("errors", "strict"))).removeprefix("\ufeff")
    assert ckpt.vocab.chars == "".join(sorted(set(expected)))
    assert ckpt.vocab.decode(trainer.parts.corpus.ids) == expected  # trained on exactly the text
    sample = "".join(generate(load_model_of(result.last_path), ckpt.vocab, run=RunSettings(length=50, seed=1)))
    assert len(sample) == 50 and set(sample) <= set(ckpt.vocab.chars)


def load_model_of(path: Path) -> torch.nn.Module:
    from charrnn.store.checkpoint import load_model

    return load_model(load_checkpoint(path))


# -- absurd flag values -----------------------------------------------------------------------

ABSURD_TRAIN: list[tuple[list[str], int]] = [
    *[
        (flags, 2)
        for flags in (
            ["--hidden", "0"],
            ["--hidden", "-3"],
            ["--hidden", "1000000000"],
            ["--layers", "0"],
            ["--layers", "100000000"],
            ["--embed", "0"],
            ["--embed", "1000000000"],
            ["--dropout", "-0.1"],
            ["--dropout", "1"],
            ["--dropout", "nan"],
            ["--batch-size", "0"],
            ["--seq-len", "0"],
            ["--lr", "0"],
            ["--lr", "-1"],
            ["--lr", "nan"],
            ["--lr", "inf"],
            ["--grad-clip", "-1"],
            ["--grad-clip", "nan"],
            ["--weight-decay", "-1"],
            ["--weight-decay", "inf"],
            ["--val-frac", "-0.1"],
            ["--val-frac", "0.99"],
            ["--val-frac", "nan"],
            ["--val-max-chars", "0"],
            ["--time", "0"],
            ["--time", "-5m"],
            ["--time", "inf"],
            ["--time", "nan"],
            ["--time", "forever"],
            ["--steps", "0"],
            ["--steps", "-1"],
            ["--epochs", "0"],
            ["--epochs", "-2"],
            ["--epochs", "nan"],
            ["--epochs", "inf"],
            ["--patience", "0"],
            ["--eval-every", "0"],
            ["--eval-every", "-5"],
            ["--eval-every", "inf"],
            ["--save-every", "0"],
            ["--save-every", "soon"],
            ["--save-every", "nan"],
            ["--threads", "0"],
            ["--threads", "100000000"],
            ["--seed", str(2**80)],
            ["--hidden", "abc"],
            ["--steps", "1.5"],
            ["--cell", "transformer"],
            ["--device", "tpu"],
            ["--dtype", "fp8"],
            ["--errors", "shrug"],
        )
    ],
    (["--batch-size", "1000000000"], 3),  # valid alone, but the corpus cannot fill it: a data error
    (["--seq-len", "1000000000"], 3),
]


def test_absurd_train_flags_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.txt").write_text(make_text(), encoding="utf-8")
    for flags, expected in ABSURD_TRAIN:
        # --steps 1 first (a later flag wins), so a value that slipped through would not train for long
        code, out, err = cli("train", "tiny.txt", "--steps", "1", "--threads", "1", *flags, monkeypatch=monkeypatch)
        line = assert_one_line(code, err, expected)
        assert flags[0] in line, (flags, line)  # the message names the flag that is wrong
        assert out == ""
    assert not any((tmp_path / "checkpoints").glob("*/last.safetensors"))


def test_absurd_sample_flags(trained_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for flags in (
        ["--length", "-1"],
        ["--top-k", "0"],
        ["--top-p", "nan"],
        ["--top-p", "-1"],
        ["--temp", "nan"],
        ["--temp", "-0.5"],
        ["--length", "abc"],
        ["--seed", "-1"],
        ["--temp", "1e300"],  # temperatures are declared up to 100
        ["--min-p", "1.5"],
        ["--repetition-penalty", "0"],
    ):
        code, out, err = cli("sample", "-c", str(trained_run), *flags, monkeypatch=monkeypatch)
        assert_one_line(code, err, 2)
        assert out == ""
    code, out, err = cli("sample", "-c", str(trained_run), "--top-p", "0", monkeypatch=monkeypatch)
    assert err == "charrnn: error: --top-p must be in (0, 1], got 0.0\n" and code == 2 and out == ""
    for flags in (
        ["--top-k", "1000000000"],
        ["--temp", "100"],
        ["--temp", "1e-30"],
        ["--temp", "1e-300"],
        ["--top-p", "1e-300"],
    ):
        code, out, err = cli("sample", "-c", str(trained_run), "--length", "20", *flags, monkeypatch=monkeypatch)
        assert code == 0 and err == "", (flags, err)
        assert len(out) == 20 and set(out) <= set(make_text()), flags


def test_seed_out_of_range_is_a_usage_error(trained_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = cli("sample", "-c", str(trained_run), "--seed", str(2**80), monkeypatch=monkeypatch)
    assert_one_line(code, err, 2)
    assert out == ""


def test_length_zero_and_prime_outside_vocab(trained_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code, out, err = cli("sample", "-c", str(trained_run), "--length", "0", "--prime", "the", monkeypatch=monkeypatch)
    assert code == 0 and out == "the" and err == ""
    for prime in ("Ω", "\x00", "the 🙂", "\ufeff"):
        code, out, err = cli("sample", "-c", str(trained_run), "--prime", prime, monkeypatch=monkeypatch)
        assert_one_line(code, err, 3)
        assert out == ""


# -- properties -------------------------------------------------------------------------------

VOCAB = Vocab("\n !,.?abcdefghijklmnopqrstuvwxyz")


@given(st.text(alphabet=VOCAB.chars))
def test_vocab_round_trips_text_it_covers(text: str) -> None:
    assert VOCAB.decode(VOCAB.encode(text)) == text


@given(st.text(min_size=1).filter(lambda t: any(c not in VOCAB.chars for c in t)))
def test_vocab_names_what_it_lacks(text: str) -> None:
    with pytest.raises(InputError) as error:
        VOCAB.encode(text)
    first_missing = sorted(c for c in set(text) if c not in VOCAB.chars)[0]
    assert repr(first_missing) in str(error.value)


@pytest.fixture(scope="module")
def sample_model(trained_run: Path) -> tuple[torch.nn.Module, Vocab]:
    ckpt = load_checkpoint(trained_run / "best.safetensors")
    return load_model_of(trained_run / "best.safetensors"), ckpt.vocab


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    temperature=st.just(0.0) | st.floats(1e-300, 5.0),
    top_k=st.none() | st.integers(1, 60),
    top_p=st.none() | st.floats(0.01, 1.0, allow_subnormal=False),
    seed=st.integers(0, 2**32),
    prime=st.text(alphabet="the cat sat\n", max_size=8),
    length=st.integers(0, 40),
)
def test_samples_are_vocab_only_and_seeded(
    sample_model: tuple[torch.nn.Module, Vocab],
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    seed: int,
    prime: str,
    length: int,
) -> None:
    model, vocab = sample_model
    options = SampleSettings(temperature=temperature, top_k=top_k, top_p=top_p)
    run = RunSettings(length=length, seed=seed)
    first = "".join(generate(model, vocab, prime, options, run))
    assert len(first) == length and set(first) <= set(vocab.chars)
    assert "".join(generate(model, vocab, prime, options, run)) == first


def test_settings_refuse_nan() -> None:
    with pytest.raises(ConfigError):
        SampleSettings(temperature=float("nan"))


def test_hostile_files_forged_with_valid_digest_are_refused(tmp_path: Path) -> None:
    """Sanity check of the forger: the digest is right, so only the content checks catch these."""
    path = tmp_path / "forged.safetensors"
    path.write_bytes(forged())
    with pytest.raises(CheckpointError, match=r"do not match|malformed checkpoint metadata"):
        verify_checkpoint(path)
    ckpt_path = tmp_path / "ok.safetensors"
    write_tiny(ckpt_path)
    save_checkpoint(tmp_path / "again.safetensors", *ckpt_fields(ckpt_path))
    verify_checkpoint(tmp_path / "again.safetensors")


def ckpt_fields(path: Path) -> tuple:
    ckpt = load_checkpoint(path)
    return ckpt.config, ckpt.vocab, ckpt.weights, ckpt.meta, ckpt.extra

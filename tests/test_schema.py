"""The checkpoint metadata schema (store.schema, store.meta): every nested record is declared, a forged
value is refused by its field path in one line, and every checkpoint an earlier release wrote still
verifies, samples and resumes."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from charrnn.store.schema import SchemaError, integer, list_of, number, optional, record, text
from tests.conftest import make_text, run_cli
from tests.test_fuzz import assert_one_line, cli
from tests.test_hostile import Meta, Tensors, forged_copy, real_run  # noqa: F401 (a fixture)

OLD = Path(__file__).parent / "data" / "old_checkpoints"


def test_a_rule_names_the_path_of_the_first_bad_value() -> None:
    row = record({"step": integer(0), "loss": optional(number())}, required=("step",))
    rows = list_of(row, max_len=3)
    assert rows([{"step": 1, "loss": None}, {"step": 2, "loss": 1.5}], "history") == [
        {"step": 1, "loss": None},
        {"step": 2, "loss": 1.5},
    ]
    cases: list[tuple[Any, str]] = [
        ([{"step": 1}, 5], "history[1]: expected an object"),
        ([{"step": -1}], "history[0].step: expected a whole number from 0"),
        ([{"step": True}], "history[0].step: expected a whole number"),
        ([{"loss": 1.0}], "history[0].step: missing"),
        ([{"step": 1, "loss": float("nan")}], "history[0].loss: expected a finite number"),
        ([{"step": 1, "extra": 1}], "history[0].extra: not a field charrnn writes"),
        ([{"step": 1}] * 4, "history: expected a list of 0 to 3 items"),
        ("rows", "history: expected a list"),
    ]
    for value, message in cases:
        with pytest.raises(SchemaError, match=message.replace("[", r"\[").replace("]", r"\]")):
            rows(value, "history")
    with pytest.raises(SchemaError, match="lone surrogate"):
        text()("a\ud800", "vocab")


# Classes the tester found, several forgeries each: all refused by `verify`, `sample`, `info` and
# `train --resume` with one line, exit 3, and the path of the field.
FORGED: dict[str, tuple[Callable[[Meta, Tensors], None], str]] = {
    "vocab with a lone surrogate": (lambda m, t: m.update(vocab=m["vocab"][:-1] + "\udfff"), "vocab"),
    "vocab with a high surrogate": (lambda m, t: m.update(vocab="\ud800" + m["vocab"][1:]), "vocab"),
    "param group a number": (lambda m, t: m["optimizer"].update(param_groups=[5, 6]), "optimizer.param_groups[0]"),
    "param group a list": (lambda m, t: m["optimizer"]["param_groups"].__setitem__(1, []), "param_groups[1]"),
    "params not a list": (lambda m, t: m["optimizer"]["param_groups"][0].update(params="0"), "params"),
    "params negative": (lambda m, t: m["optimizer"]["param_groups"][0].update(params=[-1]), "params[0]"),
    "a group setting an object": (lambda m, t: m["optimizer"]["param_groups"][0].update(lr={}), "param_groups[0].lr"),
    "history of numbers": (lambda m, t: m.update(history=[1, 2, 3]), "history[0]"),
    "history row without step": (lambda m, t: m["history"].append({"event": "val"}), "step: missing"),
    "history row of junk": (lambda m, t: m["history"].append({"event": "val", "step": 1, "x": 1}), ".x"),
    "history loss a string": (lambda m, t: m["history"][0].update(val_loss="low"), "val_loss"),
    "window 10**18": (lambda m, t: m.update(window=10**18), "window"),
    "window past the epoch": (lambda m, t: m.update(window=10**6), "window"),
    "best step after the step": (lambda m, t: m.update(best_step=m["step"] + 5), "best_step"),
    "corpus digest not hex": (lambda m, t: m["corpus"].update(digest="z" * 64), "corpus.digest"),
    "corpus sources empty": (lambda m, t: m["corpus"].update(sources=[]), "corpus.sources"),
    "corpus chars negative": (lambda m, t: m["corpus"].update(chars=-1), "corpus.chars"),
    "versions an object": (lambda m, t: m["versions"].update(torch={}), "versions.torch"),
    "model dropout nan": (lambda m, t: m["model_config"].update(dropout=float("nan")), "model_config.dropout"),
    "model cell unknown": (lambda m, t: m["model_config"].update(cell="transformer"), "model_config.cell"),
    "options lr a word": (lambda m, t: m["options"].update(lr="fast"), "options.lr"),
    "world size 0": (lambda m, t: m.update(world_size=0), "world_size"),
}


@pytest.mark.parametrize("name", list(FORGED))
def test_forged_records_are_refused_by_their_path(name: str, real_run: Path, monkeypatch: Any) -> None:  # noqa: F811
    change, path = FORGED[name]
    monkeypatch.chdir(real_run)
    run = forged_copy(real_run, "schema_" + name.replace(" ", "_").replace("*", ""), change)
    last = str(run / "last.safetensors")
    for args in (("verify", last), ("train", "--resume", str(run), "--steps", "6")):
        code, out, err = cli(*args, monkeypatch=monkeypatch)
        line = assert_one_line(code, err, 3)
        assert path in line and out == "", (args, line)


def test_every_forgery_class_is_refused_by_sample_and_info(real_run: Path, monkeypatch: Any) -> None:  # noqa: F811
    monkeypatch.chdir(real_run)
    for name in ("vocab with a lone surrogate", "param group a number", "history of numbers", "corpus digest not hex"):
        run = forged_copy(real_run, "load_" + name.replace(" ", "_"), FORGED[name][0])
        for args in (("sample", "-c", str(run / "last.safetensors"), "--length", "5"), ("info", str(run))):
            code, out, err = cli(*args, monkeypatch=monkeypatch)
            assert FORGED[name][1] in assert_one_line(code, err, 3) and out == "", (name, args)


@pytest.mark.parametrize("name", sorted(p.name for p in OLD.glob("*.safetensors")))
def test_checkpoints_of_earlier_releases_verify_sample_and_resume(name: str, tmp_path: Path) -> None:
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(make_text(), encoding="utf-8")  # the text they were trained on
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(OLD / name, run / "last.safetensors")
    verified = run_cli("verify", str(run / "last.safetensors"))
    assert verified.returncode == 0, verified.stderr.decode()
    sampled = run_cli("sample", "-c", str(run / "last.safetensors"), "--length", "40", "--seed", "1")
    assert sampled.returncode == 0 and len(sampled.stdout.decode()) >= 40, sampled.stderr.decode()
    resumed = run_cli("train", str(corpus), "--resume", str(run), "--steps", "6", "--device", "cpu", "-q")
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert b"resuming" in resumed.stderr or b"done" in resumed.stderr


def test_free_text_a_run_really_writes_is_never_too_long_to_read_back(real_run: Path, monkeypatch: Any) -> None:  # noqa: F811
    """A command line over 700 long file names, a long --doc-separator: written, so readable."""

    def long_texts(meta: Meta, tensors: Tensors) -> None:
        meta["command"] = "charrnn train " + " ".join(f"{'x' * 100}-{i}.txt" for i in range(1000))
        meta["corpus"]["separator"] = "=" * 5000

    monkeypatch.chdir(real_run)
    run = forged_copy(real_run, "long_texts", long_texts)
    code, out, err = cli("verify", str(run / "last.safetensors"), monkeypatch=monkeypatch)
    assert code == 0 and "ok" in out, err


def test_an_option_that_is_not_utf8_is_one_line(tmp_path: Path) -> None:
    corpus = tmp_path / "tiny.txt"
    corpus.write_text(make_text(), encoding="utf-8")
    bad = os.fsdecode(bytes(tmp_path) + b"/run\xff")
    proc = run_cli("train", str(corpus), "--out", bad, "--steps", "1", "--hidden", "8", "--threads", "1")
    assert proc.returncode == 2 and b"Traceback" not in proc.stderr, proc.stderr.decode()
    assert "--out" in proc.stderr.decode() and "UTF-8" in proc.stderr.decode()
    assert not os.path.exists(bad)

"""The step-by-step cells match the fused layers; streamed correlations match a direct computation;
features; naming units; bad units on the command line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_cli
from insight_models import random_model, save

from charrnn.errors import ConfigError
from charrnn.insight.cells import Stepper
from charrnn.insight.features import builtin_features, feature_matrix, parse_feature, regex_values
from charrnn.insight.neurons import record, unit_columns, window_states
from charrnn.insight.units import UnitRef, parse_unit
from charrnn.vocab import Vocab

CPU = torch.device("cpu")
VOCAB = Vocab.from_text('\n "#()ABab01:')


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_stepper_matches_the_fused_layers(cell: str) -> None:
    model = random_model(cell, VOCAB, hidden=12, layers=2)
    ids = torch.randint(0, VOCAB.size, (3, 40), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out, _ = model.rnn(model.embed(ids))
    stepper = Stepper(model, keep_gates=True)
    first, second = stepper.run(ids[:, :17]), stepper.run(ids[:, 17:])  # state carried across windows
    top = torch.cat([first[-1].h, second[-1].h], dim=1)
    assert torch.allclose(top, out, atol=1e-5)
    assert (first[0].c is not None) == (cell == "lstm")
    for gate in first[0].gates.values():
        assert gate.min() >= 0 and gate.max() <= 1


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_streamed_correlation_equals_direct(cell: str) -> None:
    text = ('ab "AB" (a (b)) #01\n  a: "b"\n' * 60)[:1500]
    model = random_model(cell, VOCAB, hidden=8, layers=2, seed=3)
    ids = VOCAB.encode(text)
    names, values = feature_matrix(text)
    report = record(model, ids, CPU, (names, values), trace=(UnitRef(1, "h", 3),), gates=True)
    states = window_states(Stepper(model).run(torch.from_numpy(ids.astype(np.int64))[None]))[0].numpy()
    assert report.chars == len(text)
    assert report.units == unit_columns(model)
    for j, name in enumerate(names):
        for u in range(len(report.units)):
            direct = np.corrcoef(states[:, u], values[:, j])[0, 1]
            assert report.corr[u, j] == pytest.approx(direct, abs=1e-4), (name, u)
    column = report.units.index(UnitRef(1, "h", 3))
    assert np.allclose(report.traces[UnitRef(1, "h", 3)], states[:, column], atol=1e-6)
    assert {g.gate for g in report.gates} == ({"input", "forget", "output"} if cell == "lstm" else {"reset", "update"})
    assert all(0 <= g.left <= 1 and 0 <= g.right <= 1 and g.left + g.right <= 1 for g in report.gates)


def test_builtin_features() -> None:
    text = 'x = f("a", [1])  # "q"\n    Bb\n'
    f = builtin_features(text)
    at = text.index
    assert f["quotes"][at('"a')] == 1 and f["quotes"][at('a"')] == 1 and f["quotes"][at('",')] == 0
    assert f["brackets"][at("[")] == 2 and f["brackets"][at("1")] == 2 and f["brackets"][at("  #")] == 0
    assert f["comment"][at("#")] == 1 and f["comment"][at("q")] == 1 and f["comment"][at("Bb")] == 0
    assert f["indent"][at("Bb")] == 4 and f["indent"][0] == 0
    assert f["line_pos"][at("Bb")] == 4 and f["line_pos"][0] == 0
    assert f["after_newline"][at("    Bb")] == 1 and f["after_newline"].sum() == 1
    assert f["upper"].sum() == 1 and f["digit"].sum() == 1
    assert f["word_start"][at("Bb")] == 1 and f["word_start"][at("b\n")] == 0 and f["in_word"][at("b\n")] == 1


def test_regex_features() -> None:
    feature = parse_feature("vowel=[ae]+")
    assert regex_values("xaaeyb", feature).tolist() == [0, 1, 1, 1, 0, 0]
    assert regex_values("AB: x\nCD: y", parse_feature("who=^[A-Z]+:")).tolist() == [1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0]
    for bad in ("novalue", "=x", "quotes=a", "bad=(", "sp ace=a"):
        with pytest.raises(ConfigError):
            parse_feature(bad)


def test_parse_unit() -> None:
    lstm = random_model("lstm", VOCAB, hidden=8, layers=2).config
    gru = random_model("gru", VOCAB, hidden=8, layers=2).config
    assert parse_unit("1:7", lstm) == UnitRef(1, "h", 7)
    assert parse_unit("0:c:3", lstm) == UnitRef(0, "c", 3)
    for spec, config in (("2:0", lstm), ("0:8", lstm), ("0:c:1", gru), ("x", lstm), ("0:q:1", lstm), ("-1:2", lstm)):
        with pytest.raises(ConfigError):
            parse_unit(spec, config)


def test_bad_units_on_the_command_line(tmp_path: Path) -> None:
    gru = save(random_model("gru", VOCAB, hidden=8, layers=2), VOCAB, tmp_path / "gru.safetensors")
    lstm = save(random_model("lstm", VOCAB, hidden=8, layers=2), VOCAB, tmp_path / "lstm.safetensors")
    for ckpt, unit, words in ((gru, "0:c:1", "no cell state"), (lstm, "0:8", "out of range"), (lstm, "5:1", "layer")):
        result = run_cli("neurons", "ab ab", "-c", str(ckpt), "--unit", unit)
        assert result.returncode == 2, result.stderr
        err = result.stderr.decode()
        assert err.count("\n") == 1 and err.startswith("charrnn: error: ") and words in err
    unknown = run_cli("neurons", "ab z", "-c", str(lstm))
    assert unknown.returncode == 3 and "'z'" in unknown.stderr.decode()
    ok = run_cli("neurons", "ab z", "-c", str(gru), "--unknown", "skip", "--unit", "1:2")
    assert ok.returncode == 0, ok.stderr
    assert b"\x1b" not in ok.stdout and b"unit 1:h:2" in ok.stdout

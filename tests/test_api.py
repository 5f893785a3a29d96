"""The Python API: charrnn.load() -> Model.generate / .evaluate, and charrnn.train()."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

import charrnn
from charrnn.errors import CheckpointError, ConfigError, InputError
from tests.conftest import REPO, make_text


def test_import_is_cheap() -> None:
    code = "import sys, charrnn; charrnn.load; charrnn.train; print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, env={"PYTHONPATH": str(REPO)})
    assert proc.stdout.decode().strip() == "False", proc.stderr.decode()


@pytest.fixture(scope="module")
def model(trained_run: Path) -> charrnn.Model:
    return charrnn.load(trained_run)


def test_load_run_dir_or_file(trained_run: Path, model: charrnn.Model) -> None:
    assert model.path.endswith("best.safetensors")
    assert model.config.hidden_size == 32 and set(model.vocab) == set(make_text())
    assert model.meta["step"] == model.meta["best_step"]
    last = charrnn.load(trained_run / "last.safetensors")
    assert last.meta["kind"] == "last" and "32" in repr(last)
    with pytest.raises(CheckpointError, match="not found"):
        charrnn.load(trained_run / "missing.safetensors")


def test_generate_string_and_stream(model: charrnn.Model) -> None:
    text = model.generate(prime="the ", length=50, temperature=0.8, seed=5)
    assert text.startswith("the ") and len(text) == 54
    assert set(text) <= set(make_text())
    assert model.generate(prime="the ", length=50, temperature=0.8, seed=5) == text
    chunks = list(model.generate(prime="the ", length=50, temperature=0.8, seed=5, stream=True))
    assert len(chunks) > 2 and chunks[0] == "the " and "".join(chunks) == text
    greedy = model.generate(length=30, temperature=0, seed=1)
    assert greedy == model.generate(length=30, temperature=0, seed=2)  # argmax ignores the seed
    top1 = model.generate(length=30, top_k=1, seed=3)
    assert top1 == greedy  # top-k 1 is greedy


def test_generate_rejects_bad_arguments_before_any_text(model: charrnn.Model) -> None:
    with pytest.raises(ConfigError, match=r"^temperature= must be between 0 and 100, got -1\.0$"):
        model.generate(temperature=-1.0)
    with pytest.raises(ConfigError, match=r"^top_p= must be in \(0, 1\], got 0\.0$"):
        model.generate(top_p=0.0, stream=True)
    with pytest.raises(InputError, match="'Q'"):
        model.generate(prime="Q")
    with pytest.raises(TypeError, match="unknown control 'temprature'; did you mean 'temperature'"):
        model.generate(temprature=0.5)
    with pytest.raises(TypeError, match="samples"):
        model.generate(num_samples=2)


def test_samples_are_each_seed_alone(model: charrnn.Model) -> None:
    """samples(num_samples=N, seed=S) gives the texts generate() gives for seeds S, S+1, ..., with their facts."""
    found = model.samples(prime="the ", num_samples=3, length=40, temperature=0.8, seed=5)
    assert [s.seed for s in found] == [5, 6, 7]
    for sample in found:
        assert sample.text == model.generate(prime="the ", length=40, temperature=0.8, seed=sample.seed)
        assert sample.chars == 40 and sample.finish_reason == "length"
        assert sample.logprob is not None and sample.logprob < 0


def test_evaluate(model: charrnn.Model) -> None:
    from charrnn.evaluate import evaluate_ids

    text = make_text(40)
    result = model.evaluate(text)
    assert result.chars == len(text) - 1
    assert math.isclose(result.bpc, result.loss / math.log(2))
    expected = evaluate_ids(model.module, model.checkpoint.vocab.encode(text), model.device)
    assert math.isclose(result.loss, expected.loss)
    assert result.loss < math.log(len(model.vocab))  # better than uniform after training
    with pytest.raises(InputError, match="never saw"):
        model.evaluate("ZZZ")
    with pytest.raises(InputError, match="at least 2"):
        model.evaluate("a")


def test_train_takes_cli_option_names(corpus_file: Path, tmp_path: Path) -> None:
    result = charrnn.train(
        corpus_file,
        out=tmp_path / "run",
        layers=1,
        hidden=12,
        embed=4,
        batch_size=4,
        seq_len=16,
        steps=8,
        eval_every=4,
        threads=1,
    )
    assert result.steps == 8 and result.run_dir == tmp_path / "run"
    model = charrnn.load(result.run_dir)
    assert (model.config.num_layers, model.config.hidden_size, model.config.embed_size) == (1, 12, 4)
    assert (
        model.meta["command"].startswith(f"charrnn.train({str(corpus_file)!r}") and "hidden=12" in model.meta["command"]
    )
    timed = charrnn.train([corpus_file], out=tmp_path / "t", hidden=8, batch_size=4, seq_len=16, time=1.5, threads=1)
    assert timed.stop_reason == "time"
    assert charrnn.load(timed.best_path).meta["train_config"]["time_s"] == 1.5


def test_train_unknown_option_suggests(corpus_file: Path) -> None:
    with pytest.raises(TypeError, match="did you mean 'hidden'"):
        charrnn.train(corpus_file, hiden=8)


def test_train_stays_callable_after_submodule_import(corpus_file: Path, tmp_path: Path) -> None:
    import charrnn.api
    import charrnn.training.loop as train_module

    assert isinstance(train_module.Trainer, type)  # the training package is importable...
    assert charrnn.train is charrnn.api.train  # ...and does not shadow the API function
    result = charrnn.train(corpus_file, out=tmp_path / "r", hidden=8, batch_size=4, seq_len=16, steps=2, threads=1)
    assert result.steps == 2


def test_train_kwargs_is_the_option_declarations() -> None:
    """charrnn.train's typed options (charrnn.train_kwargs) name every declared option, with the type
    its declaration implies, so a type checker and the declarations cannot disagree."""
    import typing
    from pathlib import Path

    from charrnn.train_kwargs import TrainKwargs
    from charrnn.training.options import SPECS, Kind, default_of

    hints = typing.get_type_hints(TrainKwargs)
    expected_keys = {(spec.flag or name).replace("-", "_") for name, spec in SPECS.items()}
    assert set(hints) == expected_keys
    plain = {Kind.INT: {int}, Kind.FLOAT: {float}, Kind.DURATION: {str, float}, Kind.INTERVAL: {int, str, float}}
    for name, spec in SPECS.items():
        key = (spec.flag or name).replace("-", "_")
        allowed = set(typing.get_args(hints[key])) or {hints[key]}
        assert (type(None) in allowed) == (default_of(name) is None), name
        allowed.discard(type(None))
        if spec.kind is Kind.CHOICE:
            assert spec.choices is not None
            literal = next(a for a in allowed if typing.get_origin(a) is typing.Literal)
            assert set(typing.get_args(literal)) == {member.value for member in spec.choices}, name
            assert allowed - {literal} == {spec.choices}, name
        elif spec.kind is Kind.TEXT:
            assert allowed <= {str, Path} and str in allowed, name
        else:
            assert allowed == plain[spec.kind], name


def test_help_of_generate_lists_every_control() -> None:
    import inspect

    from charrnn.sampling.controls import CONTROLS, DEFAULTS

    for method in (charrnn.Model.generate, charrnn.Model.samples):
        parameters = inspect.signature(method).parameters
        assert all(parameters[name].default == DEFAULTS[name] for name in CONTROLS)

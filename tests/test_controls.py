"""The generation controls: their one declaration (parsing, messages, the docs table), the seeded
uniforms, and what each control does to the text."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import charrnn
from charrnn.errors import ConfigError
from charrnn.sampling import rng
from charrnn.sampling.controls import CONTROLS, RunSettings, SampleSettings, build, docs_table, parse_value
from charrnn.sampling.engine import Engine, Row
from charrnn.sampling.pick import adjust, choose, compile_settings
from charrnn.sampling.steppers import make_stepper
from charrnn.sampling.torch_backend import feed_prime, repeat_state
from tests.conftest import run_cli

DOCS = Path(__file__).resolve().parents[1] / "docs" / "sampling.md"


def test_the_docs_table_is_the_declarations() -> None:
    text = DOCS.read_text(encoding="utf-8")
    table = re.search(r"<!-- controls-table.*?-->\n(.*?)<!-- /controls-table -->", text, re.S)
    assert table is not None
    assert table.group(1) == docs_table()


def test_every_control_is_a_flag_and_every_served_one_has_a_field() -> None:
    flags = [spec.flag for spec in CONTROLS.values()]
    assert all(flags) and len(set(flags)) == len(flags)
    fields = [name for spec in CONTROLS.values() for name in (spec.api, *spec.api_aliases) if name]
    assert len(set(fields)) == len(fields)
    assert {"temperature", "top_p", "min_p", "logit_bias", "guided_regex", "best_of", "max_tokens"} <= set(fields)


def test_messages_name_the_flag_or_the_field_the_user_wrote() -> None:
    with pytest.raises(ConfigError, match=r"^--min-p must be between 0 and 1, got 1.5$"):
        build({"min_p": 1.5}, "flag")
    with pytest.raises(ConfigError, match=r"^`min_p` must be between 0 and 1, got 1.5$"):
        build({"min_p": 1.5}, "api")
    with pytest.raises(ConfigError, match=r"^`min_p` must be a number, got '0.5'$"):
        build({"min_p": "0.5"}, "api")  # JSON numbers are numbers; only argv is text
    with pytest.raises(ConfigError, match=r"^top_p= must be in \(0, 1\], got 0.0$"):
        build({"top_p": 0}, "python")
    with pytest.raises(ConfigError, match=r"`best_of` \(2\) must be at least `n` \(3\)"):
        build({"best_of": 2, "num_samples": 3}, "api")
    with pytest.raises(ConfigError, match="must be a number"):
        build({"temperature": True}, "api")
    with pytest.raises(ConfigError, match="not a valid regex"):
        build({"match": "(ab"}, "flag")


def test_nan_and_infinity_are_refused() -> None:
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ConfigError):
            SampleSettings(temperature=bad)
        with pytest.raises(ConfigError):
            SampleSettings(presence_penalty=bad)


def test_bias_from_the_cli_and_from_json() -> None:
    assert parse_value("bias", ["e=2", "==-1.5"], "flag") == (("=", -1.5), ("e", 2.0))
    assert parse_value("bias", {"e": 2, "17": -100}, "api") == ((17, -100.0), ("e", 2.0))
    for bad in (["e"], ["ee=1"], ["e=x"], ["e=101"]):
        with pytest.raises(ConfigError, match="--bias"):
            parse_value("bias", bad, "flag")
    with pytest.raises(ConfigError, match="neither one character nor a token id"):
        parse_value("bias", {"ab": 1}, "api")


def test_compiling_checks_against_the_vocabulary() -> None:
    chars = list("abc \n")
    with pytest.raises(ConfigError, match="token id 9 is outside the vocabulary"):
        compile_settings(SampleSettings(bias=((9, 1.0),)), chars, "api")
    with pytest.raises(ConfigError, match="no character 'z'"):
        compile_settings(SampleSettings(bias=(("z", 1.0),)), chars)
    with pytest.raises(ConfigError, match="--ban leaves no character"):
        compile_settings(SampleSettings(ban="abc \n"), chars)
    with pytest.raises(ConfigError, match="--match"):
        compile_settings(SampleSettings(match="z+"), chars)
    compiled = compile_settings(SampleSettings(ban="az", bias=(("b", -100.0), ("c", 2.0))), chars)
    assert compiled.bias is not None
    assert compiled.bias.tolist() == [-np.inf, -np.inf, 2.0, 0.0, 0.0]


def test_splitmix64_is_the_published_generator() -> None:
    # SplitMix64 seeded with 0: its first outputs (Steele, Lea, Flood; the reference C code).
    first = rng.splitmix64(np.zeros(3, dtype=np.uint64), np.arange(3, dtype=np.uint64))
    assert [int(x) for x in first] == [0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F]
    assert rng.uniform(0, 0) == (0xE220A8397B1DCDAF >> 40) / 2**24
    many = rng.uniforms(np.full(10_000, 2**64 - 1, dtype=np.uint64), np.arange(10_000, dtype=np.uint64))
    assert many.dtype == np.float32 and many.min() >= 0.0 and many.max() < 1.0 and 0.45 < many.mean() < 0.55


def test_penalties_follow_llama_and_openai() -> None:
    logits = np.array([[2.0, -1.0, 0.5, 0.0]], dtype=np.float32)
    counts = np.array([[2.0, 1.0, 0.0, 0.0]], dtype=np.float32)
    settings = SampleSettings(repetition_penalty=2.0)
    out = adjust(logits.copy(), compile_settings(settings, list("abcd")), counts, None)
    assert out.tolist() == [[1.0, -2.0, 0.5, 0.0]]
    settings = SampleSettings(presence_penalty=0.5, frequency_penalty=0.25)
    out = adjust(logits.copy(), compile_settings(settings, list("abcd")), counts, None)
    assert out.tolist() == [[1.0, -1.75, 0.5, 0.0]]


def test_min_p_keeps_only_what_is_likely_enough() -> None:
    logits = np.log(np.array([[0.5, 0.3, 0.15, 0.05]], dtype=np.float32))
    settings = SampleSettings(min_p=0.5)
    picks = {
        int(choose(logits.copy(), settings, np.array([u], dtype=np.float32))[0]) for u in np.linspace(0, 0.999, 50)
    }
    assert picks == {0, 1}
    assert choose(logits.copy(), SampleSettings(min_p=1.0), np.array([0.99], dtype=np.float32)).tolist() == [0]


def longest_run(text: str) -> int:
    return max(len(m.group(0)) for m in re.finditer(r"(.)\1*", text))


def test_controls_change_the_text_as_declared(trained_run: Path) -> None:
    model = charrnn.load(trained_run)
    greedy = model.generate("the ", length=200, temperature=0)
    assert "e" in greedy
    banned = model.generate("the ", length=200, temperature=0.8, seed=1, ban="et")
    assert not set("et") & set(banned[4:])
    assert model.generate("the ", length=200, temperature=0.8, seed=1, bias={"e": -100, "t": -100}) == banned
    ngram = model.generate("the ", length=300, temperature=0, no_repeat_ngram=4)
    grams = [ngram[i : i + 4] for i in range(len(ngram) - 3)]
    assert len(grams) == len(set(grams))  # no run of 4 characters twice, the prime's included
    penalised = model.generate("the ", length=300, temperature=0, repetition_penalty=3.0, penalty_window=300)
    assert len({penalised[i : i + 8] for i in range(300)}) > len({greedy[i : i + 8] for i in range(200)})


def test_match_makes_every_sample_a_full_match(trained_run: Path) -> None:
    model = charrnn.load(trained_run)
    pattern = r"[a-z]+( [a-z]+){2,4}[.?]"
    samples = model.samples("it ", num_samples=6, length=12, match=pattern, temperature=1.3, seed=3)
    for sample in samples:
        assert re.fullmatch(pattern, sample.text[3:]), sample.text
        assert sample.finish_reason in ("stop", "length")
    dates = model.samples("", num_samples=3, match=r"[0-6]{2}\.[0-6]", seed=1)
    assert all(re.fullmatch(r"[0-6]{2}\.[0-6]", s.text) and s.chars == 4 for s in dates)


def test_beam_search_finds_the_likeliest_text_when_it_is_wide_enough(trained_run: Path) -> None:
    model = charrnn.load(trained_run)
    vocab = model.vocab
    prime = "is it "
    # every two-character continuation, scored by the model itself
    with torch.inference_mode():
        ids = torch.tensor([[vocab.index(c) for c in prime]])
        logits, state = model.module(ids)
        first = torch.log_softmax(logits[0, -1], -1)
        seconds = model.module(torch.arange(len(vocab)).view(-1, 1), repeat_state(state, len(vocab)))[0]
        total = first.view(-1, 1) + torch.log_softmax(seconds[:, -1], -1)
    best = divmod(int(total.argmax()), len(vocab))
    (beam,) = model.samples(prime, length=2, beam=len(vocab))
    assert beam.text == prime + vocab[best[0]] + vocab[best[1]]
    assert beam.logprob == pytest.approx(float(total.max()), abs=1e-4)
    (greedy,) = model.samples(prime, length=60, temperature=0)
    assert model.samples(prime, length=60, beam=1)[0].text == greedy.text
    beams = model.samples(prime, length=60, beam=8, num_samples=3)
    assert [b.logprob for b in beams] == sorted((b.logprob for b in beams), reverse=True)


def test_best_of_keeps_the_likeliest_draws(trained_run: Path) -> None:
    model = charrnn.load(trained_run)
    drawn = model.samples("is it ", length=50, num_samples=6, seed=20, temperature=1.1)
    best = model.samples("is it ", length=50, num_samples=2, best_of=6, seed=20, temperature=1.1)
    ranked = sorted(drawn, key=lambda s: -s.logprob / s.chars)
    assert [b.text for b in best] == [s.text for s in ranked[:2]]


def test_run_settings_refuse_what_does_not_fit() -> None:
    with pytest.raises(ConfigError, match="--num-samples \\(3\\) must be at most --beam \\(2\\)"):
        RunSettings(beam=2, num_samples=3)
    with pytest.raises(ConfigError, match="give one of them"):
        RunSettings(beam=2, best_of=2)


def test_the_cli_says_a_bad_control_in_one_line(trained_run: Path) -> None:
    result = run_cli("sample", "-c", str(trained_run), "--min-p", "2", "--length", "5")
    assert result.returncode == 2
    assert result.stderr.decode() == "charrnn: error: --min-p must be between 0 and 1, got 2.0\n"
    result = run_cli("sample", "-c", str(trained_run), "--match", "Q+", "--length", "5")
    assert result.returncode == 2 and result.stdout == b""
    assert "no text made of the model's characters matches --match 'Q+'" in result.stderr.decode()


def test_rows_with_equal_settings_are_picked_as_one_group(trained_run: Path) -> None:
    model = charrnn.load(trained_run)
    vocab = model.checkpoint.vocab
    engine = Engine(make_stepper(model.module), vocab.chars)
    start = [vocab.index("a")]
    rows = [Row(i, start, compile_settings(SampleSettings(top_k=3), vocab.chars), i, 5) for i in range(3)]
    last, state = feed_prime(model.module, start, model.device)
    engine.add(rows[:2], last.expand(2, -1), repeat_state(state, 2))
    engine.add(rows[2:], last, state)
    assert rows[0].compiled is rows[1].compiled is rows[2].compiled  # each request compiles its own

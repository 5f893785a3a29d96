from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from charrnn.errors import ConfigError, InputError
from charrnn.sampling import generate as sample_module
from charrnn.sampling import rng
from charrnn.sampling import torch_backend as engine_module
from charrnn.sampling.controls import RunSettings, SampleSettings, build
from charrnn.sampling.generate import Piece, generate, generate_many, in_order
from charrnn.sampling.pick import choose
from charrnn.sampling.threads import default_threads
from charrnn.store.checkpoint import load_checkpoint, load_model


def loaded(run_dir: Path):
    ckpt = load_checkpoint(run_dir / "best.safetensors")
    return load_model(ckpt), ckpt.vocab


def text(run_dir: Path, prime: str = "", settings: SampleSettings | None = None, **run: object) -> str:
    model, vocab = loaded(run_dir)
    return "".join(generate(model, vocab, prime, settings, RunSettings(**run)))  # type: ignore[arg-type]


def test_same_seed_same_text(trained_run: Path) -> None:
    a = text(trained_run, length=200, seed=7)
    b = text(trained_run, length=200, seed=7)
    c = text(trained_run, length=200, seed=8)
    assert a == b and len(a) == 200
    assert a != c


def test_samples_only_use_vocab_characters(trained_run: Path) -> None:
    model, vocab = loaded(trained_run)
    out = "".join(generate(model, vocab, settings=SampleSettings(temperature=1.5), run=RunSettings(length=300, seed=1)))
    assert set(out) <= set(vocab.chars)


def test_greedy_is_argmax_and_ignores_seed(trained_run: Path) -> None:
    greedy = SampleSettings(temperature=0)
    assert text(trained_run, length=100, seed=1, settings=greedy) == text(
        trained_run, length=100, seed=2, settings=greedy
    )
    # top-k 1 and a tiny top-p both reduce sampling to the argmax
    assert text(trained_run, length=100, seed=3, settings=SampleSettings(top_k=1)) == text(
        trained_run, length=100, settings=greedy
    )
    assert text(trained_run, length=100, seed=4, settings=SampleSettings(top_p=1e-6)) == text(
        trained_run, length=100, settings=greedy
    )


def test_greedy_matches_full_forward(trained_run: Path) -> None:
    """Step-by-step generation computes the same logits as one forward over the generated text."""
    model, vocab = loaded(trained_run)
    out = "".join(generate(model, vocab, "the ", SampleSettings(temperature=0), RunSettings(length=50)))
    ids = torch.tensor([list(vocab.encode("the " + out))], dtype=torch.long)
    with torch.no_grad():
        logits, _ = model(ids)
    predicted = logits[0, 3:-1].argmax(-1)
    assert predicted.tolist() == ids[0, 4:].tolist()


def test_prime_with_unknown_characters(trained_run: Path) -> None:
    model, vocab = loaded(trained_run)
    with pytest.raises(InputError, match="'Z'"):
        list(generate(model, vocab, prime="Zebra", run=RunSettings(length=5)))


def test_length_zero(trained_run: Path) -> None:
    assert text(trained_run, length=0, seed=1) == ""


def test_top_k_only_picks_top_candidates() -> None:
    logits = np.array([[0.0, 5.0, 4.0, -3.0]], dtype=np.float32).repeat(500, axis=0)
    uniforms = rng.uniforms(np.zeros(500, dtype=np.uint64), np.arange(500, dtype=np.uint64))
    picks = choose(logits, SampleSettings(temperature=2.0, top_k=2), uniforms)
    assert set(picks.tolist()) == {1, 2}


def test_top_p_keeps_smallest_nucleus() -> None:
    probs = np.array([[0.5, 0.3, 0.15, 0.05]], dtype=np.float32)
    logits = np.log(probs).repeat(2000, axis=0)
    uniforms = rng.uniforms(np.zeros(2000, dtype=np.uint64), np.arange(2000, dtype=np.uint64))
    picks = choose(logits, SampleSettings(top_p=0.75), uniforms)
    assert set(picks.tolist()) == {0, 1}


@pytest.mark.parametrize("bad", [{"temperature": -0.1}, {"top_p": 0.0}, {"top_p": 1.5}, {"top_k": 0}])
def test_settings_validation(bad: dict) -> None:
    with pytest.raises(ConfigError):
        SampleSettings(**bad)


# -- the sampler: inverse CDF at per-sample uniforms ------------------------------------------


def f32(rows: list[list[float]]) -> np.ndarray:
    return np.array(rows, dtype=np.float32)


def test_pick_is_the_inverse_cdf() -> None:
    logits = np.log(f32([[0.5, 0.3, 0.2]])).repeat(5, axis=0)
    uniforms = f32([[0.0, 0.49, 0.51, 0.79, 0.999999]])[0]
    assert choose(logits, SampleSettings(), uniforms).tolist() == [0, 0, 1, 1, 2]


def test_pick_never_lands_on_a_trimmed_character() -> None:
    """A uniform at the very top of [0, 1) still picks a kept character, not a zeroed tail."""
    logits = f32([[3.0, 2.0, 1.0, 0.0]])
    top = f32([[1.0 - 2**-24]])[0]
    assert choose(logits.copy(), SampleSettings(top_k=2), top).tolist() == [1]
    assert choose(logits.copy(), SampleSettings(top_p=0.5), top).tolist() == [0]
    assert choose(logits.copy(), SampleSettings(temperature=1e-45), top).tolist() == [0]  # below fp32's tiny: greedy
    assert choose(logits.copy(), SampleSettings(min_p=0.3), top).tolist() == [1]  # e^-1 >= 0.3 > e^-2


def test_pick_frequencies_follow_the_temperature() -> None:
    probs = np.array([0.6, 0.3, 0.1], dtype=np.float32)
    rows = 20000
    uniforms = rng.uniforms(np.full(rows, 12345, dtype=np.uint64), np.arange(rows, dtype=np.uint64))
    for temperature in (1.0, 0.5):
        logits = np.log(probs)[None].repeat(rows, axis=0)
        picks = choose(logits, SampleSettings(temperature=temperature), uniforms)
        expected = torch.softmax(torch.from_numpy(np.log(probs)) / temperature, dim=0)
        observed = torch.from_numpy(np.bincount(picks, minlength=3)).float() / rows
        torch.testing.assert_close(observed, expected, atol=0.015, rtol=0)


SETTINGS = [
    SampleSettings(),
    SampleSettings(temperature=0.0),
    SampleSettings(temperature=0.3),
    SampleSettings(temperature=1.7, top_k=5),
    SampleSettings(top_p=0.9),
    SampleSettings(min_p=0.2),
    SampleSettings(temperature=0.8, top_k=20, top_p=0.5),
    SampleSettings(temperature=1e-37),  # the others overflow to -inf: greedy, without warnings
    SampleSettings(temperature=100.0, top_k=1),
]


def random_logits(rows: int = 3000, vocab: int = 65) -> np.ndarray:
    gen = np.random.default_rng(7)
    logits = (gen.standard_normal((rows, vocab)) * 3).astype(np.float32)
    logits[:100, :2] = 4.0  # ties at the top, for the sort of top-p
    return logits


@pytest.mark.parametrize("settings", SETTINGS)
def test_choose_is_a_pure_function_in_range_without_warnings(settings: SampleSettings) -> None:
    """The same logits and uniforms give the same ids (no hidden generator), every id a real character."""
    logits = random_logits()
    uniforms = rng.uniforms(np.arange(3000, dtype=np.uint64), np.zeros(3000, dtype=np.uint64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or invalid-value warnings on stderr either
        first = choose(logits.copy(), settings, uniforms)
        again = choose(logits.copy(), settings, uniforms)
    assert first.tolist() == again.tolist()
    assert first.shape == (3000,) and first.min() >= 0 and first.max() < 65
    if settings.top_k is not None:  # only the K likeliest (ties count as likeliest)
        kth = np.sort(logits, axis=-1)[:, -settings.top_k]
        assert (logits[np.arange(3000), first] >= kth).all()


@pytest.mark.parametrize("settings", [SampleSettings(temperature=0.0), SampleSettings(temperature=1e-37)])
def test_greedy_is_the_first_argmax_whatever_the_uniform(settings: SampleSettings) -> None:
    logits = random_logits()
    for u in (0.0, 0.5, 1.0 - 2**-24):
        uniforms = np.full(3000, u, dtype=np.float32)
        assert choose(logits.copy(), settings, uniforms).tolist() == logits.argmax(axis=-1).tolist()


@pytest.mark.parametrize("temperature", [0.3, 1.0, 5.0, 100.0])
def test_top_k_one_and_a_tiny_top_p_are_argmax_whatever_the_uniform(temperature: float) -> None:
    logits = random_logits()
    logits[:100, 1] = 3.0  # no ties at the top: the likeliest is one character
    argmax = logits.argmax(axis=-1).tolist()
    for u in (0.0, 0.25, 0.75, 1.0 - 2**-24):
        uniforms = np.full(3000, u, dtype=np.float32)
        assert choose(logits.copy(), SampleSettings(temperature=temperature, top_k=1), uniforms).tolist() == argmax
        assert choose(logits.copy(), SampleSettings(temperature=temperature, top_p=1e-6), uniforms).tolist() == argmax


def splitmix_by_hand(seed: int, step: int) -> float:
    """The rule in charrnn.sampling.rng's docstring, in Python integers."""
    mask = 2**64 - 1
    z = (seed + (step + 1) * 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    z ^= z >> 31
    return (z >> 40) / 2**24


@pytest.mark.parametrize("seed", [0, 1, 7, 2**32 + 5, 2**64 - 1])
def test_uniforms_are_splitmix64_of_seed_and_step(seed: int) -> None:
    """Reproducible, in [0, 1), a pure function of (seed, step): the formula, whatever the array around it."""
    steps = [*range(50), 10**6, 2**40]
    got = [rng.uniform(seed, step) for step in steps]
    assert got == [rng.uniform(seed, step) for step in steps]
    assert got == [splitmix_by_hand(seed, step) for step in steps]
    assert all(0.0 <= u < 1.0 for u in got)
    assert len(set(got)) > 45  # not stuck
    # vectorised, in any order and beside any other rows: each (seed, step) gives its own number
    seeds = np.array([seed, 3, seed, 99], dtype=np.uint64)
    at = np.array([5, 5, 6, 0], dtype=np.uint64)
    assert rng.uniforms(seeds, at).tolist() == [got[5], rng.uniform(3, 5), got[6], rng.uniform(99, 0)]
    assert rng.uniforms(seeds[::-1].copy(), at[::-1].copy()).tolist()[::-1] == rng.uniforms(seeds, at).tolist()


def test_uniforms_cover_the_interval_evenly() -> None:
    draws = rng.uniforms(np.full(100_000, 42, dtype=np.uint64), np.arange(100_000, dtype=np.uint64))
    assert draws.dtype == np.float32 and draws.min() >= 0.0 and draws.max() < 1.0
    counts = np.bincount((draws * 10).astype(np.int64), minlength=10)
    assert counts.min() > 9_500 and counts.max() < 10_500


# -- many samples, engines, stop strings ------------------------------------------------------


def many(
    run_dir: Path,
    seeds: list[int],
    prime: str = "",
    settings: SampleSettings | None = None,
    engine: str = "fast",
    **run: object,
) -> list[str]:
    """Texts of generate_many, checking the pieces come whole and in order."""
    model, vocab = loaded(run_dir)
    texts = [""] * len(seeds)
    order: list[int] = []
    runs = RunSettings(num_samples=len(seeds), **run)  # type: ignore[arg-type]
    for piece in generate_many(model, vocab, prime, settings, runs, engine=engine, seeds=seeds):
        if not order or order[-1] != piece.index:
            order.append(piece.index)
        texts[piece.index] += piece.text
    assert order == list(range(len(seeds)))
    return texts


def test_each_batched_sample_is_its_seed_alone(trained_run: Path) -> None:
    batched = many(trained_run, [5, 6, 7], prime="the ", length=120)
    assert len(set(batched)) == 3
    for seed, expected in zip([5, 6, 7], batched, strict=True):
        assert text(trained_run, prime="the ", length=120, seed=seed) == expected


@pytest.mark.parametrize("settings", [SampleSettings(), SampleSettings(temperature=0.7, top_k=5, top_p=0.9)])
def test_fast_and_module_engines_agree(trained_run: Path, settings: SampleSettings) -> None:
    fast = many(trained_run, [1, 2], prime="a dog", length=150, settings=settings, engine="fast")
    module = many(trained_run, [1, 2], prime="a dog", length=150, settings=settings, engine="module")
    assert fast == module


def test_long_prime_is_fed_in_windows(trained_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    prime = "the cat sat on the mat. a dog ran in the fog!\n" * 3
    whole = text(trained_run, prime=prime, length=60, seed=3)
    monkeypatch.setattr(engine_module, "PRIME_WINDOW", 7)
    assert text(trained_run, prime=prime, length=60, seed=3) == whole


def test_stop_ends_a_sample_and_is_kept_or_dropped(trained_run: Path) -> None:
    seeds = list(range(10, 16))
    free = many(trained_run, seeds, length=300)
    kept = many(trained_run, seeds, length=300, stop=("the", "\n"))
    dropped = many(trained_run, seeds, length=300, stop=("the", "\n"), keep_stop=False)
    stopped = 0
    for full, keep, drop in zip(free, kept, dropped, strict=True):
        cut = min((i + len(s) for s in ("the", "\n") if (i := full.find(s)) >= 0), default=None)
        if cut is None:
            assert keep == drop == full
            continue
        stopped += 1
        assert keep == full[:cut]
        assert keep.endswith(("the", "\n")) and keep.startswith(drop) and len(drop) < len(keep)
        assert drop in (keep[:-3], keep[:-1])
    assert stopped >= 3  # the samples really were cut short


def test_length_counts_generated_characters_only(trained_run: Path) -> None:
    assert [len(t) for t in many(trained_run, [1, 2], prime="the cat ", length=33)] == [33, 33]


def test_generate_many_rejects_bad_arguments(trained_run: Path) -> None:
    model, vocab = loaded(trained_run)
    with pytest.raises(ConfigError, match="--stop"):
        build({"stop": [""]}, "flag")
    with pytest.raises(ConfigError, match="--num-samples"):
        RunSettings(num_samples=0)
    with pytest.raises(ConfigError, match="engine"):
        generate_many(model, vocab, engine="warp")


def test_generate_many_rejects_an_empty_stop_string(trained_run: Path) -> None:
    model, vocab = loaded(trained_run)
    with pytest.raises(ConfigError, match="--stop"):
        generate_many(model, vocab, run=RunSettings(stop=("",)))


def test_generate_many_rejects_no_seeds(trained_run: Path) -> None:
    model, vocab = loaded(trained_run)
    with pytest.raises(ConfigError, match="--num-samples"):
        generate_many(model, vocab, seeds=[])


def test_in_order_holds_later_samples_back() -> None:
    events = [Piece(1, "b1"), Piece(0, "a1"), Piece(2, "c", True), Piece(1, "b2", True), Piece(0, "a2", True)]
    assert [(p.index, p.text) for p in in_order(iter(events), 3)] == [
        (0, "a1"), (0, "a2"), (1, "b1"), (1, "b2"), (2, "c"),
    ]  # fmt: skip


@pytest.mark.parametrize("keep_stop", [True, False])
def test_stop_strings_are_found_across_chunk_boundaries(
    trained_run: Path, monkeypatch: pytest.MonkeyPatch, keep_stop: bool
) -> None:
    """With one-character chunks every multi-character stop string straddles a boundary."""
    seeds = list(range(20, 26))
    free = many(trained_run, seeds, length=300)
    stop = ("the", "at")
    cuts = [min((i + len(s) for s in stop if (i := t.find(s)) >= 0), default=len(t)) for t in free]
    assert sum(cut < 300 for cut in cuts) >= 3  # most samples really stop
    monkeypatch.setattr(sample_module, "CHUNK_CHARS", 1)
    got = many(trained_run, seeds, length=300, stop=stop, keep_stop=keep_stop)
    for full, cut, mine in zip(free, cuts, got, strict=True):
        whole = full[:cut]
        assert mine == (whole if keep_stop or cut == len(full) else whole[: -2 if whole.endswith("at") else -3])


@pytest.mark.parametrize("seed", [-1, 2**64])
def test_seed_out_of_range(trained_run: Path, seed: int) -> None:
    with pytest.raises(ConfigError, match="--seed"):
        text(trained_run, length=5, seed=seed)
    with pytest.raises(ConfigError, match="--seed"):
        build({"length": 5, "seed": seed}, "flag")


def test_slow_steps_still_stream(trained_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When a step takes longer than FLUSH_S, every character is yielded as soon as it exists."""
    model, vocab = loaded(trained_run)
    monkeypatch.setattr(sample_module, "FLUSH_S", 1e9)  # never: chunks of CHUNK_CHARS
    whole = list(generate(model, vocab, run=RunSettings(length=40, seed=5)))
    assert [len(chunk) for chunk in whole] == [16, 16, 8]
    monkeypatch.setattr(sample_module, "FLUSH_S", 0.0)
    chunks = list(generate(model, vocab, run=RunSettings(length=40, seed=5)))
    assert "".join(chunks) == "".join(whole) and all(len(chunk) == 1 for chunk in chunks)


@pytest.mark.parametrize(
    ("samples", "engine", "weights", "idle", "expected"),
    [
        (1, "module", "fp32", 8, 1),  # torch's OpenMP team: one stream stays on one thread
        (1, "fast", "int8", 8, 1),
        (1, "fast", "fp32", 8, 2),  # numpy's BLAS splits one stream over two idle cores, no more
        (1, "fast", "fp32", 1, 1),
        (4, "module", "fp32", 8, 8),  # many streams: every idle core
        (4, "fast", "int8", 5, 5),
        (64, "fast", "fp32", 1, 1),
    ],
)
def test_default_threads_use_only_idle_cores(samples: int, engine: str, weights: str, idle: int, expected: int) -> None:
    assert default_threads(samples, engine, weights, idle) == expected


def test_sampling_gives_the_threads_back(trained_run: Path) -> None:
    """Threads are the sampler's only while it draws: after the last piece, or an early close."""
    model, vocab = loaded(trained_run)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        pieces = generate_many(model, vocab, run=RunSettings(length=40), seeds=[1], threads=1, engine="module")
        next(pieces)
        assert torch.get_num_threads() == 1
        pieces.close()  # a reader that went away (`| head`)
        assert torch.get_num_threads() == 2
        list(generate_many(model, vocab, run=RunSettings(length=40), seeds=[1, 2], threads=1, engine="module"))
        assert torch.get_num_threads() == 2
        with pytest.raises(ConfigError, match="--threads"):
            generate_many(model, vocab, threads=0)
    finally:
        torch.set_num_threads(before)


def test_a_row_joining_a_running_batch_keeps_its_own_text(trained_run: Path) -> None:
    """A row's uniforms are its seed's, from its own step 0: the same text whichever rows share the
    batch and however many steps they have run when it joins (as `charrnn serve` admits streams)."""
    from charrnn.sampling.engine import Engine, Row
    from charrnn.sampling.generate import start_ids
    from charrnn.sampling.pick import compile_settings
    from charrnn.sampling.steppers import make_stepper
    from charrnn.sampling.torch_backend import feed_prime

    model, vocab = loaded(trained_run)
    compiled = compile_settings(SampleSettings(temperature=0.9), vocab.chars)
    engine = Engine(make_stepper(model, "fast"), vocab.chars)
    texts: dict[int, str] = {}

    def join(index: int, prime: str, seed: int, length: int) -> None:
        start = start_ids(vocab, prime)
        last, state = feed_prime(model, start, torch.device("cpu"))
        engine.add([Row(index, start, compiled, seed, length)], last, state)
        texts[index] = ""

    with torch.inference_mode():
        join(0, "the ", 11, 60)
        for _ in range(17):
            for row, tokens, _ in engine.step():
                texts[row.index] += "".join(t.char for t in tokens)
        join(1, "a dog", 12, 50)
        join(2, "the ", 11, 30)  # the same seed and prime as row 0, joining 17 steps later
        while engine.rows:
            for row, tokens, _ in engine.step():
                texts[row.index] += "".join(t.char for t in tokens)
    settings = SampleSettings(temperature=0.9)
    assert texts[0] == text(trained_run, "the ", settings, length=60, seed=11)
    assert texts[1] == text(trained_run, "a dog", settings, length=50, seed=12)
    assert texts[2] == texts[0][:30]

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from charrnn.errors import ConfigError, InputError
from charrnn.sampling import generate as sample_module
from charrnn.sampling.generate import Piece, generate, generate_many, in_order
from charrnn.sampling.pick import SampleSettings, choose, pick, pick_torch
from charrnn.sampling.threads import default_threads
from charrnn.store.checkpoint import load_checkpoint, load_model

PICKERS = [pick, pick_torch]  # `pick` on CPU logits is the numpy picker; pick_torch is the GPU one, run on CPU


def loaded(run_dir: Path):
    ckpt = load_checkpoint(run_dir / "best.safetensors")
    return load_model(ckpt), ckpt.vocab


def text(run_dir: Path, **kwargs: object) -> str:
    model, vocab = loaded(run_dir)
    return "".join(generate(model, vocab, **kwargs))  # type: ignore[arg-type]


def test_same_seed_same_text(trained_run: Path) -> None:
    a = text(trained_run, length=200, seed=7)
    b = text(trained_run, length=200, seed=7)
    c = text(trained_run, length=200, seed=8)
    assert a == b and len(a) == 200
    assert a != c


def test_samples_only_use_vocab_characters(trained_run: Path) -> None:
    model, vocab = loaded(trained_run)
    out = "".join(generate(model, vocab, length=300, seed=1, settings=SampleSettings(temperature=1.5)))
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
    out = "".join(generate(model, vocab, prime="the ", length=50, settings=SampleSettings(temperature=0)))
    ids = torch.tensor([list(vocab.encode("the " + out))], dtype=torch.long)
    with torch.no_grad():
        logits, _ = model(ids)
    predicted = logits[0, 3:-1].argmax(-1)
    assert predicted.tolist() == ids[0, 4:].tolist()


def test_prime_with_unknown_characters(trained_run: Path) -> None:
    model, vocab = loaded(trained_run)
    with pytest.raises(InputError, match="'Z'"):
        list(generate(model, vocab, prime="Zebra", length=5))


def test_length_zero(trained_run: Path) -> None:
    assert text(trained_run, length=0, seed=1) == ""


def test_top_k_only_picks_top_candidates() -> None:
    logits = torch.tensor([[0.0, 5.0, 4.0, -3.0]]).repeat(500, 1)
    gen = torch.Generator().manual_seed(0)
    picks = choose(logits, SampleSettings(temperature=2.0, top_k=2), gen)
    assert set(picks.tolist()) == {1, 2}


def test_top_p_keeps_smallest_nucleus() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log().repeat(2000, 1)
    gen = torch.Generator().manual_seed(0)
    picks = choose(logits, SampleSettings(top_p=0.75), gen)
    assert set(picks.tolist()) == {0, 1}


@pytest.mark.parametrize("bad", [{"temperature": -0.1}, {"top_p": 0.0}, {"top_p": 1.5}, {"top_k": 0}])
def test_settings_validation(bad: dict) -> None:
    with pytest.raises(ConfigError):
        SampleSettings(**bad)


# -- the sampler: inverse CDF at per-sample uniforms ------------------------------------------


@pytest.mark.parametrize("picker", PICKERS)
def test_pick_is_the_inverse_cdf(picker: Callable) -> None:
    logits = torch.tensor([[0.5, 0.3, 0.2]]).log().repeat(5, 1)
    uniforms = torch.tensor([0.0, 0.49, 0.51, 0.79, 0.999999])
    assert picker(logits, SampleSettings(), uniforms).tolist() == [0, 0, 1, 1, 2]


@pytest.mark.parametrize("picker", PICKERS)
def test_pick_never_lands_on_a_trimmed_character(picker: Callable) -> None:
    """A uniform at the very top of [0, 1) still picks a kept character, not a zeroed tail."""
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    top = torch.tensor([1.0 - 2**-24])
    assert picker(logits, SampleSettings(top_k=2), top).tolist() == [1]
    assert picker(logits, SampleSettings(top_p=0.5), top).tolist() == [0]
    assert picker(logits, SampleSettings(temperature=1e-45), top).tolist() == [0]  # below fp32's tiny: greedy


@pytest.mark.parametrize("picker", PICKERS)
def test_pick_frequencies_follow_the_temperature(picker: Callable) -> None:
    probs = torch.tensor([0.6, 0.3, 0.1])
    rows = 20000
    uniforms = torch.rand(rows, generator=torch.Generator().manual_seed(0))
    for temperature in (1.0, 0.5):
        picks = picker(probs.log().repeat(rows, 1), SampleSettings(temperature=temperature), uniforms)
        expected = torch.softmax(probs.log() / temperature, dim=0)
        observed = torch.bincount(picks, minlength=3).float() / rows
        torch.testing.assert_close(observed, expected, atol=0.015, rtol=0)


@pytest.mark.parametrize(
    "settings",
    [
        SampleSettings(),
        SampleSettings(temperature=0.0),
        SampleSettings(temperature=0.3),
        SampleSettings(temperature=1.7, top_k=5),
        SampleSettings(top_p=0.9),
        SampleSettings(temperature=0.8, top_k=20, top_p=0.5),
        SampleSettings(temperature=1e-37),  # the others overflow to -inf: greedy, without warnings
        SampleSettings(temperature=1e39, top_k=1),  # beyond fp32: uniform before trimming
        SampleSettings(temperature=float("inf"), top_p=0.01),
    ],
)
def test_numpy_and_torch_pickers_agree(settings: SampleSettings) -> None:
    """CPU samples (numpy) and GPU samples (torch) follow one rule: same ids from the same numbers."""
    gen = torch.Generator().manual_seed(7)
    logits = torch.randn(3000, 65, generator=gen) * 3
    logits[:100, :2] = 4.0  # ties at the top, for the sort of top-p
    uniforms = torch.rand(3000, generator=gen)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow or invalid-value warnings on stderr either
        on_cpu, on_gpu = pick(logits, settings, uniforms), pick_torch(logits, settings, uniforms)
    # Equal but for a draw within float rounding of a CDF boundary (2 in 1.8M seen at T=0.7):
    # their sums add up in different orders.
    assert int((on_cpu != on_gpu).sum()) <= 1


# -- many samples, engines, stop strings ------------------------------------------------------


def many(run_dir: Path, seeds: list[int], **kwargs: object) -> list[str]:
    """Texts of generate_many, checking the pieces come whole and in order."""
    model, vocab = loaded(run_dir)
    texts = [""] * len(seeds)
    order: list[int] = []
    for piece in generate_many(model, vocab, seeds=seeds, **kwargs):  # type: ignore[arg-type]
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
    monkeypatch.setattr(sample_module, "PRIME_WINDOW", 7)
    assert text(trained_run, prime=prime, length=60, seed=3) == whole


def test_stop_ends_a_sample_and_is_kept_or_dropped(trained_run: Path) -> None:
    seeds = list(range(10, 16))
    free = many(trained_run, seeds, length=300)
    kept = many(trained_run, seeds, length=300, stop=["the", "\n"])
    dropped = many(trained_run, seeds, length=300, stop=["the", "\n"], keep_stop=False)
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
        generate_many(model, vocab, stop=[""])
    with pytest.raises(ConfigError, match="--num-samples"):
        generate_many(model, vocab, seeds=[])
    with pytest.raises(ConfigError, match="engine"):
        generate_many(model, vocab, engine="warp")


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
    stop = ["the", "at"]
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


def test_slow_steps_still_stream(trained_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When a step takes longer than FLUSH_S, every character is yielded as soon as it exists."""
    model, vocab = loaded(trained_run)
    monkeypatch.setattr(sample_module, "FLUSH_S", 1e9)  # never: chunks of CHUNK_CHARS
    whole = list(generate(model, vocab, length=40, seed=5))
    assert [len(chunk) for chunk in whole] == [16, 16, 8]
    monkeypatch.setattr(sample_module, "FLUSH_S", 0.0)
    chunks = list(generate(model, vocab, length=40, seed=5))
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
        pieces = generate_many(model, vocab, length=40, seeds=[1], threads=1, engine="module")
        next(pieces)
        assert torch.get_num_threads() == 1
        pieces.close()  # a reader that went away (`| head`)
        assert torch.get_num_threads() == 2
        list(generate_many(model, vocab, length=40, seeds=[1, 2], threads=1, engine="module"))
        assert torch.get_num_threads() == 2
        with pytest.raises(ConfigError, match="--threads"):
            generate_many(model, vocab, threads=0)
    finally:
        torch.set_num_threads(before)

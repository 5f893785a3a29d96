"""`charrnn export --format html`'s page: one self-contained file, and in a real browser (Debian's
Chromium through Playwright) the same text for a seed as `charrnn sample`, for every cell.

The browser tests skip where /usr/bin/chromium or the playwright package is missing.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
import torch

import charrnn
from charrnn.errors import ConfigError
from charrnn.export.html import build_page, export_html
from charrnn.model import CharRNN, ModelConfig
from charrnn.store.checkpoint import save_checkpoint
from charrnn.vocab import Vocab
from tests.browser import chromium

VOCAB = Vocab.from_text("\n !',.:;?abcdefghijklmnopqrstuvwxyzABCDEFGHIKLMNOPRSTUW")
PRIME = "KING:\nwhat say you, "
# The largest logit error over 200 steps against fp32 (measured on random_model("lstm"): fp16 1.0e-3,
# int8 2.4e-2, with logits up to 2.3), with margin
TOLERANCE = {"fp32": 1e-4, "fp16": 1e-2, "int8": 0.1}


def random_model(cell: str, hidden: int = 32, layers: int = 2, scale: float = 0.4, seed: int = 0) -> CharRNN:
    """Random weights, larger than the default init so that the distributions are far from uniform."""
    torch.manual_seed(seed)
    config = ModelConfig(vocab_size=VOCAB.size, cell=cell, num_layers=layers, hidden_size=hidden, embed_size=16)
    model = CharRNN(config)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0, scale)
    return model.eval()


def checkpoint(tmp_path: Path, cell: str) -> Path:
    path = tmp_path / f"{cell}.safetensors"
    model = random_model(cell)
    save_checkpoint(path, model.config, VOCAB, model.state_dict())
    return path


@pytest.mark.parametrize("weights", ["fp32", "fp16", "int8"])
def test_one_self_contained_file(tmp_path: Path, weights: str) -> None:
    path = checkpoint(tmp_path, "lstm")
    out = tmp_path / "model.html"
    summary = export_html(str(path), str(out), weights)
    assert summary.startswith(f"wrote {out}: 2x32 LSTM, {weights} weights ")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, out.name])  # one file, no temp left
    page = out.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?https?://""", page, re.I)
    assert "@@" not in page.replace("@@ENGINE", "")
    params = sum(p.numel() for p in random_model("lstm").parameters())
    # the weights as packed: every parameter once, GRU/LSTM biases merged; at most this many bytes
    per = {"fp32": 4, "fp16": 2, "int8": 1}[weights]
    weight_bytes = params * per + (4 * 4 * 32 * 3 + 4 * VOCAB.size if weights == "int8" else 0)
    assert out.stat().st_size <= 1.5 * weight_bytes + 40_000


def test_bad_weights_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fp32, fp16, int8"):
        export_html(str(checkpoint(tmp_path, "rnn")), str(tmp_path / "m.html"), "bf16")
    assert not (tmp_path / "m.html").exists()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    yield from chromium()


def fragment(settings: dict[str, object]) -> str:
    return "#" + "&".join(f"{key}={quote(str(value), safe='')}" for key, value in settings.items())


def page_text(browser, page_file: Path, settings: dict[str, object], init: str = "") -> tuple[str, dict[str, str]]:  # type: ignore[no-untyped-def]
    """What the page writes into #output for these settings, and the body's data attributes."""
    page = browser.new_page()
    if init:
        page.add_init_script(init)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    requests: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    try:
        page.goto(page_file.as_uri() + fragment(settings))
        page.wait_for_function("['done', 'error'].includes(document.body.dataset.state)", timeout=15_000)
        data = page.evaluate("({...document.body.dataset, error: document.getElementById('error').textContent})")
        text = page.text_content("#output") or ""
    finally:
        page.close()
    assert not errors
    assert all(url.startswith(("file:", "blob:")) for url in requests), requests
    return text, data


SETTINGS = [
    {"prime": PRIME, "seed": 3, "length": 200, "temp": 0.8},
    {"prime": PRIME, "seed": 11, "length": 200, "temp": 1.3, "top_k": 20, "top_p": 0.9, "min_p": 0.05,
     "repetition_penalty": 1.3, "penalty_window": 24, "ban": "eq"},
]  # fmt: skip


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_page_matches_sample(browser, tmp_path: Path, cell: str) -> None:  # type: ignore[no-untyped-def]
    path = checkpoint(tmp_path, cell)
    page_file = tmp_path / "model.html"
    export_html(str(path), str(page_file), "fp32")
    model = charrnn.load(path)
    for settings in SETTINGS:
        controls = {("temperature" if k == "temp" else k): v for k, v in settings.items() if k != "prime"}
        expected = model.generate(PRIME, **controls)
        text, data = page_text(browser, page_file, settings)
        assert data["state"] == "done", data
        assert data["runner"] == "worker"
        assert text == expected
        if "ban" in settings:
            assert not set(text[len(PRIME) :]) & set("eq")


def test_page_without_prime_and_errors(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    path = checkpoint(tmp_path, "gru")
    page_file = tmp_path / "model.html"
    export_html(str(path), str(page_file), "fp32")
    text, _ = page_text(browser, page_file, {"seed": 5, "length": 120, "temp": 0})
    assert text == charrnn.load(path).generate(seed=5, length=120, temperature=0)
    _, data = page_text(browser, page_file, {"prime": "KING\u00e9", "seed": 1})
    assert data["state"] == "error" and "U+00E9" in data["error"]


def test_page_without_workers(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Where Web Workers are missing, the page generates on its own thread in slices: the same text."""
    path = checkpoint(tmp_path, "lstm")
    page_file = tmp_path / "model.html"
    export_html(str(path), str(page_file), "fp32")
    text, data = page_text(browser, page_file, SETTINGS[1], init="delete window.Worker;")
    assert data["state"] == "done" and data["runner"] == "page"
    assert text == charrnn.load(path).generate(
        PRIME, **{("temperature" if k == "temp" else k): v for k, v in SETTINGS[1].items() if k != "prime"}
    )


def test_low_precision_logits_within_tolerance(browser, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    model = random_model("lstm")
    ids = VOCAB.encode((PRIME * 20)[:200]).tolist()
    with torch.no_grad():
        expected = model(torch.tensor([ids]))[0][0].numpy()
    for weights, tolerance in TOLERANCE.items():
        page_file = tmp_path / f"{weights}.html"
        page_file.write_text(build_page(model, VOCAB, weights)[0], encoding="utf-8")
        page = browser.new_page()
        try:
            page.goto(page_file.as_uri())
            page.wait_for_function("document.body.dataset.state === 'ready'")
            got = np.array(page.evaluate("ids => window.charrnnPage.logits(ids)", ids))
        finally:
            page.close()
        assert got.shape == expected.shape
        assert np.abs(got - expected).max() <= tolerance, (weights, np.abs(got - expected).max())


def test_the_cli_writes_an_fp16_page_by_default(tmp_path: Path) -> None:
    from tests.conftest import run_cli

    path = checkpoint(tmp_path, "lstm")
    result = run_cli("export", "-c", str(path), "--format", "html", "-o", str(tmp_path / "page.html"))
    assert result.returncode == 0 and result.stdout == b""
    assert "fp16 weights" in result.stderr.decode()
    assert (tmp_path / "page.html").read_text(encoding="utf-8").lstrip().lower().startswith("<!doctype html>")

"""The exported web page (`charrnn export --format html`): its size, its speed in headless Chromium,
and how far fp16 / int8 weights move the logits from fp32.

    python benchmarks/page_speed.py [--hidden 384] [--layers 2] [--vocab 222] [--length 3000]
    python benchmarks/page_speed.py --checkpoint RUN/best.safetensors      # a trained model's errors

Default model: the quick-start model's shape (2x384 LSTM, vocab 222), randomly initialised: speed
does not depend on training. The rate is the page's own (characters / seconds since Generate, the
prime included), generated in its Web Worker: one thread. Logit error: max |page - torch fp32| over
200 steps of text, the page's float32 arithmetic on the widened fp16 / int8 weights. Random weights
give small logits; pass --checkpoint for the errors of a trained model. Needs /usr/bin/chromium and
the playwright package. Prints one line per precision and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO, SHAKESPEARE, write_result

sys.path.insert(0, str(REPO))
from charrnn.export.html import build_page
from charrnn.model import CharRNN, ModelConfig
from charrnn.store.opening import open_model
from charrnn.vocab import Vocab

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
PRIME = "The "


def reference_text() -> str:
    """Text for the logit check: the start of the reference corpus in ../shared (read, never copied
    here), or, where it is absent, the vocabulary's own characters."""
    return SHAKESPEARE.read_text(encoding="utf-8")[:2000] if SHAKESPEARE.is_file() else ""


def model_of(args: argparse.Namespace) -> tuple[CharRNN, Vocab]:
    if args.checkpoint:
        opened = open_model(args.checkpoint, "cpu")
        return opened.model, opened.vocab
    # newline, printable ASCII, then Latin-1 and beyond: `--vocab` characters
    chars = "\n" + "".join(chr(c) for c in range(32, 127)) + "".join(chr(c) for c in range(161, 161 + 4096))
    vocab = Vocab.from_text(chars[: args.vocab])
    torch.manual_seed(0)
    config = ModelConfig(vocab.size, args.cell, args.layers, args.hidden, args.embed)
    return CharRNN(config).eval(), vocab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=384)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--embed", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=222)
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--length", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3, help="generations per precision (the best rate is kept)")
    parser.add_argument("--checkpoint", help="a trained model instead of random weights")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    model, vocab = model_of(args)
    config = model.config
    shape = f"{config.num_layers}x{config.hidden_size} {config.cell.upper()}, vocab {vocab.size}"
    text = "".join(c for c in reference_text() if vocab.index(c) is not None) or vocab.chars
    ids = vocab.encode((text * 200)[:200]).tolist()
    prime = "".join(c for c in PRIME if vocab.index(c) is not None)
    with torch.no_grad():
        expected = model(torch.tensor([ids]))[0][0].numpy()
    figures: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        for weights in ("fp32", "fp16", "int8"):
            page_html, weight_bytes = build_page(model, vocab, weights)
            path = Path(tmp) / f"{weights}.html"
            path.write_text(page_html, encoding="utf-8")
            page = browser.new_page()
            page.goto(path.as_uri())
            page.wait_for_function("document.body.dataset.state === 'ready'", timeout=60_000)
            got = np.array(page.evaluate("ids => window.charrnnPage.logits(ids)", ids))
            rates = []
            for round_ in range(args.rounds):
                fragment = f"#prime={prime}&seed={round_}&length={args.length}&temp=0.8"
                page.evaluate("f => { location.hash = f; }", fragment)
                page.wait_for_function("document.body.dataset.state === 'running'", timeout=10_000)
                page.wait_for_function("document.body.dataset.state === 'done'", timeout=600_000)
                rates.append(float(page.evaluate("document.body.dataset.rate")))
            page.close()
            figures[weights] = {
                "chars_per_s": max(rates),
                "page_bytes": path.stat().st_size,
                "weight_bytes": weight_bytes,
                "max_logit_error": float(np.abs(got - expected).max()),
            }
            f = figures[weights]
            print(
                f"{weights:5} {shape}: {f['chars_per_s']:6.0f} chars/s (best of {args.rounds}); weights "
                f"{weight_bytes / 1e6:.2f} MB, page {f['page_bytes'] / 1e6:.2f} MB; max |logit - fp32| over 200 steps "
                f"{f['max_logit_error']:.2e} (logits up to {np.abs(expected).max():.1f})"
            )
        browser.close()
    name = "page_speed" if not args.checkpoint else "page_speed_checkpoint"
    print(f"wrote {write_result(name, {'model': shape, 'checkpoint': args.checkpoint, 'figures': figures})}")


if __name__ == "__main__":
    main()

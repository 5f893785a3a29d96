"""`charrnn export --format html`: one self-contained page that generates text in the browser.

The page (page.html + engine.js, package data) embeds the weights as base64 in the layout of
charrnn.sampling.weights.StepWeights (the numpy stepper's: layer 0's input product per id, [W_ih |
W_hh] side by side above it, GRU's products apart), in one of three precisions:

    fp32   the checkpoint's own numbers: the page's text for a seed is `charrnn sample`'s
    fp16   half the bytes; widened back to float32 in the page (the default)
    int8   a quarter: each matrix row symmetric int8 with a float32 scale (max |w| / 127);
           biases stay float32

It needs no server, no network and no CDN: it works from file://. Generation runs in a Web Worker
made from a Blob (on the page itself where workers cannot start), with the step, the pick and
the seeded uniforms of charrnn.sampling in float32 arithmetic (see engine.js).
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path

import numpy as np
from torch import Tensor

from charrnn.errors import ConfigError
from charrnn.files import display_path, write_output
from charrnn.model import CharRNN
from charrnn.sampling.weights import step_weights
from charrnn.vocab import Vocab

WEIGHT_FORMATS = ("fp32", "fp16", "int8")
MARKER = re.compile("@@(?:TITLE|INFO|MODEL|WEIGHTS|ENGINE)@@")
ALIGN = 4  # every tensor starts on a 4-byte boundary, so the page can view it as a typed array


@cache
def template() -> tuple[str, str]:
    """The page and its engine script, as shipped in the package."""
    here = files("charrnn.export")
    return here.joinpath("page.html").read_text(encoding="utf-8"), here.joinpath("engine.js").read_text("utf-8")


@dataclass(frozen=True)
class Packed:
    """The weights as one blob, and where each tensor lies in it."""

    tensors: dict[str, dict[str, object]]
    blob: bytes


def named_tensors(model: CharRNN) -> dict[str, Tensor]:
    """The StepWeights layout under the names engine.js reads."""
    layout = step_weights(model)
    out: dict[str, Tensor] = {"embed": layout.embed, "input0.w": layout.input0[0]}
    bias0 = layout.input0[1]
    assert bias0 is not None
    out["input0.b"] = bias0
    for group, pairs in (("hh", layout.hh), ("ih", layout.ih), ("cat", layout.cat)):
        for index, (weight, bias) in enumerate(pairs):
            out[f"{group}.{index}.w"] = weight
            if bias is not None:
                out[f"{group}.{index}.b"] = bias
    out["head.w"], head_bias = layout.head
    assert head_bias is not None
    out["head.b"] = head_bias
    return out


def pack(model: CharRNN, weights: str) -> Packed:
    """Every tensor in the chosen precision, little-endian, 4-byte aligned."""
    parts: list[bytes] = []
    specs: dict[str, dict[str, object]] = {}
    offset = 0

    def put(data: bytes) -> int:
        nonlocal offset
        start = offset
        parts.append(data)
        pad = -len(data) % ALIGN
        parts.append(b"\0" * pad)
        offset += len(data) + pad
        return start

    for name, tensor in named_tensors(model).items():
        array = tensor.detach().float().contiguous().numpy()
        spec: dict[str, object] = {"shape": list(array.shape)}
        if weights == "int8" and array.ndim == 2:
            scales = (np.abs(array).max(axis=1) / np.float32(127)).astype(np.float32)
            scales = np.maximum(scales, np.float32(1e-8)).astype("<f4")
            quantized = np.clip(np.rint(array / scales[:, None]), -127, 127).astype(np.int8)
            spec.update(dtype="i8", offset=put(quantized.tobytes()), scales=put(scales.tobytes()))
        elif weights == "fp16":
            with np.errstate(over="ignore"):
                half = array.astype("<f2")
            if not np.isfinite(half).all():
                raise ConfigError(f"{name} holds weights beyond float16's range (65504); export with --weights fp32")
            spec.update(dtype="f16", offset=put(half.tobytes()))
        else:
            spec.update(dtype="f32", offset=put(array.astype("<f4").tobytes()))
        specs[name] = spec
    return Packed(specs, b"".join(parts))


def script_json(value: object) -> str:
    """JSON safe inside a <script> element (no `</` to end it early)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).replace("</", "<\\/").replace("<!--", "<\\!--")


def describe(model: CharRNN) -> str:
    config = model.config
    return f"{config.num_layers}x{config.hidden_size} {config.cell.upper()}"


def build_page(model: CharRNN, vocab: Vocab, weights: str = "fp16", title: str = "charrnn") -> tuple[str, int]:
    """The page's HTML for `model` with weights in `weights` precision, and the weights' size in bytes."""
    if weights not in WEIGHT_FORMATS:
        raise ConfigError(f"--weights must be one of {', '.join(WEIGHT_FORMATS)} for a page, got {weights!r}")
    config = model.config
    packed = pack(model, weights)
    header = {
        "cell": config.cell,
        "layers": config.num_layers,
        "hidden": config.hidden_size,
        "embed": config.embed_size,
        "chars": vocab.chars,
        "weights": weights,
        "tensors": packed.tensors,
    }
    page, engine = template()
    info = f"{describe(model)}, {vocab.size} characters, {weights} weights"
    replacements = {
        "@@TITLE@@": html.escape(title),
        "@@INFO@@": html.escape(info),
        "@@MODEL@@": script_json(header),
        "@@WEIGHTS@@": base64.b64encode(packed.blob).decode("ascii"),
        "@@ENGINE@@": engine,
    }
    # one pass over the template: a value holding a marker (a title, say) is never searched again
    page = MARKER.sub(lambda found: replacements[found.group(0)], page)
    return page, len(packed.blob)


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f} MB" if size >= 100_000 else f"{size / 1e3:.1f} kB"


def export_html(checkpoint_path: str, out: str, weights: str = "fp16") -> str:
    """Write the page for the checkpoint at `checkpoint_path` (a file or a run directory) to `out`;
    a one-line summary of what was written."""
    from charrnn.store.opening import open_model

    if weights not in WEIGHT_FORMATS:
        raise ConfigError(f"--weights must be one of {', '.join(WEIGHT_FORMATS)} for a page, got {weights!r}")
    opened = open_model(checkpoint_path, "cpu")
    title = Path(display_path(checkpoint_path)).stem
    if title in {"best", "last"}:  # runs/<name>/best.safetensors: the run's name says more
        title = Path(display_path(checkpoint_path)).parent.name or title
    page, weight_bytes = build_page(opened.model, opened.vocab, weights, f"charrnn: {title}")
    data = page.encode("utf-8")
    write_output(out, data, "page")
    return (
        f"wrote {display_path(out)}: {describe(opened.model)}, {weights} weights {megabytes(weight_bytes)}, "
        f"page {megabytes(len(data))}"
    )

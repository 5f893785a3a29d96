"""The one checkpoint format: safetensors (tensors) + JSON metadata, digest-checked, written atomically.

File layout (safetensors): tensors named `model.*` (weights, fp32), `optim.*` (optimizer moments),
`rng.*` (generator states), `raw.*` (with --ema: the weights being trained, the model being their
average); header metadata holds four strings:
  format = "charrnn-checkpoint", format_version = "1", digest = sha256 (hex), meta = JSON.
The digest covers `meta` and every tensor's name, dtype, shape and bytes, so any flipped byte or
truncation is caught on load. Loading never unpickles anything.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from charrnn.errors import CheckpointError
from charrnn.files import atomic_write
from charrnn.model import CharRNN, ModelConfig
from charrnn.store.light import check_shapes, read_bytes, unpack_meta
from charrnn.store.meta import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointMeta,
    read_header,
)
from charrnn.vocab import Vocab


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint holds, already validated."""

    config: ModelConfig
    vocab: Vocab
    weights: dict[str, Tensor]
    meta: dict[str, Any] = field(default_factory=dict)  # the stored JSON, as written
    extra: dict[str, Tensor] = field(default_factory=dict)
    path: str = ""
    info: CheckpointMeta = field(default_factory=CheckpointMeta)  # `meta`, type-checked (do not modify)


def payload_digest(meta_json: str, tensors: dict[str, Tensor]) -> str:
    """sha256 over the metadata JSON and each tensor's name, dtype, shape and raw bytes."""
    digest = hashlib.sha256(meta_json.encode("utf-8"))
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        if tensor.numel():
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(
    path: str | Path,
    config: ModelConfig,
    vocab: Vocab,
    weights: dict[str, Tensor],
    meta: dict[str, Any] | None = None,
    extra: dict[str, Tensor] | None = None,
) -> None:
    """Write one checkpoint file atomically; weights are stored on CPU so any device can load them."""
    from safetensors.torch import save

    tensors = {f"model.{k}": v.detach().float().cpu().contiguous() for k, v in weights.items()}
    for name, tensor in (extra or {}).items():
        tensors[name] = tensor.detach().cpu().contiguous()
    body = dict(meta or {})
    body["model_config"] = config.to_dict()
    body["vocab"] = vocab.chars
    meta_json = json.dumps(body, ensure_ascii=False, allow_nan=False, sort_keys=True)
    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "digest": payload_digest(meta_json, tensors),
        "meta": meta_json,
    }
    atomic_write(Path(path), save(tensors, metadata=header))


def load_checkpoint(path: str | Path) -> Checkpoint:
    """Read, verify and unpack a checkpoint. Every failure is a one-line CheckpointError."""
    return parse_checkpoint(read_bytes(path), str(path))


def parse_checkpoint(data: bytes, where: str) -> Checkpoint:
    """The checks of `load_checkpoint` on bytes already in memory (`where` names them in errors)."""
    from safetensors import SafetensorError
    from safetensors.torch import load

    metadata = read_header(data, where)
    try:
        tensors = load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(f"{where}: corrupted checkpoint ({reason})") from None
    meta_json = metadata["meta"]
    if payload_digest(meta_json, tensors) != metadata["digest"]:
        raise CheckpointError(f"{where}: corrupted checkpoint (digest mismatch); use another copy")
    unpacked = unpack_meta(meta_json, where)
    config, vocab, meta, info = unpacked.config, unpacked.vocab, unpacked.meta, unpacked.info
    weights = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    extra = {k: v for k, v in tensors.items() if not k.startswith("model.")}
    check_shapes(config, weights, where)
    return Checkpoint(config=config, vocab=vocab, weights=weights, meta=meta, extra=extra, path=where, info=info)


def all_finite(tensors: dict[str, Tensor]) -> bool:
    """True when no floating tensor holds NaN or inf (such weights are never written or trusted)."""
    return all(bool(torch.isfinite(t).all()) for t in tensors.values() if t.is_floating_point())


def verify_checkpoint(path: str | Path) -> Checkpoint:
    """Load `path` and check everything a command relies on; CheckpointError names the first problem.

    Beyond `load_checkpoint` (format, version, digest): the weights fit the stored config, the vocab
    size matches, every weight is finite, and the resume state (optimizer, counters) is well formed.
    """
    ckpt = load_checkpoint(path)
    where = ckpt.path
    load_model(ckpt)
    if not all_finite(ckpt.weights):
        raise CheckpointError(f"{where}: weights contain NaN or inf; use an earlier checkpoint")
    groups = ckpt.info.optimizer.get("param_groups", [])
    indices = {i for g in groups for i in g.get("params", [])} if isinstance(groups, list) else set()
    for name in ckpt.extra:
        prefix, _, rest = name.partition(".")
        if prefix not in ("optim", "state", "rng", "raw"):
            raise CheckpointError(f"{where}: unexpected tensor {name!r}")
        if prefix == "raw" and (rest not in ckpt.weights or ckpt.extra[name].shape != ckpt.weights[rest].shape):
            raise CheckpointError(f"{where}: {name!r} does not match the model's {rest!r}")
        index = rest.split(".")[0]
        if prefix == "optim" and not (index.isdigit() and int(index) in indices):
            raise CheckpointError(f"{where}: optimizer state {name!r} has no parameter group")
    return ckpt


def load_model(checkpoint: Checkpoint, device: torch.device | str = "cpu") -> CharRNN:
    """A CharRNN in eval mode with the checkpoint's weights, on `device`."""
    check_shapes(checkpoint.config, checkpoint.weights, checkpoint.path)
    model = CharRNN(checkpoint.config)
    load_weights(model, checkpoint)
    return model.to(device).eval()


def load_weights(model: CharRNN, checkpoint: Checkpoint) -> None:
    """Put the checkpoint's weights into `model` (built from its config), or say why they do not fit."""
    try:
        model.load_state_dict(checkpoint.weights, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(f"{checkpoint.path}: weights do not match the stored config ({first})") from None

"""Reading a checkpoint without torch: the same checks as `store.checkpoint.load_checkpoint`, the
weights as numpy arrays. What the torch-free sampling start (charrnn.sampling.numpy_backend) opens.

`load_checkpoint` shares these steps (the file's bytes, the metadata's unpacking, the shapes), so
the two readers cannot come to accept different files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from charrnn.errors import CheckpointError
from charrnn.files import NotARegularFile, open_regular
from charrnn.model_config import TENSORS_PER_LAYER, ModelConfig, parameter_shapes
from charrnn.store.meta import SUFFIX, CheckpointMeta, decode_meta, header_length, read_header
from charrnn.store.tensors import raw_digest, read_tensors
from charrnn.vocab import Vocab


def read_bytes(path: str | Path) -> bytes:
    """A checkpoint file's bytes: a regular file, its header length checked before the rest is read."""
    where = str(path)
    try:
        with open_regular(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            prefix = handle.read(8)
            header_length(prefix, size, where)  # before reading the rest: a huge foreign file stays unread
            return prefix + handle.read()
    except FileNotFoundError:
        raise CheckpointError(f"{where}: checkpoint not found; check the path or run `charrnn runs`") from None
    except IsADirectoryError:
        raise CheckpointError(f"{where}: is a directory; pass a checkpoint file such as {where}/best{SUFFIX}") from None
    except NotARegularFile as exc:
        raise CheckpointError(f"{where}: {exc.strerror}, not a checkpoint file") from None
    except OSError as exc:
        raise CheckpointError(f"{where}: cannot read checkpoint ({exc.strerror or exc})") from None


@dataclass(frozen=True)
class Unpacked:
    """The metadata of a checkpoint whose digest matched, checked: config, vocabulary, the rest."""

    config: ModelConfig
    vocab: Vocab
    meta: dict[str, Any]  # the stored JSON without model_config and vocab
    info: CheckpointMeta


def unpack_meta(meta_json: str, where: str) -> Unpacked:
    meta = decode_meta(meta_json, where)
    for name in ("model_config", "vocab"):
        if name not in meta:
            raise CheckpointError(f"{where}: malformed checkpoint metadata ({name}: missing)")
    try:
        config = ModelConfig.from_dict(meta.pop("model_config"))
    except Exception as exc:  # malformed fields inside a well-formed file
        raise CheckpointError(f"{where}: malformed checkpoint metadata ({exc})") from None
    try:
        vocab = Vocab(meta.pop("vocab"))
    except Exception as exc:
        raise CheckpointError(f"{where}: malformed checkpoint metadata (vocab: {exc})") from None
    if vocab.size != config.vocab_size:
        raise CheckpointError(f"{where}: vocab has {vocab.size} characters but the model expects {config.vocab_size}")
    return Unpacked(config, vocab, meta, CheckpointMeta.parse(meta, where))


def check_shapes(config: ModelConfig, weights: dict[str, Any], where: str) -> None:
    """The weights are exactly those the config describes (shapes computed, nothing allocated,
    so a forged config cannot make a command allocate terabytes)."""
    if len(weights) != 3 + TENSORS_PER_LAYER * config.num_layers:  # before a loop sized by num_layers
        raise CheckpointError(
            f"{where}: weights do not match the stored config ({len(weights)} tensors for {config.num_layers} layers)"
        )
    expected = parameter_shapes(config)
    found = {k: tuple(v.shape) for k, v in weights.items()}
    if expected != found:
        wrong = sorted(set(expected) ^ set(found)) or sorted(k for k in expected if expected[k] != found[k])
        raise CheckpointError(f"{where}: weights do not match the stored config ({', '.join(wrong[:3])})")


@dataclass(frozen=True)
class LightCheckpoint:
    """A checked checkpoint's model, in numpy: what sampling needs, nothing of the training state."""

    config: ModelConfig
    vocab: Vocab
    weights: dict[str, np.ndarray]  # the CharRNN state-dict names (`rnn.weight_ih_l0`, ...), float32
    path: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    info: CheckpointMeta = field(default_factory=CheckpointMeta)


def load_light(path: str | Path) -> LightCheckpoint:
    """Read and verify a checkpoint (digest, metadata schema, shapes) without importing torch."""
    where = str(path)
    data = read_bytes(path)
    metadata = read_header(data, where)
    tensors = read_tensors(data, where)
    if raw_digest(metadata["meta"], tensors) != metadata["digest"]:
        raise CheckpointError(f"{where}: corrupted checkpoint (digest mismatch); use another copy")
    unpacked = unpack_meta(metadata["meta"], where)
    raw = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    check_shapes(unpacked.config, raw, where)
    if any(t.dtype != "F32" for t in raw.values()):
        raise CheckpointError(f"{where}: weights are not float32; the file was not written by charrnn")
    weights = {name: tensor.float32() for name, tensor in raw.items()}
    return LightCheckpoint(unpacked.config, unpacked.vocab, weights, where, unpacked.meta, unpacked.info)

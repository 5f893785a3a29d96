"""The checkpoint's metadata: one header reader and one typed schema, used by every command.

A checkpoint's safetensors header carries four strings: `format` ("charrnn-checkpoint"),
`format_version`, `digest` and `meta` (JSON). `read_header` checks the first three; `CheckpointMeta`
is `meta` with every field type-checked, so that a forged or hand-edited file is refused with one
line instead of failing later inside a command. Reading the header needs no torch and no weights:
`runs` and `plot` list many checkpoints through `read_file_meta`.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from charrnn.errors import CheckpointError
from charrnn.files import NotARegularFile, open_regular
from charrnn.store.schema import (
    Rule,
    SchemaError,
    anything,
    boolean,
    either,
    integer,
    list_of,
    number,
    one_of,
    optional,
    record,
    scalar,
    text,
)

FORMAT = "charrnn-checkpoint"
FORMAT_VERSION = 1
SUFFIX = ".safetensors"
MAX_HEADER_BYTES = 100 * 1024 * 1024


def parse_header(raw: bytes, where: str) -> dict[str, str]:
    """The charrnn metadata of a safetensors header's JSON bytes, checked for format and version."""
    if any(byte in raw for byte in b"\t\n\r"):  # the header is compact JSON padded with spaces
        raise CheckpointError(f"{where}: corrupted checkpoint (stray whitespace in the header)")
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"{where}: not a charrnn checkpoint (unreadable header)") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise CheckpointError(f"{where}: not a charrnn checkpoint (no charrnn metadata)")
    version = metadata.get("format_version", "")
    if version != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{where}: checkpoint format version {version!r} is not supported by this charrnn "
            f"(reads version {FORMAT_VERSION}); upgrade charrnn to load it"
        )
    if not all(isinstance(metadata.get(key), str) for key in ("digest", "meta")):
        raise CheckpointError(f"{where}: not a charrnn checkpoint (incomplete charrnn metadata)")
    return metadata


def header_length(prefix: bytes, available: int, where: str) -> int:
    """The header length in the first 8 bytes, checked against what the file can hold."""
    if len(prefix) < 8:
        raise CheckpointError(f"{where}: not a charrnn checkpoint (file too short)")
    (length,) = struct.unpack("<Q", prefix[:8])
    if not 0 < length <= min(MAX_HEADER_BYTES, available - 8):
        raise CheckpointError(f"{where}: not a charrnn checkpoint, or truncated (bad header length)")
    return int(length)


def read_header(data: bytes, where: str) -> dict[str, str]:
    """The charrnn metadata of a whole checkpoint file's bytes."""
    length = header_length(data[:8], len(data), where)
    return parse_header(data[8 : 8 + length], where)


def read_file_header(path: Path) -> dict[str, str]:
    """The charrnn metadata of a checkpoint file, reading only its header (no weights, no digest check)."""
    where = str(path)
    try:
        with open_regular(path) as handle:
            size = os.fstat(handle.fileno()).st_size
            length = header_length(handle.read(8), size, where)
            return parse_header(handle.read(length), where)
    except NotARegularFile as exc:
        raise CheckpointError(f"{where}: {exc.strerror}, not a checkpoint file") from None
    except OSError as exc:
        raise CheckpointError(f"{where}: cannot read checkpoint ({exc.strerror or exc})") from None


def decode_meta(text: str, where: str) -> dict[str, Any]:
    try:
        meta = json.loads(text)
    except (json.JSONDecodeError, RecursionError):
        raise CheckpointError(f"{where}: malformed checkpoint metadata (not JSON)") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{where}: malformed checkpoint metadata (not an object)")
    return meta


@dataclass
class RunState:
    """The counters of a run that change every step: the loop's own record, saved in every checkpoint."""

    step: int = 0
    epoch: int = 0
    window: int = 0
    elapsed_s: float = 0.0
    val_reserve_s: float = 0.0  # of a time budget, kept for the final validation when the run last decided (0: none)
    best_val_loss: float | None = None
    best_step: int | None = None
    evals_without_improvement: int = 0
    last_eval_step: int = 0
    lr_scale: float = 1.0  # halved at each rollback after non-finite losses
    rollbacks: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)  # validation rows


@dataclass
class CheckpointMeta(RunState):
    """What a checkpoint says about its run, beside the model config and vocab (defaults: not recorded)."""

    kind: str = ""  # "best" or "last"
    world_size: int = 1
    command: str = ""
    created: str = ""
    options: dict[str, Any] = field(default_factory=dict)  # as given (training.options parses them)
    train_config: dict[str, Any] = field(default_factory=dict)  # training.config.TrainConfig.from_json
    optimizer: dict[str, Any] = field(default_factory=dict)  # {"param_groups": [...]}
    corpus: dict[str, Any] = field(default_factory=dict)  # sources, paths, digest, chars, ...
    versions: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, meta: dict[str, Any], where: str) -> CheckpointMeta:
        """The typed view of a checkpoint's metadata; CheckpointError names the first bad field by its path."""
        try:
            checked = METADATA(meta, "")
        except SchemaError as exc:
            raise CheckpointError(f"{where}: malformed checkpoint metadata ({exc})") from None
        values = {name: checked[name] for name in FIELDS if checked.get(name) is not None}
        for name in ("elapsed_s", "val_reserve_s", "lr_scale", "best_val_loss"):
            if name in values:
                values[name] = float(values[name])
        return cls(**values)


# The declaration of every record charrnn writes into a checkpoint's `meta` (training.run_store writes
# them). `options` and `train_config` are declared where they are defined, by the option declarations
# (training.options) and TrainConfig (training.config): a resume and `verify` check them in full there.
COUNT = integer(0)
HISTORY_ROW = record(
    {
        "event": one_of("val"),
        "step": COUNT,
        "epoch": number(0),
        "elapsed_s": number(0),
        "val_loss": optional(number()),
        "val_bpc": optional(number()),
        "best": boolean(),
    },
    required=("event", "step"),
)
PARAM_GROUP = record(  # AdamW's param_groups entry: the indices of its parameters, and its settings
    {"params": list_of(integer(0, 1 << 20), max_len=1 << 20)},
    required=("params",),
    others=either(scalar(), list_of(number(), max_len=4), expected="a setting (a number, string, flag or pair)"),
)
CORPUS = record(
    {
        "sources": list_of(text(nonempty=True), min_len=1, max_len=1 << 20),
        "paths": list_of(text(nonempty=True), min_len=1, max_len=1 << 20),
        "digest": text(pattern="[0-9a-f]{64}"),
        "separator": text(),
        "skipped": list_of(list_of(text(), max_len=2), max_len=1 << 20),
        "chars": COUNT,
        "train_chars": COUNT,
        "val_chars": COUNT,
        "val_scored_chars": COUNT,
    }
)
METADATA_FIELDS: dict[str, Rule] = {
    "kind": text(max_len=64),
    "step": COUNT,
    "epoch": COUNT,
    "window": COUNT,
    "elapsed_s": number(0),
    "val_reserve_s": number(0),
    "best_val_loss": optional(number()),
    "best_step": optional(COUNT),
    "evals_without_improvement": COUNT,
    "last_eval_step": COUNT,
    "lr_scale": number(0),
    "rollbacks": COUNT,
    "world_size": integer(1, 1 << 20),
    "command": text(),
    "created": text(max_len=64),
    "options": record({}, others=anything),
    "train_config": record({}, others=anything),
    "optimizer": record({"param_groups": list_of(PARAM_GROUP, max_len=64)}),
    "corpus": CORPUS,
    "versions": record({}, others=text(max_len=256)),
    "history": list_of(HISTORY_ROW, max_len=1 << 20),
}
METADATA = record(METADATA_FIELDS, others=anything)  # fields a later charrnn may add: nothing here reads them
FIELDS = tuple(f.name for f in fields(CheckpointMeta))


def read_file_meta(path: Path) -> tuple[dict[str, Any], CheckpointMeta]:
    """A checkpoint file's metadata from its header alone: (raw JSON, typed view); for listings."""
    where = str(path)
    raw = decode_meta(read_file_header(path)["meta"], where)
    return raw, CheckpointMeta.parse(raw, where)

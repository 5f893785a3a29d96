"""The closed sets of values that options take, as Enums (Typer lists their values in `--help`).

Each member is also its own string (`Cell.LSTM == "lstm"`), so stored configs and JSON stay plain.
"""

from __future__ import annotations

from enum import Enum
from typing import Any, TypeVar

from charrnn.errors import ConfigError

C = TypeVar("C", bound="Choice")


class Choice(str, Enum):
    """A str Enum that prints as its value (Python 3.11 would print `Cell.LSTM`)."""

    def __str__(self) -> str:
        return str(self.value)

    def __format__(self, spec: str) -> str:
        return format(str(self.value), spec)

    @classmethod
    def parse(cls: type[C], value: Any, flag: str) -> C:
        """`value` as a member, or a ConfigError naming the flag and the choices."""
        try:
            return cls(value)
        except ValueError:
            raise ConfigError(f"{flag} must be one of {cls.listing()}, got {value!r}") from None

    @classmethod
    def listing(cls, joiner: str = ", ") -> str:
        return joiner.join(str(member.value) for member in cls)


class Cell(Choice):
    LSTM = "lstm"
    GRU = "gru"
    RNN = "rnn"


class DType(Choice):
    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"


class Errors(Choice):
    """What to do with invalid UTF-8 in a corpus."""

    STRICT = "strict"
    REPLACE = "replace"
    IGNORE = "ignore"


class Decay(Choice):
    """How the learning rate falls after warmup, reaching zero as the budget runs out."""

    LINEAR = "linear"
    COSINE = "cosine"


class Engine(Choice):
    FAST = "fast"
    MODULE = "module"


class Weights(Choice):
    FP32 = "fp32"
    INT8 = "int8"


class ExportFormat(Choice):
    """What `charrnn export` writes: an ONNX step graph, or a self-contained HTML page."""

    ONNX = "onnx"
    HTML = "html"


class ExportWeights(Choice):
    """The weights an export stores (ONNX takes fp32 only)."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"


class OutputFormat(Choice):
    TEXT = "text"
    JSONL = "jsonl"


class Axis(Choice):
    STEP = "step"
    TIME = "time"
    EPOCH = "epoch"


class RunOrder(Choice):
    DATE = "date"
    BPC = "bpc"

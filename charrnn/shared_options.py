"""The options every command shares (--device, --threads, -c), as plain data: help texts, bounds
and the rule that picks --device's default.

No typer and no torch here: training.options (which `import charrnn` loads) and the CLI's Typer
declarations (cli.common) both read this module, so each help text and default is written once.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from types import MappingProxyType


class Work(Enum):
    """What a command asks of a device; it decides where the command runs by default."""

    THROUGHPUT = "throughput"  # train, eval: many characters per step, where a GPU pays for its launches
    LATENCY = "latency"  # sample, repl, serve, explain, neurons, memory: one stream, step by step


# The rule, stated once: one stream is fastest on a CPU (a GPU waits on a launch per character).
DEFAULT_DEVICE: Mapping[Work, str] = MappingProxyType({Work.THROUGHPUT: "auto", Work.LATENCY: "cpu"})

DEVICE_METAVAR = "auto|cpu|cuda|mps"
DEVICE_CHOICES = "auto, cpu, cuda or mps."
DEVICE_DEFAULTS = (
    f"{DEFAULT_DEVICE[Work.LATENCY]} for sampling, serving and insight (one stream is fastest on a CPU), "
    f"{DEFAULT_DEVICE[Work.THROUGHPUT]} for train and eval"
)

THREADS_HELP = "CPU threads."
MAX_THREADS = 1024

CHECKPOINT_METAVAR = "CKPT"


def with_default(help: str, default: str) -> str:
    """A help text and the default Typer cannot show: a rule, or what None ("chosen for you") means."""
    return f"{help} [default: {default}]"


DEVICE_HELP = with_default(DEVICE_CHOICES, DEVICE_DEFAULTS)


def checkpoint_help(repeatable: bool = False) -> str:
    """-c's help (and `info`'s argument's); serve takes several."""
    what = "Checkpoint file or run directory" + (" (repeatable)." if repeatable else ".")
    return with_default(what, "newest run's best")


CHECKPOINT_HELP = checkpoint_help()


def threads_help(default: str) -> str:
    """--threads' one help text, with the default of the command that declares it."""
    return with_default(THREADS_HELP, default)

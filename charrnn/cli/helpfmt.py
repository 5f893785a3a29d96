"""Finishing touches on `--help` screens, applied to every command in one place.

Help texts may write `[default: ...]` for defaults Typer cannot show (None meaning "chosen for
you"); Rich markup would take that for a style tag and drop it, so it is escaped here.

Typer shows each option's Python type (`<str>`, `<bool>`); a user needs to know what to write
instead (`DURATION`, `N`, `lstm|gru|rnn`), and a flag takes no value at all. Options that name no
help panel are put into the panel their name suggests, so every command groups its flags the same
way (Model / Optimisation / Budget / Checkpoints / System / Output) and a flag added later lands
somewhere sensible without extra work.
"""

from __future__ import annotations

import re
from typing import Any

METAVARS = {  # training options declare theirs (training.options); choices show their values
    "device": "auto|cpu|cuda|mps",
    "checkpoint": "CKPT",
    "prime": "TEXT",
    "prime_file": "FILE",
    "output": "FILE",
    "stop": "TEXT",
    "top_p": "P",
    "temp": "T",
}
UNESCAPED_DEFAULT = re.compile(r"(?<!\\)\[default:")
BY_TYPE = {"int": "N", "float": "X", "str": "TEXT", "Path": "PATH"}
ARGUMENTS = {"corpus": "CORPUS", "files": "FILE", "checkpoint": "CKPT", "runs": "RUN_DIR", "directory": "DIR"}
PANEL_ORDER = ("Model", "Optimisation", "Budget", "Checkpoints", "Sampling", "Chart", "Listing", "Input", "System")
PANELS = {
    "checkpoint": "Checkpoints",
    "resume": "Checkpoints",
    "init_from": "Checkpoints",
    "device": "System",
    "dtype": "System",
    "threads": "System",
    "errors": "Input",
    "as_json": "Output",
    "quiet": "Output",
    "output": "Output",
    "format": "Output",
}
DEFAULT_PANEL = {"sample": "Sampling", "plot": "Chart", "runs": "Listing"}


def bare_type(param: Any) -> str:
    try:
        return str(param.bare_type())
    except Exception:  # another Typer version: keep its own display
        return ""


def panel_rank(param: Any) -> int:
    if getattr(param, "param_type_name", "") != "option":
        return -1
    panel = getattr(param, "rich_help_panel", None)
    return PANEL_ORDER.index(panel) if panel in PANEL_ORDER else len(PANEL_ORDER)


def flagless(get_help_option: Any) -> Any:
    """Wrap `get_help_option` so that --help, a flag, shows no value placeholder."""

    def wrapped(ctx: Any) -> Any:
        option = get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option

    return wrapped


def polish(command: Any, name: str = "") -> None:
    """Set readable metavars and help panels on a Typer command and all its subcommands, in place.

    Duck-typed on purpose: Typer vendors its own copy of click, whose classes are private.
    """
    for param in getattr(command, "params", []):
        kind = getattr(param, "param_type_name", "")
        if isinstance(getattr(param, "help", None), str):  # Rich markup would swallow "[default: ...]"
            param.help = UNESCAPED_DEFAULT.sub(r"\\[default:", param.help)
        if kind == "argument":
            param.metavar = param.metavar or ARGUMENTS.get(param.name)
            param.display_type_rich = lambda ctx: None  # the name says it; `<list[str]>` does not help
        if kind != "option":
            continue
        if param.is_flag:
            param.metavar = ""
        elif param.metavar is None:
            param.metavar = METAVARS.get(param.name or "") or BY_TYPE.get(bare_type(param))
        if getattr(param, "rich_help_panel", None) is None and param.name != "help":
            panel = PANELS.get(param.name or "") or DEFAULT_PANEL.get(name)
            if panel:
                param.rich_help_panel = panel
    params = getattr(command, "params", None)
    if isinstance(params, list):  # panels in a fixed order; arguments keep theirs, at the front
        params.sort(key=panel_rank)
    get_help_option = getattr(command, "get_help_option", None)
    if callable(get_help_option):
        command.get_help_option = flagless(get_help_option)
    for sub_name, sub in (getattr(command, "commands", None) or {}).items():
        polish(sub, sub_name)

"""The server's messages name only flags that exist (they once named --max-body-bytes and --max-prompt-chars)."""

from __future__ import annotations

import re
from dataclasses import fields
from pathlib import Path

import typer

from charrnn.cli.app import app
from charrnn.serve.limits import Limits, flag

SERVE = Path(__file__).resolve().parents[1] / "charrnn" / "serve"
NOT_SERVE_FLAGS = {"--prime", "--seed"}  # `charrnn sample`'s, named where a docstring compares the two


def serve_flags() -> set[str]:
    command = typer.main.get_command(app).commands["serve"]  # type: ignore[attr-defined]
    return {name for param in command.params for name in getattr(param, "opts", []) if name.startswith("--")}


def test_every_flag_the_server_names_exists() -> None:
    named = {m for path in SERVE.glob("*.py") for m in re.findall(r"--[a-z][a-z-]+", path.read_text(encoding="utf-8"))}
    assert named - NOT_SERVE_FLAGS <= serve_flags()


def test_every_limit_a_flag_sets_is_named_by_its_flag() -> None:
    flags = serve_flags()
    internal = {"default_max_tokens", "max_prompts", "max_json_depth", "keep_alive_s", "max_header_bytes"}
    for field in fields(Limits):
        if field.name not in internal:
            assert "--" + flag(field.name) in flags, field.name

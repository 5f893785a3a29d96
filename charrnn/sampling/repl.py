"""The interactive session behind `charrnn repl`: the model stays loaded between prompts.

Each line typed is appended to a running context and primes a continuation, so a conversation
with the model builds on what came before until `:reset`. Lines starting with `:` are commands.
This module decides what a line means; the CLI reads lines and prints (no printing here).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from typing import Union

import torch

from charrnn.errors import CharRNNError, ConfigError
from charrnn.model import CharRNN
from charrnn.sampling.controls import (
    CONTROLS,
    DEFAULTS,
    SAMPLE_CONTROLS,
    Kind,
    RunSettings,
    SampleSettings,
    parse_value,
)
from charrnn.sampling.generate import check_prime, generate, new_seed
from charrnn.sampling.pick import compile_settings
from charrnn.vocab import Vocab

CONTEXT_CHARS = 4096  # the most recent context fed as the prime; older text is dropped

HELP = """commands:
  :temp T      temperature (0 = greedy)          :length N   characters per reply
  :seed S      reproducible replies from seed S  :seed       random seeds again
  :set NAME V  any sampling control by its flag name, e.g. :set top-p 0.9, :set stop .
               (:set NAME alone puts it back to its default; :set lists the names)
  :reset       forget the conversation so far    :show       current settings
  :help        this text                         :quit       leave (or Ctrl-D)"""
SETTABLE = {spec.flag: name for name, spec in SAMPLE_CONTROLS.items()} | {"stop": "stop"}


@dataclass(frozen=True)
class Message:
    """Something to tell the user (not model text)."""

    text: str


@dataclass(frozen=True)
class Quit:
    """The user asked to leave."""


@dataclass(frozen=True)
class Continuation:
    """Model text, in chunks as it is produced."""

    chunks: Iterator[str]


Reply = Union[Message, Quit, Continuation]


class Session:
    """One REPL conversation: settings, the seed sequence and the text so far."""

    def __init__(
        self,
        model: CharRNN,
        vocab: Vocab,
        settings: SampleSettings | None = None,
        length: int = 200,
        seed: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.model, self.vocab, self.device = model, vocab, device
        self.settings = settings or SampleSettings()
        self.length = length
        self.seed = seed  # None: a fresh random seed per reply; else seed, seed+1, ...
        self.context = ""
        self.separator = "\n" if vocab.index("\n") is not None else ""
        self.stop: tuple[str, ...] = ()

    def handle(self, line: str) -> Reply:
        """What one typed line (without its newline) asks for."""
        if line.startswith(":"):
            try:
                return self.command(line[1:].split())
            except CharRNNError as exc:
                return Message(f"error: {exc}")
        return self.continue_from(line)

    def command(self, words: list[str]) -> Reply:
        name, args = (words[0].lower(), words[1:]) if words else ("", [])
        if name in ("q", "quit", "exit"):
            return Quit()
        if name in ("h", "help", "?", ""):
            return Message(HELP)
        if name == "reset":
            self.context = ""
            return Message("context cleared")
        if name == "show":
            seed = "random" if self.seed is None else str(self.seed)
            shown = [f"temp {self.settings.temperature}", f"length {self.length}", f"seed {seed}"]
            for f in fields(self.settings):
                if f.name != "temperature" and getattr(self.settings, f.name) != f.default:
                    shown.append(f"{SAMPLE_CONTROLS[f.name].flag} {getattr(self.settings, f.name)!r}")
            if self.stop:
                shown.append(f"stop {self.stop!r}")
            return Message("  ".join(shown))
        if name == "set":
            return self.set(args)
        if name in ("temp", "temperature"):
            self.settings = replace(self.settings, temperature=number(name, args, float))
            return Message(f"temp {self.settings.temperature}")
        if name == "length":
            length = int(number(name, args, int))
            if length < 1:
                raise ConfigError(f":length must be at least 1, got {length}")
            self.length = length
            return Message(f"length {length}")
        if name == "seed":
            self.seed = int(number(name, args, int)) if args else None
            return Message(f"seed {self.seed}" if self.seed is not None else "seed random")
        return Message(f"unknown command :{name}; :help lists them")

    def set(self, args: list[str]) -> Reply:
        """`:set NAME VALUE`: a control by its flag name, parsed and checked as the flag is."""
        if not args:
            return Message("controls: " + " ".join(sorted(SETTABLE)))
        flag, rest = args[0].removeprefix("--"), " ".join(args[1:])
        name = SETTABLE.get(flag)
        if name is None:
            return Message(f"unknown control {flag!r}; :set lists them")
        kind = CONTROLS[name].kind
        value: object = None if not rest else ([rest] if kind in (Kind.STOPS, Kind.BIAS) else rest)
        if name == "stop":
            self.stop = parse_value(name, value, "flag") or ()
            return Message(f"stop {self.stop!r}")
        settings = replace(self.settings, **{name: parse_value(name, value, "flag") if rest else DEFAULTS[name]})
        if settings.match is not None:
            compile_settings(settings, self.vocab.chars)  # a regex nothing matches fails now, not at the next line
        self.settings = settings
        return Message(f"{flag} {getattr(settings, name)!r}")

    def continue_from(self, line: str) -> Reply:
        """Continue the conversation after `line`; the context grows by the line and the reply."""
        try:
            check_prime(self.vocab, line)
        except CharRNNError as exc:
            return Message(f"error: {exc}")
        prime = (self.context + line)[-CONTEXT_CHARS:]
        seed = new_seed() if self.seed is None else self.seed
        if self.seed is not None:
            self.seed += 1
        run = RunSettings(length=self.length, seed=seed, stop=self.stop)
        chunks = generate(self.model, self.vocab, prime, self.settings, run, self.device)
        return Continuation(self._record(line, chunks))

    def _record(self, line: str, chunks: Iterator[str]) -> Iterator[str]:
        reply: list[str] = []
        for chunk in chunks:
            reply.append(chunk)
            yield chunk
        self.context = (self.context + line + "".join(reply) + self.separator)[-CONTEXT_CHARS:]


def number(name: str, args: list[str], kind: type[int] | type[float]) -> int | float:
    """The single numeric argument of a command, or a ConfigError saying what was expected."""
    try:
        (value,) = args
        return kind(value)
    except ValueError:
        raise ConfigError(f":{name} takes one {kind.__name__} argument, e.g. :{name} 1") from None

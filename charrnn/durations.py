"""Parse human durations (`90s`, `10m`, `1h30m`) and step-or-time intervals (`500`, `5m`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from charrnn.errors import ConfigError

_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)([hms])")


def parse_duration(text: str) -> float:
    """Seconds in `text`: a bare number is seconds; otherwise parts like `1h30m`, `90s`, `2.5m`."""
    value = text.strip().lower()
    try:
        seconds = float(value)
    except ValueError:
        pos, seconds = 0, 0.0
        for match in _PART.finditer(value):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
            pos = match.end()
        if pos != len(value) or not value:
            raise ConfigError(
                f"cannot read duration {text!r}; write it like 90s, 10m, 1h30m or a number of seconds"
            ) from None
    if seconds <= 0:
        raise ConfigError(f"duration {text!r} must be positive")
    return seconds


def format_duration(seconds: float) -> str:
    """`95.2` -> `1m35s`: short and readable for banners and summaries."""
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{seconds:.1f}s" if seconds < 10 else f"{secs}s"


def duration_text(seconds: float) -> str:
    """Seconds as a duration `parse_duration` reads back exactly: `5m`, `1h30m`, `90s`, `26.666666666666668s`."""
    if not float(seconds).is_integer():
        return f"{seconds!r}s"
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{hours}h" if hours else "", f"{minutes}m" if minutes else "", f"{secs}s" if secs else ""]
    return "".join(parts) or "0s"


@dataclass(frozen=True)
class Interval:
    """Every N steps or every S seconds of wall time (exactly one of the two is set)."""

    steps: int | None = None
    seconds: float | None = None

    @classmethod
    def parse(cls, text: str) -> Interval:
        """`500` means steps; anything with a unit (`5m`, `30s`) means wall time."""
        value = text.strip()
        if value.isdigit():
            if int(value) <= 0:
                raise ConfigError(f"interval {text!r} must be positive")
            return cls(steps=int(value))
        return cls(seconds=parse_duration(value))

    def due(self, step: int, last_step: int, now: float, last_time: float) -> bool:
        """True when the interval has elapsed since the last event."""
        if self.steps is not None:
            return step - last_step >= self.steps
        return self.seconds is not None and now - last_time >= self.seconds

    @property
    def spec(self) -> str:
        """The interval as a user writes it, and as `parse` reads it back: `500`, `5m`, `26.5s`."""
        return str(self.steps) if self.steps is not None else duration_text(self.seconds or 0.0)

    def __str__(self) -> str:
        return f"{self.steps} steps" if self.steps is not None else format_duration(self.seconds or 0)

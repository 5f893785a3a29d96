from __future__ import annotations

import pytest

from charrnn.durations import Interval, format_duration, parse_duration
from charrnn.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("90s", 90), ("10m", 600), ("1h30m", 5400), ("2h", 7200), ("1.5m", 90), ("1m30s", 90)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "10x", "m10", "-5", "0", "5m3"])
def test_bad_durations_are_errors(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_duration(text)


def test_interval_steps_or_time() -> None:
    steps = Interval.parse("500")
    assert steps.steps == 500 and steps.due(500, 0, 0.0, 0.0) and not steps.due(499, 0, 0.0, 0.0)
    timed = Interval.parse("5m")
    assert timed.seconds == 300 and timed.due(1, 0, 300.0, 0.0) and not timed.due(1, 0, 299.0, 0.0)


def test_format_duration() -> None:
    assert format_duration(95) == "1m35s"
    assert format_duration(3700) == "1h01m"
    assert format_duration(2.25) == "2.2s"

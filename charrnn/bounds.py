"""The one range check of a declared number (training options and generation controls alike), with
the message naming it as the user wrote it. Comparisons are written so that NaN fails every one."""

from __future__ import annotations

import math

from charrnn.errors import ConfigError


def check_bounds(
    where: str,
    number: float,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    positive: bool = False,
) -> float:
    """`number` if it is within [minimum, maximum], strictly above `above`, positive when asked, and
    finite; else a ConfigError naming `where`."""
    if positive and not 0 < number < math.inf:
        raise ConfigError(f"{where} must be a positive number, got {number}")
    if above is not None and not number > above:
        rule = f"in ({above:g}, {maximum:g}]" if maximum is not None else f"above {above:g}"
        raise ConfigError(f"{where} must be {rule}, got {number}")
    between = f"between {minimum:g} and {maximum:g}" if minimum is not None and maximum is not None else ""
    if minimum is not None and not minimum <= number:
        raise ConfigError(f"{where} must be {between or f'at least {minimum:g}'}, got {number}")
    if maximum is not None and not number <= maximum:
        raise ConfigError(f"{where} must be {between or f'at most {maximum:g}'}, got {number}")
    if not abs(number) < math.inf:
        raise ConfigError(f"{where} must be finite, got {number}")
    return number

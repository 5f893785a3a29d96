"""Ctrl-C and SIGTERM during training: the first asks the loop to finish its step and save.

A second one stops at once (KeyboardInterrupt). Under torchrun the first Ctrl-C reaches each rank
twice (from the terminal, then forwarded by torchrun), so there a repeat within
`DUPLICATE_SIGNAL_S` is the same request, not a second one.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

SIGNAL_EXIT = {signal.SIGINT: 130, signal.SIGTERM: 143}
DUPLICATE_SIGNAL_S = 2.0  # torchrun forwards the terminal's Ctrl-C: the same signal twice at once


@contextmanager
def stop_requests(on_request: Callable[[int], None], distributed: bool) -> Iterator[None]:
    """While inside, the first SIGINT/SIGTERM calls `on_request(signum)`; handlers are restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    first_at: list[float] = []

    def handler(signum: int, frame: object) -> None:
        if first_at:
            duplicate = distributed and time.monotonic() - first_at[0] < DUPLICATE_SIGNAL_S
            if not duplicate:
                raise KeyboardInterrupt
            return
        first_at.append(time.monotonic())
        on_request(signum)

    previous = {sig: signal.signal(sig, handler) for sig in SIGNAL_EXIT}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def exit_code(signum: int) -> int:
    return SIGNAL_EXIT.get(signal.Signals(signum), 130)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name

"""One owner per run directory: an exclusive `flock` on the directory itself, held for the whole run.

Two `charrnn train --out same` started together would otherwise both write into one directory
(best/last from one, config.json from the other, metrics interleaved). The lock is advisory and
taken on the directory's own descriptor, so it needs no lock file, and the kernel drops it when
the process ends, however it ends: a killed run never leaves a stale lock behind. Where `fcntl`
does not exist (Windows) runs are not locked.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]


class RunBusy(Exception):
    """The directory is locked by another live process."""

    def __init__(self, directory: Path) -> None:
        super().__init__(f"{directory} is in use by another charrnn process")
        self.directory = directory


class RunLock:
    """Held from `acquire` until `release`, or until the lock is garbage-collected or the process ends."""

    def __init__(self, directory: Path, fd: int | None) -> None:
        self.directory, self.fd = directory, fd

    @classmethod
    def acquire(cls, directory: Path) -> RunLock:
        """Lock `directory` (which must exist) without waiting; RunBusy if someone else holds it."""
        if fcntl is None:
            return cls(directory, None)
        fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise RunBusy(directory) from None
        except BaseException:
            os.close(fd)
            raise
        return cls(directory, fd)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None

    def __del__(self) -> None:
        self.release()

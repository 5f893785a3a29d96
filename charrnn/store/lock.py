"""One owner per run directory: an exclusive lock on `RUN_DIR/.lock`, held for the whole run.

Two `charrnn train --out same` started together would otherwise both write into one directory
(best/last from one, config.json from the other, metrics interleaved). The lock is an advisory
`flock`: the kernel drops it when the process ends, however it ends, so a killed run never
leaves a stale lock behind. Where `fcntl` does not exist (Windows) runs are not locked.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".lock"


class RunBusy(Exception):
    """The directory is locked by another live process (its pid, when it wrote one)."""

    def __init__(self, directory: Path, pid: str) -> None:
        super().__init__(f"{directory} is in use by another charrnn process{f' (pid {pid})' if pid else ''}")
        self.directory, self.pid = directory, pid


class RunLock:
    """Held from `acquire` until `release` (or the end of the process)."""

    def __init__(self, directory: Path, fd: int | None) -> None:
        self.directory, self.fd = directory, fd

    @classmethod
    def acquire(cls, directory: Path) -> RunLock:
        """Lock `directory` (which must exist) without waiting; RunBusy if someone else holds it."""
        if fcntl is None:
            return cls(directory, None)
        path = directory / LOCK_FILE
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            os.close(fd)
            raise RunBusy(directory, pid) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return cls(directory, fd)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
            self.fd = None

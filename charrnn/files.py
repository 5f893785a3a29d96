"""Writing files so that a crash or a full disk never leaves a torn one in place of the last good one."""

from __future__ import annotations

import errno
import os
import stat
import sys
from pathlib import Path
from typing import BinaryIO

from charrnn.errors import InputError


def atomic_write(path: Path, data: bytes) -> None:
    """Temp file in the same directory, fsync, rename over the target, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class NotARegularFile(OSError):
    """A path that names a FIFO, a device, a socket or a directory where a file is needed."""


def file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a regular file"


def open_regular(path: str | Path) -> BinaryIO:
    """Open `path` for reading only if it is a regular file.

    Opened non-blocking first, so a FIFO with no writer cannot hang the open, then checked on the
    descriptor itself (no race between the check and the read): a FIFO or a device would block or
    never end, and reading one as a checkpoint or a corpus is never what the user meant.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = file_kind(mode)
            raise NotARegularFile(errno.EISDIR if kind == "a directory" else errno.EINVAL, f"is {kind}", str(path))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_utf8(path: str, what: str) -> str:
    """The whole of a UTF-8 file, or of stdin for `-`, without a leading BOM; InputError naming `what`."""
    where = "stdin" if path == "-" else path
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open_regular(path) as handle:
                data = handle.read()
    except FileNotFoundError:
        raise InputError(f"{where}: {what} not found") from None
    except OSError as exc:
        raise InputError(f"{where}: cannot read {what} ({exc.strerror or exc})") from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: {what} is not valid UTF-8 (byte {exc.start})") from None

"""The rules for files, in one place: what may be read, how outputs are written, how paths are shown.

Reads take regular files only (a FIFO or a device would block or never end). Internal files are
written atomically, so a crash or a full disk never leaves a torn one in place of the last good one;
a file the user names for output (a page, an image) goes through `write_output`, which never
replaces a FIFO, a device or a symlink with a regular file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from pathlib import Path
from typing import BinaryIO

from charrnn.errors import CharRNNError, ConfigError, InputError, WriteError


def display_path(path: str | os.PathLike[str]) -> str:
    """A path as printable text: bytes of its name that are not UTF-8 (which Python keeps as lone
    surrogates, unencodable in JSON, pages and checkpoints) are shown as U+FFFD."""
    try:
        return os.fsencode(path).decode("utf-8", "replace")
    except UnicodeError:  # a str with surrogates no file name can have (not from argv)
        return os.fspath(path).encode("utf-8", "replace").decode("utf-8")


def utf8_name(path: str | os.PathLike[str]) -> bool:
    """Whether the path's bytes are valid UTF-8 (so it can be recorded as text as it is)."""
    return display_path(path) == os.fspath(path)


def atomic_write(path: Path, data: bytes) -> None:
    """Temp file in the same directory, fsync, rename over the target, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()  # a stale temp file, or a link someone planted at the name (the link goes, not its target)
    try:
        # a new file only, never through a link: a name re-planted since the unlink is an error, not a redirect
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o666)
        with open(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.is_symlink() or tmp.exists():
            tmp.unlink()
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# Errors that say the path cannot be an output at all (exit 2), rather than that writing failed (exit 1).
NOT_AN_OUTPUT = {
    errno.ELOOP: "is a symlink loop",
    errno.ENOTDIR: "has a part that is not a directory",
    errno.EISDIR: "is a directory",
    errno.ENAMETOOLONG: "is too long a name",
}
WRITE_HINTS = {
    errno.ENOSPC: "free some space or write it elsewhere",
    errno.EDQUOT: "free some space or write it elsewhere",
    errno.EFBIG: "it is over the file-size limit (ulimit -f); raise the limit or write it elsewhere",
    errno.EACCES: "choose a place you can write to",
    errno.EPERM: "choose a place you can write to",
    errno.EROFS: "the filesystem is read-only; write it elsewhere",
}


def write_failed(shown: str, what: str, exc: OSError) -> CharRNNError:
    """The error for an OSError met while writing `what` to `shown`: a usage error or a write failure."""
    if exc.errno in NOT_AN_OUTPUT:
        return ConfigError(f"{shown}: {NOT_AN_OUTPUT[exc.errno]}; name a file for the {what}")
    hint = WRITE_HINTS.get(exc.errno or 0, "check the path and the disk")
    return WriteError(f"{shown}: cannot write the {what} ({exc.strerror or exc}); {hint}")


def write_output(path: str | os.PathLike[str], data: bytes, what: str) -> None:
    """Write a file the user named for output: a page, an image. Every such output comes here.

    A regular file or a new name is written atomically. A symlink is followed: what it points to is
    written and the link stays. A FIFO or a character device (a pipe, a terminal, /dev/null) is
    written into, never replaced; a FIFO needs its reader already there (an open with nobody
    reading would wait forever). A directory, a block device, a socket or a symlink loop is refused
    (ConfigError, exit 2); a failed write (full disk, size limit, no permission) is a WriteError
    (exit 1). A reader that goes away mid-write raises BrokenPipeError, as on stdout.
    """
    shown = display_path(path)
    try:
        try:
            mode: int | None = os.stat(path).st_mode  # through any symlink
        except FileNotFoundError:
            mode = None  # a new file, or a symlink to a name not yet there
        if mode is None or stat.S_ISREG(mode):
            atomic_write(Path(os.path.realpath(path)), data)  # the link's target, never the link
        elif stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
            try:
                write_into(path, data, shown)
            except OSError as exc:
                if exc.errno == errno.ENXIO and stat.S_ISFIFO(mode):
                    raise ConfigError(f"{shown}: is a FIFO with no reader; start its reader first") from None
                raise
        else:
            kind = "a block device" if stat.S_ISBLK(mode) else file_kind(mode)
            raise ConfigError(f"{shown}: is {kind}; name a file for the {what}")
    except BrokenPipeError:
        raise
    except OSError as exc:
        raise write_failed(shown, what, exc) from None


def write_into(path: str | os.PathLike[str], data: bytes, shown: str) -> None:
    """Write into a FIFO or character device as it is: no create, no truncate, no rename."""
    fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | getattr(os, "O_NONBLOCK", 0))
    try:
        mode = os.fstat(fd).st_mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)):  # swapped since it was looked at
            raise ConfigError(f"{shown}: changed while being opened; run again")
        os.set_blocking(fd, True)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


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


def why_unreadable(exc: OSError, path: str | os.PathLike[str]) -> str:
    """Why opening `path` for reading failed, as the end of a sentence: "not found", "is a FIFO", ..."""
    if isinstance(exc, NotARegularFile):
        return exc.strerror or "is not a regular file"
    if exc.errno == errno.ELOOP:
        return "is a symlink loop"
    if isinstance(exc, FileNotFoundError):
        if os.path.islink(path):
            return f"is a symlink to a missing file ({display_path(os.readlink(path))})"
        return "not found"
    if isinstance(exc, PermissionError):
        return "cannot be read (permission denied)"
    return f"cannot be read ({exc.strerror or exc})"


def read_utf8(path: str, what: str, hint: str = "") -> str:
    """The whole of a UTF-8 file, or of stdin for `-`, without a leading BOM; InputError naming `what`.

    `hint` ends the message when the path names no readable regular file."""
    where = "stdin" if path == "-" else display_path(path)
    try:
        if path == "-":
            data = sys.stdin.buffer.read()
        else:
            with open_regular(path) as handle:
                data = handle.read()
    except OSError as exc:
        raise InputError(f"{where}: {what} {why_unreadable(exc, path)}{hint}") from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        raise InputError(f"{where}: {what} is not valid UTF-8 (byte {exc.start})") from None

"""Files the user names for output (`--html`, `-o`): one rule (files.write_output) for all of them.

A FIFO, a device or a symlink is never replaced by a regular file: a symlink's target is written and
the link stays, a FIFO or a character device is written into, and what cannot be an output is
refused with one line. The special files here are real ones made in a temporary directory; the
devices are reached through symlinks, so no test can touch /dev itself.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run_cli
from insight_models import QUOTE_VOCAB, quote_model, save

from charrnn.errors import ConfigError, WriteError
from charrnn.files import write_output

TEXT = 'a "ab" b. ab "a" ba.'


@contextlib.contextmanager
def fifo_with_reader(path: Path) -> Iterator[int]:
    """A FIFO at `path` whose read end this process holds (non-blocking), with room for a whole page."""
    os.mkfifo(path)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with contextlib.suppress(OSError):  # 1 MiB: the writer never waits for us to read
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    try:
        yield fd
    finally:
        os.close(fd)


def drain(fd: int) -> bytes:
    """Everything the (finished) writer put into the FIFO."""
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def is_link_to(link: Path, target: str) -> bool:
    return link.is_symlink() and os.readlink(link) == target


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(save(quote_model(), QUOTE_VOCAB, tmp_path_factory.mktemp("outputs") / "quotes.safetensors"))


def one_line(result, code: int, *words: str) -> str:  # type: ignore[no-untyped-def]
    err = result.stderr.decode()
    assert result.returncode == code, err
    assert err.startswith("charrnn: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


# -- the rule itself ----------------------------------------------------------------------------


def test_a_symlink_is_followed_and_stays_a_link(tmp_path: Path) -> None:
    (tmp_path / "page.html").write_bytes(b"old")
    (tmp_path / "link.html").symlink_to("page.html")
    write_output(tmp_path / "link.html", b"new", "page")
    assert is_link_to(tmp_path / "link.html", "page.html")
    assert (tmp_path / "page.html").read_bytes() == b"new"
    (tmp_path / "ahead.html").symlink_to("later.html")  # a link to a name not there yet: it is created
    write_output(tmp_path / "ahead.html", b"made", "page")
    assert is_link_to(tmp_path / "ahead.html", "later.html")
    assert (tmp_path / "later.html").read_bytes() == b"made"


def test_a_fifo_is_written_into_never_replaced(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    with fifo_with_reader(fifo) as fd:
        write_output(fifo, b"<html>page</html>", "page")
        assert drain(fd) == b"<html>page</html>"
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    with pytest.raises(ConfigError, match="FIFO with no reader; start its reader first"):
        write_output(fifo, b"nobody reads", "page")  # an open that would wait forever: refused at once
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_devices_are_written_into_never_replaced(tmp_path: Path) -> None:
    (tmp_path / "null").symlink_to("/dev/null")
    write_output(tmp_path / "null", b"gone", "page")
    assert is_link_to(tmp_path / "null", "/dev/null")
    (tmp_path / "full").symlink_to("/dev/full")
    with pytest.raises(WriteError, match=r"full: cannot write the page \(No space left on device\)") as caught:
        write_output(tmp_path / "full", b"page", "page")
    assert caught.value.exit_code == 1
    assert is_link_to(tmp_path / "full", "/dev/full") and stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_what_cannot_be_an_output_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "loop").symlink_to("loop")
    for name, words in (("dir", "is a directory"), ("loop", "is a symlink loop")):
        with pytest.raises(ConfigError, match=f"{name}: {words}; name a file for the image") as caught:
            write_output(tmp_path / name, b"png", "image")
        assert caught.value.exit_code == 2
    assert (tmp_path / "dir").is_dir() and list((tmp_path / "dir").iterdir()) == []
    assert is_link_to(tmp_path / "loop", "loop")


# -- every command that writes a page or an image follows it ------------------------------------


def test_explain_page_onto_a_link_to_a_full_device(ckpt: str, tmp_path: Path) -> None:
    link = tmp_path / "page.html"
    link.symlink_to("/dev/full")
    result = run_cli("explain", TEXT, "-c", ckpt, "--html", str(link))
    one_line(result, 1, "page.html: cannot write the page (No space left on device)")
    assert is_link_to(link, "/dev/full")


def test_neurons_page_into_a_fifo(ckpt: str, tmp_path: Path) -> None:
    fifo = tmp_path / "units.html"
    with fifo_with_reader(fifo) as fd:
        result = run_cli("neurons", TEXT, "-c", ckpt, "--unit", "0:0", "--html", str(fifo))
        assert result.returncode == 0, result.stderr.decode()
        page = drain(fd).decode("utf-8")
    assert page.startswith("<!DOCTYPE html>") and "0:h:0" in page and page.rstrip().endswith("</html>")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_memory_image_into_a_fifo_nobody_reads(ckpt: str, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    fifo = tmp_path / "m.png"
    os.mkfifo(fifo)
    result = run_cli("memory", TEXT, "-c", ckpt, "--positions", "4", "--span", "4", "-o", str(fifo), timeout=60)
    one_line(result, 2, "m.png: is a FIFO with no reader")  # (an open that waits would be a timeout here)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_plot_image_through_a_link(trained_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    (tmp_path / "curves.png").symlink_to("real.png")
    result = run_cli("plot", str(trained_run), "-o", str(tmp_path / "curves.png"))
    assert result.returncode == 0, result.stderr.decode()
    assert is_link_to(tmp_path / "curves.png", "real.png")
    assert (tmp_path / "real.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    (tmp_path / "dir.png").mkdir()
    one_line(run_cli("plot", str(trained_run), "-o", str(tmp_path / "dir.png")), 2, "dir.png: is a directory")


def test_an_atomic_write_never_follows_a_link_planted_at_its_temporary_name(tmp_path: Path) -> None:
    from charrnn.files import atomic_write

    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    target = tmp_path / "page.html"
    (tmp_path / f".page.html.tmp-{os.getpid()}").symlink_to(victim)  # planted where the temp file goes
    atomic_write(target, b"<html></html>")
    assert victim.read_text() == "keep me" and target.read_bytes() == b"<html></html>"
    assert not list(tmp_path.glob(".page.html.tmp-*"))

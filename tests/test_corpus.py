from __future__ import annotations

import hashlib
import io
import os
import random
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from charrnn.data import idcache
from charrnn.data.batches import StreamBatcher
from charrnn.data.corpus import load_corpus, split_train_val
from charrnn.errors import CorpusError
from charrnn.vocab import Vocab


def test_reads_file_and_encodes(corpus_file: Path) -> None:
    corpus = load_corpus([str(corpus_file)])
    text = corpus_file.read_text(encoding="utf-8")
    assert corpus.num_chars == len(text)
    assert corpus.vocab.decode(corpus.ids) == text
    assert corpus.ids.dtype == np.uint8
    assert len(corpus.digest) == 64


def test_bom_is_stripped(tmp_path: Path) -> None:
    path = tmp_path / "bom.txt"
    path.write_bytes(b"\xef\xbb\xbfhello")
    corpus = load_corpus([str(path)])
    assert corpus.vocab.decode(corpus.ids) == "hello"


def test_directory_is_one_corpus_of_all_its_text_files(tmp_path: Path) -> None:
    (tmp_path / "b.py").write_text("second", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first\n", encoding="utf-8")
    (tmp_path / "skip.bin").write_bytes(b"\x00\x01")
    corpus = load_corpus([str(tmp_path)])
    assert corpus.vocab.decode(corpus.ids) == "first\n\n\nsecond"
    assert [Path(s).name for s in corpus.sources] == ["a.txt", "b.py"]
    assert [(Path(p).name, reason) for p, reason in corpus.skipped] == [("skip.bin", "binary (NUL bytes)")]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CorpusError, match="not found"):
        load_corpus([str(tmp_path / "nope.txt")])


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(b"")
    with pytest.raises(CorpusError, match="empty"):
        load_corpus([str(path)])


def test_binary_file(tmp_path: Path) -> None:
    path = tmp_path / "blob.txt"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(CorpusError, match="binary"):
        load_corpus([str(path)])


def test_invalid_utf8_names_offset_and_offers_replace(tmp_path: Path) -> None:
    path = tmp_path / "latin1.txt"
    path.write_bytes(b"caf\xe9 au lait")
    with pytest.raises(CorpusError, match=r"byte 3 .*--errors replace"):
        load_corpus([str(path)])
    corpus = load_corpus([str(path)], errors="replace")
    assert corpus.vocab.decode(corpus.ids) == "caf\ufffd au lait"


def test_fixed_vocab_rejects_unknown_chars(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("abcz", encoding="utf-8")
    with pytest.raises(CorpusError, match="'z'"):
        load_corpus([str(path)], vocab=Vocab("abc"))


def test_split_is_last_fraction_contiguous() -> None:
    ids = np.arange(100, dtype=np.uint8)
    train, val = split_train_val(ids, 0.1)
    assert train.tolist() == list(range(90)) and val.tolist() == list(range(90, 100))
    train, val = split_train_val(ids, 0.0)
    assert train.size == 100 and val.size == 0


def whole_text_ids(text: str, vocab: Vocab) -> np.ndarray:
    """The straightforward encoding the streaming one must match."""
    return vocab.encode(text)


def test_tiny_blocks_split_multibyte_chars_and_bom(tmp_path: Path) -> None:
    text = "héllo wörld — 日本語 🎉 end\n" * 5
    path = tmp_path / "multi.txt"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode("utf-8"))
    for block_size in (1, 2, 3, 7, 64):
        corpus = load_corpus([str(path)], cache_dir=tmp_path / f"cache{block_size}", block_size=block_size)
        assert corpus.vocab == Vocab.from_text(text)
        assert np.array_equal(corpus.ids, whole_text_ids(text, corpus.vocab))


def test_invalid_utf8_offset_is_exact_across_blocks(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes("ééé".encode() + b"ab\xff" + b"tail")
    with pytest.raises(CorpusError, match=r"byte 8 \(0xff\)"):
        load_corpus([str(path)], block_size=4)


def test_cache_hit_is_a_read_only_memmap(tmp_path: Path, corpus_file: Path) -> None:
    cache = tmp_path / "ids"
    first = load_corpus([str(corpus_file)], cache_dir=cache)
    second = load_corpus([str(corpus_file)], cache_dir=cache)
    assert not first.cached and second.cached
    assert isinstance(second.ids, np.memmap) and not second.ids.flags.writeable
    assert np.array_equal(first.ids, second.ids)
    assert (second.vocab, second.digest, second.sources) == (first.vocab, first.digest, first.sources)
    assert first.digest == hashlib.sha256(corpus_file.read_bytes()).hexdigest()
    assert len(list(cache.glob("*.npy"))) == 1 and len(list(cache.glob("*.json"))) == 1
    assert not list(cache.glob(".*"))  # no temporary files left
    for entry in cache.iterdir():  # readable by whoever the umask allows, as open() would make it
        assert entry.stat().st_mode & 0o777 == idcache.FILE_MODE


def test_cache_key_follows_content_separator_and_errors(tmp_path: Path) -> None:
    cache = tmp_path / "ids"
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("one", encoding="utf-8")
    b.write_text("two", encoding="utf-8")
    load_corpus([str(a), str(b)], cache_dir=cache)
    assert load_corpus([str(a), str(b)], cache_dir=cache).cached
    assert not load_corpus([str(a), str(b)], separator="\n", cache_dir=cache).cached
    assert not load_corpus([str(a), str(b)], errors="replace", cache_dir=cache).cached
    assert not load_corpus([str(a), str(b)], vocab=Vocab("\nenotw"), cache_dir=cache).cached
    b.write_text("twO", encoding="utf-8")
    changed = load_corpus([str(a), str(b)], cache_dir=cache)
    assert not changed.cached and changed.vocab.decode(changed.ids) == "one\n\ntwO"


def test_damaged_cache_entry_is_rebuilt(tmp_path: Path, corpus_file: Path) -> None:
    cache = tmp_path / "ids"
    good = np.array(load_corpus([str(corpus_file)], cache_dir=cache).ids)  # a copy: the file is cut below
    (npy,) = cache.glob("*.npy")
    npy.write_bytes(npy.read_bytes()[:-10])  # truncated, as by a full disk
    again = load_corpus([str(corpus_file)], cache_dir=cache)
    assert not again.cached and np.array_equal(again.ids, good)
    (sidecar,) = cache.glob("*.json")
    sidecar.write_text("{not json", encoding="utf-8")
    assert not load_corpus([str(corpus_file)], cache_dir=cache).cached
    npy.unlink()
    assert not load_corpus([str(corpus_file)], cache_dir=cache).cached
    assert load_corpus([str(corpus_file)], cache_dir=cache).cached


def test_unwritable_cache_builds_in_memory(tmp_path: Path, corpus_file: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory", encoding="utf-8")
    corpus = load_corpus([str(corpus_file)], cache_dir=blocker / "ids")
    assert corpus.vocab.decode(corpus.ids) == corpus_file.read_text(encoding="utf-8")
    assert not corpus.ids.flags.writeable


def test_documents_are_joined_by_the_separator(tmp_path: Path) -> None:
    names = ["a.txt", "b.txt", "empty.txt", "c.txt"]
    for name, text in zip(names, ["one\n", "two", "", "three"], strict=True):
        (tmp_path / name).write_text(text, encoding="utf-8")
    paths = [str(tmp_path / n) for n in names]
    assert load_corpus(paths).vocab.decode(load_corpus(paths).ids) == "one\n\n\ntwo\n\nthree"
    corpus = load_corpus(paths, separator="<|end|>")
    assert corpus.vocab.decode(corpus.ids) == "one\n<|end|>two<|end|>three"
    assert "|" in corpus.vocab.chars and corpus.separator == "<|end|>"
    assert load_corpus(paths[1:2], separator="#").vocab.chars == "otw"  # one document: no separator


def test_directory_walk_skips_hidden_and_reports_non_text(tmp_path: Path) -> None:
    root = tmp_path / "code"
    (root / "pkg" / "sub").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: refs/heads/main\n", encoding="utf-8")
    (root / ".hidden.txt").write_text("secret", encoding="utf-8")
    (root / "pkg" / "a.py").write_text("x = 1\n", encoding="utf-8")
    (root / "pkg" / "sub" / "b.c").write_text("int y;\n", encoding="utf-8")
    (root / "pkg" / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (root / "pkg" / "latin1.txt").write_bytes(b"caf\xe9")
    corpus = load_corpus([str(root)])
    assert [Path(s).name for s in corpus.sources] == ["a.py", "b.c"]
    assert corpus.vocab.decode(corpus.ids) == "x = 1\n\n\nint y;\n"
    assert [(Path(p).name, r) for p, r in corpus.skipped] == [
        ("latin1.txt", "invalid UTF-8 at byte 3 (0xe9)"),
        ("logo.png", "binary (NUL bytes)"),
    ]
    replaced = load_corpus([str(root)], errors="replace")
    assert [Path(p).name for p, _ in replaced.skipped] == ["logo.png"]
    assert corpus.digest == hashlib.sha256(b"x = 1\nint y;\n").hexdigest()  # bytes of the files used


def test_every_file_skipped_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"\x00\x01")
    (tmp_path / "b.txt").write_bytes(b"\xff\xfe")
    with pytest.raises(CorpusError, match=r"2 files: every file was skipped .*binary.*invalid UTF-8.*--errors replace"):
        load_corpus([str(tmp_path)])
    (tmp_path / "c.txt").write_bytes(b"")
    with pytest.raises(CorpusError, match="empty"):
        load_corpus([str(tmp_path)])


def test_stdin_is_spooled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    data = "from stdin é\n".encode() * 50
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))
    corpus = load_corpus(["-"], block_size=5)
    assert corpus.sources == ("-",)
    assert corpus.vocab.decode(corpus.ids) == data.decode()
    assert corpus.digest == hashlib.sha256(data).hexdigest()


def test_cjk_vocab_over_255_uses_uint16(tmp_path: Path) -> None:
    rng = random.Random(0)
    chars = [chr(c) for c in range(0x4E00, 0x4F00)] + ["\u3002", "\uff0c", "\n"]  # ideographs, full stop, comma
    text = "".join(rng.choice(chars) for _ in range(5000))
    path = tmp_path / "cjk.txt"
    path.write_text(text, encoding="utf-8")
    corpus = load_corpus([str(path)], block_size=1000)
    assert corpus.vocab.size > 255 and corpus.ids.dtype == np.uint16
    assert corpus.vocab.decode(corpus.ids) == text


def test_progress_reports_each_phase(tmp_path: Path, corpus_file: Path) -> None:
    calls: list[tuple[str, int, int]] = []
    load_corpus([str(corpus_file)], cache_dir=tmp_path / "ids", progress=lambda *a: calls.append(a), block_size=500)
    size = corpus_file.stat().st_size
    assert [c[0] for c in calls if c[1] == size] == ["hash", "scan", "encode"]
    assert all(c[2] == size and 0 <= c[1] <= size for c in calls)
    calls.clear()
    load_corpus([str(corpus_file)], cache_dir=tmp_path / "ids", progress=lambda *a: calls.append(a))
    assert {c[0] for c in calls} == {"hash"}


def test_memmap_ids_split_and_batch(tmp_path: Path, corpus_file: Path) -> None:
    load_corpus([str(corpus_file)], cache_dir=tmp_path / "ids")
    corpus = load_corpus([str(corpus_file)], cache_dir=tmp_path / "ids")
    train, val = split_train_val(corpus.ids, 0.1)
    batcher = StreamBatcher(train, 4, 16)
    x, y = batcher.window(1)
    assert x.dtype == torch.int64 and x.shape == (4, 16)
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert val.size > 0 and not val.flags.writeable


def test_killed_write_leaves_no_entry_and_old_temps_are_removed(tmp_path: Path, corpus_file: Path) -> None:
    cache = tmp_path / "ids"
    cache.mkdir()
    stale = cache / ".abc.npy.123.tmp"
    stale.write_bytes(b"half an entry")
    os.utime(stale, (0, 0))
    fresh = cache / ".def.npy.456.tmp"
    fresh.write_bytes(b"someone else writing now")

    def killed(*args: object) -> None:
        raise KeyboardInterrupt

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(np.lib.format, "write_array_header_1_0", killed)
        with pytest.raises(KeyboardInterrupt):
            load_corpus([str(corpus_file)], cache_dir=cache)
    assert sorted(p.name for p in cache.iterdir()) == [fresh.name]  # no entry, no new temp, stale one gone
    assert not load_corpus([str(corpus_file)], cache_dir=cache).cached


# -- binary data anywhere, stdin checked as it streams --------------------------------------------


def test_a_nul_byte_anywhere_is_binary(tmp_path: Path, corpus_file: Path) -> None:
    text = corpus_file.read_bytes() * 8
    path = tmp_path / "late.txt"
    path.write_bytes(text + b"\x00" + text)  # far past the first block and any sniffed head
    with pytest.raises(CorpusError, match=rf"late.txt: .*binary.*NUL byte at byte {len(text)}\b"):
        load_corpus([str(path)], block_size=4096)
    (tmp_path / "dir").mkdir()
    path.rename(tmp_path / "dir" / "late.txt")
    (tmp_path / "dir" / "ok.txt").write_bytes(text)
    corpus = load_corpus([str(tmp_path / "dir")], cache_dir=tmp_path / "ids")
    assert [Path(s).name for s in corpus.sources] == ["ok.txt"]
    assert [(Path(p).name, r) for p, r in corpus.skipped] == [("late.txt", "binary (NUL bytes)")]


def test_a_late_nul_is_one_line_and_exit_3(tmp_path: Path, corpus_file: Path) -> None:
    from conftest import run_cli

    text = corpus_file.read_bytes() * 8
    (tmp_path / "late.txt").write_bytes(text + b"\x00" + text)
    proc = run_cli("train", "late.txt", "--steps", "1", cwd=tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode == 3 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"charrnn: error: late.txt: looks like a binary file (a NUL byte at byte {len(text)})")


class OneBlockOfZeros:
    """stdin that gives one block of NUL bytes, and fails the test if asked for more."""

    def __init__(self) -> None:
        self.reads = 0

    def read1(self, size: int) -> bytes:
        self.reads += 1
        assert self.reads == 1, "read past the first block of a binary stream"
        return b"text" + b"\x00" * (size - 4)

    read = read1


def test_a_binary_stdin_is_refused_at_its_first_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.stdin", SimpleNamespace(buffer=OneBlockOfZeros()))
    with pytest.raises(CorpusError, match=r"stdin: looks like a binary file \(a NUL byte at byte 4\)"):
        load_corpus(["-"], block_size=1 << 16)


# -- what a corpus directory holds besides files: warned about, never dropped silently ----------


def test_special_entries_of_a_directory_are_skipped_with_a_reason(tmp_path: Path, corpus_file: Path) -> None:
    from charrnn.data.corpus import skip_warnings

    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text("text\n", encoding="utf-8")
    (root / "good.txt").symlink_to(corpus_file)  # a link to a file is read
    os.mkfifo(root / "pipe")
    (root / "null").symlink_to("/dev/null")
    (root / "dangling").symlink_to("nowhere")
    (root / "loop").symlink_to("loop")
    (root / "linked").symlink_to("sub")
    (root / os.fsdecode(b"caf\xe9.txt")).write_text("text\n", encoding="utf-8")
    corpus = load_corpus([str(root)], cache_dir=tmp_path / "ids")
    assert [Path(s).name for s in corpus.sources] == ["a.txt", "good.txt"]
    assert [(Path(p).name, why) for p, why in corpus.passed_over] == [
        ("caf\ufffd.txt", "its name is not valid UTF-8 (rename it to use it)"),
        ("dangling", "is a symlink to a missing file (nowhere)"),
        ("linked", "is a symlink to a directory (not followed)"),
        ("loop", "is a symlink loop"),
        ("null", "is a device, not a regular file"),
        ("pipe", "is a FIFO, not a regular file"),
    ]
    warnings = skip_warnings(corpus.skipped, corpus.passed_over, limit=10)
    assert f"skipped {root / 'pipe'}: is a FIFO, not a regular file" in warnings and len(warnings) == 6
    cached = load_corpus([str(root)], cache_dir=tmp_path / "ids")
    assert cached.cached and cached.passed_over == corpus.passed_over


def test_a_directory_of_special_files_only(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(CorpusError, match=r"holds no regular files \(passed over: .*pipe is a FIFO"):
        load_corpus([str(tmp_path)])


def test_named_sources_say_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to("loop")
    (tmp_path / "dangling").symlink_to("gone.txt")
    with pytest.raises(CorpusError, match=r"loop: is a symlink loop; point at a text file"):
        load_corpus([str(tmp_path / "loop")])
    with pytest.raises(CorpusError, match=r"dangling: is a symlink to a missing file \(gone.txt\)"):
        load_corpus([str(tmp_path / "dangling")])
    odd = tmp_path / os.fsdecode(b"\xff.txt")
    odd.write_text("text", encoding="utf-8")
    with pytest.raises(CorpusError, match=re.escape("\ufffd.txt: the name is not valid UTF-8; rename it")):
        load_corpus([str(odd)])


def test_skipped_entries_are_warned_about_by_train(tmp_path: Path, corpus_file: Path) -> None:
    from conftest import TINY_TRAIN, run_cli

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_bytes(corpus_file.read_bytes())
    os.mkfifo(tmp_path / "docs" / "pipe")
    (tmp_path / "docs" / "null").symlink_to("/dev/null")
    proc = run_cli("train", "docs", *TINY_TRAIN, "--steps", "1", "-q", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    lines = [line for line in proc.stderr.decode().splitlines() if "warning" in line]
    assert lines == [
        f"charrnn: warning: skipped {Path('docs') / 'null'}: is a device, not a regular file",
        f"charrnn: warning: skipped {Path('docs') / 'pipe'}: is a FIFO, not a regular file",
    ]

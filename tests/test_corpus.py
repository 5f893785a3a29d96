from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from charrnn.corpus import load_corpus, split_train_val
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


def test_directory_of_txt_files_is_one_corpus(tmp_path: Path) -> None:
    (tmp_path / "b.txt").write_text("second", encoding="utf-8")
    (tmp_path / "a.txt").write_text("first\n", encoding="utf-8")
    (tmp_path / "skip.bin").write_bytes(b"\x00\x01")
    corpus = load_corpus([str(tmp_path)])
    assert corpus.vocab.decode(corpus.ids) == "first\nsecond\n"
    assert [Path(s).name for s in corpus.sources] == ["a.txt", "b.txt"]


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

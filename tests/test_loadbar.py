from __future__ import annotations

import io
from pathlib import Path

from charrnn.cli.loadbar import CorpusBar
from charrnn.data.corpus import load_corpus


def test_small_corpus_shows_nothing(corpus_file: Path) -> None:
    stream = io.StringIO()
    load_corpus([str(corpus_file)], progress=CorpusBar(stream, interactive=True))
    assert stream.getvalue() == ""


def test_log_file_gets_one_plain_line_per_phase(corpus_file: Path, tmp_path: Path) -> None:
    stream = io.StringIO()
    bar = CorpusBar(stream, interactive=False, min_bytes=0)
    load_corpus([str(corpus_file)], cache_dir=tmp_path / "ids", progress=bar, block_size=1000)
    lines = stream.getvalue().splitlines()
    assert [line.split()[2] for line in lines] == ["reading", "checking", "encoding"]
    assert "\r" not in stream.getvalue()


def test_terminal_gets_a_bar(corpus_file: Path, tmp_path: Path) -> None:
    stream = io.StringIO()
    bar = CorpusBar(stream, interactive=True, min_bytes=0)
    load_corpus([str(corpus_file)], cache_dir=tmp_path / "ids", progress=bar, block_size=1000)
    bar.close()
    assert "corpus encoding" in stream.getvalue() and bar.bar is None

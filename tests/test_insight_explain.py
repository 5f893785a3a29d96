"""`charrnn explain`: the summary equals `charrnn eval`, JSON, the page, plain output, bad input."""

from __future__ import annotations

import io
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import make_text, run_cli
from insight_models import QUOTE_VOCAB, quote_model, save

from charrnn.errors import ConfigError, InputError
from charrnn.insight.explain import Explained
from charrnn.insight.page import PageData, PageUnit, build_page, page_json
from charrnn.insight.palette import Depth, terminal_depth
from charrnn.insight.source import Source, read_source
from charrnn.insight.surprisal import Surprisal, worst_spans
from charrnn.insight.terminal import render_bits
from charrnn.vocab import Vocab

ESC = b"\x1b"


def explain_json(run: Path, *args: str) -> dict:  # type: ignore[type-arg]
    result = run_cli("explain", *args, "-c", str(run), "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.mark.parametrize("lines", [20, 400])  # one stream, and the parallel chunks `eval` uses past 4096
def test_summary_equals_eval(trained_run: Path, tmp_path: Path, lines: int) -> None:
    text = tmp_path / "held.txt"
    text.write_text(make_text(lines), encoding="utf-8")
    ev = run_cli("eval", str(text), "-c", str(trained_run), "--json")
    assert ev.returncode == 0, ev.stderr
    expected = json.loads(ev.stdout)
    data = explain_json(trained_run, str(text))
    summary = data["summary"]
    assert summary["chars_scored"] == expected["chars"]
    assert summary["nats_per_char"] == pytest.approx(expected["loss"], abs=1e-4)
    assert summary["bits_per_char"] == pytest.approx(expected["bpc"], abs=1e-4)
    chars = data["chars"]
    assert "".join(c["char"] for c in chars) == text.read_text(encoding="utf-8")
    assert chars[0]["bits"] is None
    bits = np.array([c["bits"] for c in chars[1:]])
    assert bits.mean() == pytest.approx(summary["bits_per_char"], abs=1e-5)
    for c in chars[1:50]:
        assert len(c["top"]) == 5
        probs = [g["p"] for g in c["top"]]
        assert probs == sorted(probs, reverse=True)
        if c["char"] == c["top"][0]["char"]:  # the guess's probability is the char's own: bits agree
            assert -np.log2(probs[0]) == pytest.approx(c["bits"], abs=1e-3)


def test_plain_output_off_a_terminal(trained_run: Path) -> None:
    result = run_cli("explain", "the cat sat on the mat.\na dog", "-c", str(trained_run), "--top-k", "3")
    assert result.returncode == 0, result.stderr
    assert ESC not in result.stdout
    out = result.stdout.decode()
    lines = out.split("\n")
    assert lines[0] == "the cat sat on the mat.↵"
    assert re.fullmatch(r" [0-9]{23}", lines[1])  # a digit under every character but the first
    assert "bits/char" in out and "worst" in out


def test_terminal_depths() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert terminal_depth(io.StringIO(), {}) is Depth.NONE
    assert terminal_depth(Tty(), {"NO_COLOR": "1", "COLORTERM": "truecolor"}) is Depth.NONE
    assert terminal_depth(Tty(), {"COLORTERM": "truecolor"}) is Depth.TRUE
    assert terminal_depth(Tty(), {"TERM": "xterm-256color"}) is Depth.C256
    assert terminal_depth(Tty(), {"TERM": "xterm"}) is Depth.C16
    text, bits = "ab\nc", [None, 0.5, 9.0, 3.0]
    assert "\x1b[30;48;2;" in render_bits(text, bits, Depth.TRUE)
    assert "\x1b[30;48;5;" in render_bits(text, bits, Depth.C256)
    assert re.search(r"\x1b\[30;(4[0-7]|10[0-7])m", render_bits(text, bits, Depth.C16))
    assert "\x1b" not in render_bits(text, bits, Depth.NONE)


def test_worst_spans_find_the_surprise() -> None:
    bits = np.zeros(100, dtype=np.float32)
    bits[40:48] = 9.0
    bits[80:84] = 5.0
    spans = worst_spans(bits, width=8, count=2)
    assert (spans[0].start, spans[0].end) == (41, 49)  # bits[i] is character i+1
    assert spans[0].mean_bits == pytest.approx(9.0)
    assert spans[1].start <= 81 and spans[1].end >= 85


def test_page_is_self_contained_and_complete() -> None:
    vocab = Vocab.from_text("ab</script>")
    text = "a</script><b"
    n = len(text) - 1
    rng = np.random.default_rng(0)
    s = Surprisal(
        rng.random(n, dtype=np.float32),
        rng.integers(0, vocab.size, (n, 5)).astype(np.int32),
        np.sort(rng.random((n, 5), dtype=np.float32))[:, ::-1],
    )
    data = Explained(text, s, vocab).page("t <&>")
    data = PageData(
        data.title, data.text, data.summary_line, data.bits, data.top, [PageUnit("0:h:1", "x", np.zeros(12))]
    )
    page = build_page(data)
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "<link" not in page and "@import" not in page
    assert re.findall(r"https?://[^\s\"']+", page) == ["http://www.w3.org/2000/svg"]  # a namespace, not a fetch
    assert page.count("</script>") == 2  # the text's own </script> is escaped
    payload = page.split('<script type="application/json" id="data">')[1].split("</script>")[0]
    parsed = json.loads(payload)
    assert parsed == json.loads(json.dumps(page_json(data)))
    assert parsed["text"] == text and len(parsed["bits"]) == len(text) and len(parsed["top"]) == len(text)
    assert parsed["bits"][0] is None and len(parsed["top"][1]) == 5
    assert "t &lt;&amp;&gt;" in page


def test_html_from_the_cli(trained_run: Path, tmp_path: Path) -> None:
    page = tmp_path / "sub" / "p.html"
    result = run_cli("explain", "the fox jumps over the box.", "-c", str(trained_run), "--html", str(page))
    assert result.returncode == 0, result.stderr
    assert "bits/char" in result.stdout.decode() and "wrote" in result.stderr.decode()
    html = page.read_text(encoding="utf-8")
    payload = json.loads(html.split('id="data">')[1].split("</script>")[0])
    assert payload["text"] == "the fox jumps over the box."


def one_line_error(result, code: int, *words: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == code, result.stderr
    err = result.stderr.decode()
    assert err.startswith("charrnn: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for word in words:
        assert word in err


def test_bad_input(trained_run: Path, tmp_path: Path) -> None:
    ckpt = str(trained_run)
    one_line_error(run_cli("explain", "the cat €", "-c", ckpt), 3, "'€'", "--unknown skip")
    skipped = run_cli("explain", "the cat €sat", "-c", ckpt, "--unknown", "skip", "--json")
    assert skipped.returncode == 0, skipped.stderr
    assert "".join(c["char"] for c in json.loads(skipped.stdout)["chars"]) == "the cat sat"
    assert "skipped 1 character" in skipped.stderr.decode()
    one_line_error(run_cli("explain", "", "-c", ckpt), 3, "empty")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    one_line_error(run_cli("explain", str(empty), "-c", ckpt), 3, "empty")
    one_line_error(run_cli("explain", "-", "-c", ckpt, input=b"t"), 3, "at least 2")
    one_line_error(run_cli("explain", "-", "-c", ckpt, input=b"\xff\xfe"), 3, "UTF-8")
    one_line_error(run_cli("explain", "abc", "-c", ckpt, "--unknown", "maybe"), 2)
    one_line_error(run_cli("explain", "abc", "-c", ckpt, "--top-k", "0"), 2)
    one_line_error(run_cli("explain", "abc", "-c", str(tmp_path / "nope.safetensors")), 3)


# -- the page's title: file names that are not UTF-8, or that hold a placeholder ----------------


def test_a_placeholder_in_a_value_is_never_filled_in_again() -> None:
    data = PageData(title="charrnn explain: __DATA__.txt", text="__TITLE__ and __DATA__", summary_line="s __DATA__")
    page = build_page(data)
    assert re.search(r"<title>(.*)</title>", page).group(1) == "charrnn explain: __DATA__.txt"  # type: ignore[union-attr]
    payload = page.split('<script type="application/json" id="data">')[1].split("</script>")[0]
    assert json.loads(payload) == json.loads(json.dumps(page_json(data)))
    assert page.count('{"title":') == 1


@pytest.mark.parametrize(
    ("command", "name"),
    [("explain", b"\xff\xfe.txt"), ("neurons", b"caf\xe9.txt"), ("explain", b"__DATA__.txt")],
)
def test_page_titles_from_odd_file_names(command: str, name: bytes, tmp_path: Path) -> None:
    ckpt = save(quote_model(), QUOTE_VOCAB, tmp_path / "q.safetensors")
    text = tmp_path / os.fsdecode(name)
    text.write_text('a "ab" b.', encoding="utf-8")
    page = tmp_path / "page.html"
    result = run_cli(command, str(text), "-c", str(ckpt), "--html", str(page))
    assert result.returncode == 0 and b"Traceback" not in result.stderr, result.stderr.decode()
    html = page.read_text(encoding="utf-8")
    shown = name.decode("utf-8", "replace")  # bytes that are not UTF-8 show as U+FFFD
    assert re.search(r"<title>(.*)</title>", html).group(1) == f"charrnn {command}: {shown}"  # type: ignore[union-attr]
    payload = json.loads(html.split('id="data">')[1].split("</script>")[0])
    assert payload["title"] == f"charrnn {command}: {shown}" and payload["text"] == 'a "ab" b.'


# -- a file or literal text: a mistyped file name is never scored as text -------------------------


def test_what_an_argument_is(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("notes.txt").write_text("from the file", encoding="utf-8")
    Path("sub").mkdir()
    os.mkfifo("pipe")
    Path("loop").symlink_to("loop")
    assert read_source("notes.txt") == Source("from the file", "notes.txt")
    for literal in ("To be, or not to be.", "ROMEO:\nBut soft/what light", "v1.2 and 3.14", "a.b c"):
        assert read_source(literal).text == literal, literal
    assert read_source(None, "nofile.txt") == Source("nofile.txt", "'nofile.txt'")  # --text: never a file
    for arg, words in (
        ("nofile.txt", "nofile.txt: text not found"),
        ("sub/nofile", "sub/nofile: text not found"),
        ("a/b c", "a/b c: text not found"),
        ("sub", "sub: text is a directory"),
        ("pipe", "pipe: text is a FIFO"),  # refused at once, never read (a read would wait for a writer)
        ("loop", "loop: text is a symlink loop"),
    ):
        with pytest.raises(InputError, match=re.escape(words) + ".*use --text"):
            read_source(arg)
    for arg, literal in ((None, None), ("notes.txt", "text")):
        with pytest.raises(ConfigError, match="--text TEXT"):
            read_source(arg, literal)
    with pytest.raises(InputError, match=r"not valid UTF-8 \(byte 2\)"):
        read_source(os.fsdecode(b"ab\xff"))


@pytest.mark.parametrize(
    ("command", "arg", "words"),
    [
        ("explain", "nofile.txt", "nofile.txt: text not found"),
        ("neurons", ".", ".: text is a directory"),
        ("memory", "chapter/one", "chapter/one: text not found"),
    ],
)
def test_a_mistyped_file_is_an_error_with_a_hint(command: str, arg: str, words: str, tmp_path: Path) -> None:
    ckpt = save(quote_model(), QUOTE_VOCAB, tmp_path / "q.safetensors")
    result = run_cli(command, arg, "-c", str(ckpt), cwd=tmp_path)
    one_line_error(result, 3, words, "use --text")
    assert result.stdout == b""


def test_text_option_scores_what_looks_like_a_path(tmp_path: Path) -> None:
    ckpt = save(quote_model(), QUOTE_VOCAB, tmp_path / "q.safetensors")
    result = run_cli("explain", "--text", "ab.ba", "-c", str(ckpt), "--json")
    assert result.returncode == 0, result.stderr.decode()
    assert "".join(c["char"] for c in json.loads(result.stdout)["chars"]) == "ab.ba"
    one_line_error(run_cli("explain", "ab.ba", "-c", str(ckpt), cwd=tmp_path), 3, "ab.ba: text not found")
    one_line_error(run_cli("explain", "-c", str(ckpt)), 2, "--text TEXT")

"""`charrnn export --format onnx`: the graph steps as charrnn's own stepper does, carries its metadata,
and the sampling snippet in docs/export.md runs and prints what `charrnn sample` prints."""

from __future__ import annotations

import contextlib
import io
import json
import re
import string
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.conftest import REPO, run_cli
from tests.test_cli import assert_clean_error

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

STEPS, STREAMS = 200, 3
CHARS = string.printable  # any ASCII prime fits (the docs' snippet primes with "ROMEO:")


def tiny_checkpoint(path: Path, cell: str = "lstm", layers: int = 2) -> Path:
    """A real checkpoint of a tiny random model whose every weight matters."""
    import torch

    from charrnn.model import CharRNN, ModelConfig
    from charrnn.store.checkpoint import save_checkpoint
    from charrnn.vocab import Vocab

    vocab = Vocab.from_text(CHARS)
    torch.manual_seed(layers * 10 + len(cell))
    config = ModelConfig(vocab_size=vocab.size, cell=cell, num_layers=layers, hidden_size=16, embed_size=8)
    model = CharRNN(config)
    with torch.no_grad():
        # 0.3, not more: a tanh RNN with larger weights is chaotic, and float rounding then grows past
        # 1e-4 between any two orderings of the same sums (charrnn's module and numpy steppers included).
        for param in model.parameters():
            param.normal_(0, 0.3)
    save_checkpoint(path, config, vocab, model.state_dict())
    return path


def session(path: Path) -> Any:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def exported(tmp_path: Path, cell: str = "lstm", layers: int = 2) -> tuple[Path, Path]:
    from charrnn.export.onnx import export_onnx

    checkpoint = tiny_checkpoint(tmp_path / "tiny.safetensors", cell, layers)
    out = tmp_path / "model.onnx"
    summary = export_onnx(str(checkpoint), str(out))
    assert summary.startswith(f"wrote {out}: {layers}x16 {cell.upper()}, vocab {len(CHARS)}, ")
    return checkpoint, out


MODELS = [("lstm", 1), ("lstm", 2), ("lstm", 3), ("gru", 1), ("gru", 2), ("rnn", 1), ("rnn", 2)]


@pytest.mark.parametrize(("cell", "layers"), MODELS)
def test_onnx_steps_as_charrnn_steps(tmp_path: Path, cell: str, layers: int) -> None:
    import torch

    from charrnn.sampling.steppers import make_stepper
    from charrnn.store.checkpoint import load_checkpoint, load_model

    checkpoint, out = exported(tmp_path, cell, layers)
    model = load_model(load_checkpoint(checkpoint))
    graph = session(out)
    gen = torch.Generator().manual_seed(7)
    prime = torch.randint(0, len(CHARS), (STREAMS, 6), generator=gen)
    ids = torch.randint(0, len(CHARS), (STEPS, STREAMS), generator=gen)
    with torch.no_grad():
        _, state = model(prime)
    names = ["h", "c"] if cell == "lstm" else ["h"]
    start = {n: s.numpy() for n, s in zip(names, state if isinstance(state, tuple) else (state,), strict=True)}

    for streams in (STREAMS, 1):  # N is dynamic: three streams, then one
        stepper = make_stepper(model)
        stepper.load_state(tuple(s[:, :streams] for s in state) if isinstance(state, tuple) else state[:, :streams])
        feeds = {n: np.ascontiguousarray(s[:, :streams]) for n, s in start.items()}
        worst = 0.0
        for t in range(STEPS if streams > 1 else 20):
            step_ids = ids[t, :streams]
            with torch.no_grad():
                expected = stepper.step(step_ids).numpy()
            logits, *new = graph.run(None, {"ids": step_ids.numpy(), **feeds})
            feeds = dict(zip(names, new, strict=True))
            assert logits.shape == (streams, len(CHARS)) and logits.dtype == np.float32
            diff = float(np.abs(logits - expected).max())
            assert diff < 1e-4, f"step {t}: logits differ by {diff}"
            worst = max(worst, diff)
        final = stepper.state()
        for mine, theirs in zip(new, final if isinstance(final, tuple) else (final,), strict=True):
            np.testing.assert_allclose(mine, np.asarray(theirs), atol=1e-4)
        print(f"{cell} x{layers} N={streams}: max logit difference {worst:.2e}")


def test_interface_and_metadata(tmp_path: Path) -> None:
    from charrnn.version import __version__

    _, out = exported(tmp_path, "lstm", 2)
    graph = session(out)
    inputs = {i.name: (i.type, i.shape) for i in graph.get_inputs()}
    outputs = {o.name: (o.type, o.shape) for o in graph.get_outputs()}
    state = ("tensor(float)", [2, "streams", 16])
    assert inputs == {"ids": ("tensor(int64)", ["streams"]), "h": state, "c": state}
    assert outputs == {"logits": ("tensor(float)", ["streams", len(CHARS)]), "h_next": state, "c_next": state}
    meta = graph.get_modelmeta().custom_metadata_map
    assert set(meta) == {"charrnn.vocab", "charrnn.model_config", "charrnn.version", "charrnn.sampling"}
    assert json.loads(meta["charrnn.vocab"]) == "".join(sorted(CHARS))
    assert json.loads(meta["charrnn.model_config"]) == {
        "cell": "lstm", "num_layers": 2, "hidden_size": 16, "embed_size": 8, "vocab_size": len(CHARS)
    }  # fmt: skip
    assert meta["charrnn.version"] == __version__
    assert "SplitMix64" in meta["charrnn.sampling"] and "inverse-CDF" in meta["charrnn.sampling"]

    import onnx

    model = onnx.load(str(out))
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 17)]
    onnx.checker.check_model(model, full_check=True)


def test_gru_has_no_cell_state(tmp_path: Path) -> None:
    _, out = exported(tmp_path, "gru", 1)
    graph = session(out)
    assert [i.name for i in graph.get_inputs()] == ["ids", "h"]
    assert [o.name for o in graph.get_outputs()] == ["logits", "h_next"]


def docs_snippet() -> str:
    text = (REPO / "docs" / "export.md").read_text(encoding="utf-8")
    found = re.search(r"<!-- onnx-sample -->\n```python\n(.*?)```\n<!-- /onnx-sample -->", text, re.S)
    assert found, "docs/export.md lost its marked snippet"
    return found.group(1)


def test_the_docs_snippet_samples_as_charrnn_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import charrnn

    checkpoint, _ = exported(tmp_path, "lstm", 2)  # written as model.onnx, the name the snippet opens
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    namespace: dict[str, Any] = {}
    with contextlib.redirect_stdout(printed):
        exec(compile(docs_snippet(), "docs/export.md", "exec"), namespace)
    text = printed.getvalue()[:-1]  # print's newline
    prime, length = namespace["prime"], namespace["length"]
    assert text.startswith(prime) and len(text) == len(prime) + length
    model = charrnn.load(checkpoint)
    temperature, seed = float(namespace["temperature"]), namespace["seed"]
    assert text == model.generate(prime, temperature=temperature, length=length, seed=seed)


def test_cli_export_writes_the_file_and_one_line(tmp_path: Path) -> None:
    tiny_checkpoint(tmp_path / "tiny.safetensors", "gru", 2)
    out = "new/dir/out.onnx"  # write_output's rule: missing directories are made
    proc = run_cli("export", "-c", "tiny.safetensors", "--format", "onnx", "-o", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b""
    lines = proc.stderr.decode().splitlines()
    assert len(lines) == 1 and re.fullmatch(rf"charrnn: wrote {out}: 2x16 GRU, vocab 100, [\d.]+ kB", lines[0])
    graph = session(tmp_path / out)
    h = np.zeros((2, 1, 16), np.float32)
    logits, _ = graph.run(None, {"ids": np.array([5], np.int64), "h": h})
    assert logits.shape == (1, 100)


def test_cli_export_refusals(tmp_path: Path) -> None:
    tiny_checkpoint(tmp_path / "tiny.safetensors")
    args = ("export", "-c", "tiny.safetensors")
    fp16 = run_cli(*args, "--format", "onnx", "--weights", "fp16", "-o", "o.onnx", cwd=tmp_path)
    assert_clean_error(fp16, 2, "--weights fp16")
    assert not (tmp_path / "o.onnx").exists()
    # a path through a file: one line, nothing written (a missing directory is created, as for every output)
    assert_clean_error(run_cli(*args, "-o", "tiny.safetensors/o.onnx", cwd=tmp_path), 2, "not a directory")
    assert_clean_error(run_cli(*args, "-o", ".", cwd=tmp_path), 2, "directory")
    assert_clean_error(run_cli("export", "-c", "nothing.safetensors", "-o", "o.onnx", cwd=tmp_path), 3, "not found")


def test_cli_export_without_onnx_says_how_to_get_it(tmp_path: Path) -> None:
    tiny_checkpoint(tmp_path / "tiny.safetensors")
    hide = "import sys; sys.modules['onnx'] = None; sys.argv[0] = 'charrnn'; from charrnn.cli.app import main; main()"
    proc = subprocess.run(
        [sys.executable, "-c", hide, "export", "-c", "tiny.safetensors", "-o", "o.onnx"],
        cwd=tmp_path, capture_output=True, env={"PYTHONPATH": str(REPO)}, timeout=120,
    )  # fmt: skip
    line = assert_clean_error(proc, 1)
    assert line == "charrnn: error: charrnn export --format onnx needs onnx: pip install 'charrnn[export]'"
    assert not (tmp_path / "o.onnx").exists()


def test_cli_html_goes_to_export_html(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--format html hands the resolved checkpoint (a run directory's best), the output and the weights
    to charrnn.export.html.export_html, and prints its summary."""
    import types

    from typer.testing import CliRunner

    from charrnn.cli.app import app

    seen: list[tuple[str, str, str]] = []

    def export_html(checkpoint_path: str, out: str, weights: str) -> str:
        seen.append((checkpoint_path, out, weights))
        return f"wrote {out}"

    monkeypatch.setitem(sys.modules, "charrnn.export.html", types.SimpleNamespace(export_html=export_html))
    (tmp_path / "run").mkdir()
    tiny_checkpoint(tmp_path / "run" / "best.safetensors")
    args = ["export", "-c", str(tmp_path / "run"), "--format", "html", "--weights", "int8", "-o", "page.html"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert seen == [(str(tmp_path / "run" / "best.safetensors"), "page.html", "int8")]
    assert "charrnn: wrote page.html" in result.output


def test_the_readme_snippet_samples_from_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's 15 lines (onnxruntime and numpy alone) run as printed, on a file named as they say."""
    from charrnn.export.onnx import export_onnx

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    found = re.search(r"\*\*ONNX\.\*\*.*?```python\n(.*?)```", readme, re.S)
    assert found, "README.md lost its ONNX snippet"
    code = found.group(1)
    assert len(code.strip().splitlines()) <= 18
    checkpoint = tiny_checkpoint(tmp_path / "tiny.safetensors")
    export_onnx(str(checkpoint), str(tmp_path / "ts256.onnx"))
    monkeypatch.chdir(tmp_path)
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, "README.md", "exec"), {})
    text = printed.getvalue()[:-1]
    assert text.startswith("ROMEO:\n") and len(text) == len("ROMEO:\n") + 200
    assert set(text) <= set(CHARS)

"""After training: the character chart, `charrnn plot`, `charrnn runs`, `charrnn info`'s curve, and help screens."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from charrnn.cli.curve import Line, render
from charrnn.errors import InputError
from charrnn.store.metrics import find_runs, read_checkpoint_meta, read_run
from tests.conftest import REPO, run_cli


def test_chart_puts_points_where_they_belong() -> None:
    down = Line("train", (0.0, 50.0, 100.0), (3.0, 2.0, 1.0), "·")
    up = Line("val", (0.0, 100.0), (1.0, 3.0), "●")
    lines = [t.plain for t in render([down, up], width=60, height=9)]
    assert len(lines) == 9 + 3  # plot rows, axis, x labels, legend
    rows = lines[:9]
    body = [row[row.index("┤") + 1 :] if "┤" in row else row[row.index("│") + 1 :] for row in rows]
    assert body[0][0] == "·" and body[-1][0] == "●"  # (0, 3) top-left, (0, 1) bottom-left
    assert body[0].rstrip().endswith("●") and body[-1].rstrip().endswith("·")  # crossing lines
    assert "".join(body).count("●") == 2 and "".join(body).count("·") > 3  # train joined, val points bare
    assert rows[0].startswith("3.00") and rows[-1].startswith("1.00")
    assert lines[-2].split()[:3] == ["0", "50", "100"]
    assert all(len(line) <= 60 for line in lines)
    assert "· train" in lines[-1] and "● val" in lines[-1]


def test_chart_skips_nonfinite_and_handles_empty() -> None:
    lines = [t.plain for t in render([Line("t", (1.0, 2.0), (float("nan"), 2.0))], width=40, height=5)]
    assert "2.50" in lines[0] and "·" in lines[2]  # one finite point, centred in a padded range
    assert render([], width=40)[0].plain.startswith("(no finite points")
    ascii_lines = render([Line("v", (0.0, 1.0), (1.0, 2.0), "●")], width=40, height=5, ascii_only=True)
    ascii_text = "\n".join(t.plain for t in ascii_lines)
    assert ascii_text.isascii() and "o" in ascii_text  # the val marker drawn in its ASCII form


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny runs (different sizes) under <root>/checkpoints; cwd for the CLI is <root>."""
    from charrnn.api import train
    from tests.conftest import make_text

    root = tmp_path_factory.mktemp("runs")
    (root / "tiny.txt").write_text(make_text(), encoding="utf-8")
    for name, hidden in (("small", 8), ("big", 24)):
        train(
            root / "tiny.txt",
            out=root / "checkpoints" / name,
            hidden=hidden,
            embed=8,
            batch_size=4,
            seq_len=16,
            steps=60,
            eval_every=20,
            threads=1,
        )
    return root


def test_read_run_and_find_runs(two_runs: Path) -> None:
    run = read_run(two_runs / "checkpoints" / "big" / "best.safetensors")  # a file inside the run works too
    assert run.name == "big" and run.steps == 60
    assert run.series("val")[0] == (20.0, 40.0, 60.0)
    assert math_close(run.best_val_loss, min(run.series("val")[1]))
    assert sorted(r.name for r in find_runs(two_runs)) == ["big", "small"]
    meta = read_checkpoint_meta(two_runs / "checkpoints" / "big" / "last.safetensors")
    assert meta["step"] == 60 and meta["model_config"]["hidden_size"] == 24
    with pytest.raises(InputError, match="not a charrnn checkpoint"):
        read_checkpoint_meta(two_runs / "tiny.txt")
    with pytest.raises(InputError, match="charrnn runs"):
        read_run(two_runs / "nowhere")


def math_close(a: float | None, b: float) -> bool:
    return a is not None and abs(a - b) < 1e-12


def test_plot_in_terminal_compares_runs(two_runs: Path) -> None:
    proc = run_cli("plot", "checkpoints/small", "checkpoints/big", "--height", "8", cwd=two_runs)
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode()
    assert "\x1b" not in text
    legend = text.splitlines()[-1]
    assert "small train" in legend and "small val" in legend and "big val" in legend
    assert len(text.splitlines()) == 8 + 3
    default = run_cli("plot", "--x", "time", cwd=two_runs)  # the newest run, by elapsed seconds
    assert default.returncode == 0 and "seconds" in default.stdout.decode()


def test_plot_errors(two_runs: Path) -> None:
    missing = run_cli("plot", "checkpoints/nope", cwd=two_runs)
    assert missing.returncode == 3 and "charrnn runs" in missing.stderr.decode()
    bad_x = run_cli("plot", "checkpoints/big", "--x", "chars", cwd=two_runs)
    assert bad_x.returncode == 2 and "'step', 'time', 'epoch'" in bad_x.stderr.decode()  # the choices, named


def test_plot_png(two_runs: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "curves.png"
    proc = run_cli("plot", "checkpoints/small", "checkpoints/big", "-o", str(out), cwd=two_runs)
    assert proc.returncode == 0, proc.stderr.decode()
    assert proc.stdout == b"" and str(out) in proc.stderr.decode()
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_plot_image_without_matplotlib(two_runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from charrnn.cli.plot import MissingPlotLibrary, write_image

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(MissingPlotLibrary, match=r"pip install 'charrnn\[plot\]'"):
        write_image([read_run(two_runs / "checkpoints" / "big")], tmp_path / "c.png")
    assert MissingPlotLibrary.exit_code == 1


def test_runs_table_and_json(two_runs: Path) -> None:
    proc = run_cli("runs", "--sort", "bpc", cwd=two_runs)
    assert proc.returncode == 0, proc.stderr.decode()
    lines = proc.stdout.decode().splitlines()
    assert lines[0].split() == ["run", "corpus", "chars", "model", "steps", "val", "bpc", "date"]
    data = json.loads(run_cli("runs", "--json", cwd=two_runs).stdout)
    by_name = {row["run"]: row for row in data}
    assert set(by_name) == {"small", "big"}
    assert by_name["big"]["model"]["hidden_size"] == 24 and by_name["big"]["steps"] == 60
    assert by_name["big"]["best_checkpoint"] == str(Path("checkpoints/big/best.safetensors"))
    best_first = sorted(data, key=lambda r: r["best_val_bpc"])[0]["run"]
    assert lines[1].split()[0] == best_first
    assert f"{by_name[best_first]['best_val_bpc']:.3f}" in lines[1]
    assert "2x24 LSTM" in proc.stdout.decode() and "tiny.txt" in lines[1]


def test_runs_empty_and_missing(tmp_path: Path) -> None:
    (tmp_path / "checkpoints").mkdir()
    empty = run_cli("runs", cwd=tmp_path)
    assert empty.returncode == 0 and empty.stdout == b"" and "charrnn train" in empty.stderr.decode()
    missing = run_cli("runs", "elsewhere", cwd=tmp_path)
    assert missing.returncode == 3 and "elsewhere" in missing.stderr.decode()


def test_info_shows_curve_and_command(two_runs: Path) -> None:
    proc = run_cli("info", "checkpoints/big", cwd=two_runs)
    assert proc.returncode == 0, proc.stderr.decode()
    text = proc.stdout.decode()
    assert "command     charrnn.train(" in text and "hidden=24" in text
    assert "trained     60 steps" in text and "epochs" in text
    assert "● val" in text and "· train" in text


# -- help ---------------------------------------------------------------------------------------


TYPER = tuple(int(part) for part in version("typer").split(".")[:2])


@pytest.mark.skipif(TYPER < (0, 29), reason="charrnn needs typer>=0.29 (pyproject.toml); older ones render types")
def test_train_help_groups_flags_in_panels() -> None:
    proc = run_cli("train", "--help")
    assert proc.returncode == 0
    text = proc.stdout.decode()
    panels = [p for p in ("Model", "Optimisation", "Budget", "Checkpoints", "System", "Output") if f"─ {p} " in text]
    assert panels == ["Model", "Optimisation", "Budget", "Checkpoints", "System", "Output"]
    positions = [text.index(f"─ {p} ") for p in panels]
    assert positions == sorted(positions)
    flat = " ".join(text.replace("│", " ").split())  # a help text wrapped at another width reads the same
    assert "[default: 2]" in flat and "[default: by corpus size and budget]" in flat  # not eaten as markup
    assert "DURATION" in text and "<bool>" not in text and "<str>" not in text
    assert "Examples:" in text and "charrnn train poems.txt --time 10m" in text


def test_every_command_has_help_with_examples() -> None:
    for command in ("sample", "eval", "info", "plot", "runs"):
        proc = run_cli(command, "--help")
        assert proc.returncode == 0, command
        assert "Examples:" in proc.stdout.decode() and "<bool>" not in proc.stdout.decode(), command
    root = run_cli("--help").stdout.decode()
    assert "--install-completion" in root and "plot" in root and "runs" in root


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['charrnn', 'train', '--help']\n"
        "from charrnn.cli.app import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "sys.stderr.write('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, env={"PYTHONPATH": str(REPO)})
    assert proc.stderr.decode().endswith("NO-TORCH")


def test_runs_and_plot_do_not_import_torch(two_runs: Path) -> None:
    code = (
        "import sys\n"
        "from charrnn.cli.app import main\n"
        "for argv in (['charrnn', 'runs'], ['charrnn', 'plot', 'checkpoints/big']):\n"
        "    sys.argv = argv\n"
        "    try:\n        main()\n    except SystemExit:\n        pass\n"
        "sys.stderr.write('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    env = {"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=two_runs, env=env)
    assert proc.stderr.decode().endswith("NO-TORCH"), proc.stderr.decode()


def test_shell_completion_script() -> None:
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    # The shell is detected from the parent processes, so run it from bash: pytest's own parents
    # (a CI runner, a detached job) may include no shell at all.
    command = shlex.join([sys.executable, "-m", "charrnn", "--show-completion"])
    env = dict(os.environ, PYTHONPATH=str(REPO))
    # "; exit $?" keeps bash alive as the parent (it would exec a lone command in its own place).
    proc = subprocess.run(["bash", "-c", f"{command}; exit $?"], capture_output=True, env=env, timeout=60)
    assert proc.returncode == 0 and "complete" in proc.stdout.decode(), proc.stderr.decode()

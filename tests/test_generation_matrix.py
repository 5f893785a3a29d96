"""One seed, one text: every generation control gives the same samples from `charrnn sample` (the
real CLI), `charrnn serve`'s API and the Python API. The flags and fields are derived from the
declarations (charrnn.sampling.controls), so this also checks that each control reaches all three."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("fastapi")

from fastapi.testclient import TestClient

import charrnn
from charrnn.sampling.controls import CONTROLS
from charrnn.serve.registry import model_name
from tests.conftest import run_cli
from tests.test_serve import make_client

PRIME = "the "
CASES: dict[str, dict[str, Any]] = {
    "plain": {"temperature": 0.9},
    "greedy": {"temperature": 0.0},
    "top_k": {"temperature": 0.8, "top_k": 3},
    "top_p": {"top_p": 0.7},
    "min_p": {"min_p": 0.2, "temperature": 1.5},
    "repetition": {"temperature": 0.0, "repetition_penalty": 1.6, "penalty_window": 12},
    "presence": {"temperature": 0.5, "presence_penalty": 1.5},
    "frequency": {"temperature": 0.5, "frequency_penalty": 0.9, "penalty_window": 200},
    "ngram": {"temperature": 0.2, "no_repeat_ngram": 3},
    "ban": {"temperature": 0.6, "ban": "aeo"},
    "bias": {"temperature": 0.6, "bias": {"e": 3.0, "t": -100.0, "i": -1.5}},
    "match": {"match": r"[a-z]+( [a-z]+){1,3}[.?]"},
    "stop": {"temperature": 0.7, "stop": ["is", "."]},
    "best_of": {"best_of": 4, "temperature": 1.2},
}


def cli_args(controls: dict[str, Any]) -> list[str]:
    """The `charrnn sample` flags for these controls, as their declarations name them."""
    args: list[str] = []
    for name, value in controls.items():
        flag = "--" + CONTROLS[name].flag
        if name == "bias":
            for char, amount in value.items():
                args += [flag, f"{char}={amount}"]
        elif name == "stop":
            for stop in value:
                args += [flag, stop]
        else:
            args += [flag, str(value)]
    return args


def api_body(controls: dict[str, Any]) -> dict[str, Any]:
    return {CONTROLS[name].api: value for name, value in controls.items()}


@pytest.fixture(scope="module")
def client(trained_run: Path) -> Iterator[TestClient]:
    yield from make_client(trained_run)


@pytest.mark.parametrize("case", list(CASES))
def test_sample_serve_and_api_agree(case: str, trained_run: Path, client: TestClient) -> None:
    controls = CASES[case]
    n, length, seed = 2, 40, 11
    fixed = ["-n", str(n), "--length", str(length), "--seed", str(seed), "--no-keep-stop"]
    run = run_cli("sample", "-c", str(trained_run), "--prime", PRIME, "--no-include-prime", "--format", "jsonl",
                  *fixed, *cli_args(controls))  # fmt: skip
    assert run.returncode == 0, run.stderr.decode()
    from_cli = [json.loads(line) for line in run.stdout.decode().splitlines()]

    model = charrnn.load(trained_run)
    from_api = model.samples(PRIME, num_samples=n, length=length, seed=seed, keep_stop=False, **controls)

    body = {"model": model_name(trained_run / "best.safetensors"), "prompt": PRIME, "n": n, "max_tokens": length,
            "seed": seed, **api_body(controls)}  # fmt: skip
    response = client.post("/v1/completions", json=body)
    assert response.status_code == 200, response.text
    from_serve = [choice["text"] for choice in response.json()["choices"]]

    texts = [record["text"] for record in from_cli]
    assert texts == [sample.text.removeprefix(PRIME) for sample in from_api] == from_serve
    assert [r["logprob"] for r in from_cli] == pytest.approx([s.logprob for s in from_api])
    assert len(set(texts)) > 1 or controls.get("temperature") == 0.0 or "match" in controls


def test_beam_is_the_same_from_the_cli_and_the_api(trained_run: Path) -> None:
    run = run_cli("sample", "-c", str(trained_run), "--prime", PRIME, "--no-include-prime", "--format", "jsonl",
                  "--beam", "4", "-n", "2", "--length", "30")  # fmt: skip
    assert run.returncode == 0, run.stderr.decode()
    from_cli = [json.loads(line) for line in run.stdout.decode().splitlines()]
    from_api = charrnn.load(trained_run).samples(PRIME, beam=4, num_samples=2, length=30)
    assert [r["text"] for r in from_cli] == [s.text.removeprefix(PRIME) for s in from_api]
    assert from_cli[0]["logprob"] >= from_cli[1]["logprob"] - 1e-6  # ranked by total log-probability

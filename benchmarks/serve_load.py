"""Serving under load: `charrnn serve` with 1, 4, 16 and 64 concurrent streaming clients.

    python benchmarks/serve_load.py [--checkpoint CKPT] [--hidden 512] [--layers 2] [--chars 500]

Each client streams `--chars` characters (temperature 1, its own seed) over HTTP; a round starts
all its clients at once. Per round: aggregate chars/s (all characters / the round's wall time),
time to first character (request sent -> first non-empty chunk) p50 and p99, errors, and streams
lost (ended short). The reference, in the same run: `charrnn sample -n 16 --length CHARS`
(aggregate chars/s after its start-up, measured by a `--length 1` run) on the same checkpoint.
Without --checkpoint the model is a randomly initialised LSTM (speed does not depend on training).
The clients run in this process (one asyncio loop), on the same cores as the server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.common import write_result  # noqa: E402
from tests.serve_server import start_server  # noqa: E402

CLIENTS = (1, 4, 16, 64)


def random_checkpoint(directory: Path, hidden: int, layers: int) -> Path:
    import torch

    from charrnn.model import CharRNN, ModelConfig
    from charrnn.store.checkpoint import save_checkpoint
    from charrnn.vocab import Vocab

    torch.manual_seed(0)
    vocab = Vocab("".join(sorted(set("\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"))))
    model = CharRNN(ModelConfig(vocab_size=vocab.size, num_layers=layers, hidden_size=hidden))
    run = directory / "bench"
    run.mkdir()
    save_checkpoint(run / "best.safetensors", model.config, vocab, model.state_dict())
    return run


async def one_client(client: httpx.AsyncClient, url: str, model: str, chars: int, seed: int) -> dict[str, Any]:
    body = {"model": model, "prompt": "The ", "max_tokens": chars, "seed": seed, "stream": True}
    sent = time.perf_counter()
    first, got = None, 0
    try:
        async with client.stream("POST", f"{url}/v1/completions", json=body) as response:
            if response.status_code != 200:
                return {"error": response.status_code, "chars": 0, "ttfc": None}
            async for line in response.aiter_lines():
                if line.startswith("data: {"):
                    text = json.loads(line[6:])["choices"][0]["text"]
                    if text and first is None:
                        first = time.perf_counter() - sent
                    got += len(text)
    except httpx.HTTPError as exc:
        return {"error": type(exc).__name__, "chars": got, "ttfc": first}
    return {"error": None, "chars": got, "ttfc": first}


async def round_of(url: str, model: str, clients: int, chars: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        start = time.perf_counter()
        results = await asyncio.gather(*(one_client(client, url, model, chars, 1000 + i) for i in range(clients)))
        wall = time.perf_counter() - start
    ttfc = sorted(r["ttfc"] for r in results if r["ttfc"] is not None)
    total = sum(r["chars"] for r in results)
    return {
        "clients": clients,
        "chars_per_s": round(total / wall),
        "ttfc_p50_ms": round(1000 * statistics.median(ttfc), 1) if ttfc else None,
        "ttfc_p99_ms": round(1000 * ttfc[min(len(ttfc) - 1, int(0.99 * len(ttfc)))], 1) if ttfc else None,
        "errors": sum(r["error"] is not None for r in results),
        "lost": sum(r["error"] is None and r["chars"] != chars for r in results),
        "wall_s": round(wall, 2),
    }


def sample_reference(run: Path, streams: int, chars: int) -> float:
    """Aggregate chars/s of `charrnn sample -n STREAMS --length CHARS`, start-up subtracted."""
    env = dict(os.environ, PYTHONPATH=str(REPO))

    def timed(length: int) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "charrnn", "sample", "-c", str(run), "-n", str(streams), "--length",
                        str(length), "--seed", "1"], env=env, capture_output=True, check=True)  # fmt: skip
        return time.perf_counter() - start

    startup = min(timed(1) for _ in range(2))
    return streams * chars / max(timed(chars) - startup, 1e-6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="a run directory or checkpoint (default: a random LSTM)")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--chars", type=int, default=500)
    parser.add_argument("--threads", type=int, default=None, help="--threads for the server")
    parser.add_argument("--clients", type=int, nargs="+", default=list(CLIENTS), help="rounds to run")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.checkpoint) if args.checkpoint else random_checkpoint(Path(tmp), args.hidden, args.layers)
        flags = ["--threads", str(args.threads)] if args.threads else []
        server = start_server(run, Path(tmp), "--max-streams", "64", *flags)
        try:
            model = httpx.get(f"{server.url}/v1/models").json()["data"][0]["id"]
            asyncio.run(round_of(server.url, model, 4, 50))  # warm up
            rounds = []
            for clients in args.clients:
                result = asyncio.run(round_of(server.url, model, clients, args.chars))
                rounds.append(result)
                print(json.dumps(result), flush=True)
        finally:
            code = server.stop()
        reference = sample_reference(run, 16, args.chars)
    by = {r["clients"]: r["chars_per_s"] for r in rounds}
    summary: dict[str, Any] = {"sample_n16_chars_per_s": round(reference), "server_exit": code}
    if 16 in by:
        summary["serve16_over_sample_n16"] = round(by[16] / reference, 2)
        if 1 in by:
            summary["serve16_over_serve1"] = round(by[16] / by[1], 2)
    print(json.dumps(summary))
    path = write_result("serve_load", {"checkpoint": args.checkpoint, "hidden": args.hidden, "layers": args.layers,
                                       "chars": args.chars, "rounds": rounds, **summary})  # fmt: skip
    print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()

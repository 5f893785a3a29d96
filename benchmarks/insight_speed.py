"""How long `charrnn neurons` takes on 1 MB of text through a 2x512 LSTM, and how much memory it holds.

    python benchmarks/insight_speed.py [--mb 1] [--hidden 512] [--layers 2] [--threads 2]

Random weights (timing does not depend on what the model learned). The text is the first MB of
Tiny Shakespeare. Times the built-in features, the streamed pass (every layer's h and c correlated
with every feature) and, for comparison, one `evaluate_ids` pass (the fused layers, no states kept).
Peak RSS shows that memory stays bounded: all h and c of 1 MB through 2x512 would be 8 GB in fp32.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHAKESPEARE, write_result

from charrnn.device import configure_threads
from charrnn.evaluate import evaluate_ids
from charrnn.insight.features import feature_matrix
from charrnn.insight.neurons import record
from charrnn.model import CharRNN, ModelConfig
from charrnn.vocab import Vocab


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=1.0)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-eval", action="store_true", help="skip the eval pass (for comparison only)")
    args = parser.parse_args()
    if not SHAKESPEARE.exists():
        raise SystemExit(f"{SHAKESPEARE} not found")
    text = SHAKESPEARE.read_text(encoding="utf-8")[: int(args.mb * 1_000_000)]
    vocab = Vocab.from_text(text)
    configure_threads(args.threads)
    torch.manual_seed(0)
    config = ModelConfig(vocab.size, args.cell, args.layers, args.hidden, 64)
    model = CharRNN(config).eval()
    ids = vocab.encode(text)
    cpu = torch.device("cpu")

    start = time.perf_counter()
    features = feature_matrix(text)
    t_features = time.perf_counter() - start
    start = time.perf_counter()
    report = record(model, ids, cpu, features)
    t_record = time.perf_counter() - start
    t_eval = float("nan")
    if not args.no_eval:
        start = time.perf_counter()
        evaluate_ids(model, ids, cpu)
        t_eval = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    units = len(report.units)
    print(
        f"{len(text):,} chars, {args.cell} {args.layers}x{args.hidden} ({units} units), {args.threads} threads: "
        f"features {t_features:.1f} s, neurons pass {t_record:.1f} s ({len(text) / t_record:,.0f} chars/s), "
        f"eval pass {t_eval:.1f} s; peak RSS {peak_mb:,.0f} MB "
        f"(all states would be {len(text) * units * 4 / 1e9:.1f} GB)"
    )
    write_result(
        "insight_speed",
        {
            "chars": len(text),
            "config": config.to_dict(),
            "threads": args.threads,
            "features_s": t_features,
            "neurons_s": t_record,
            "eval_s": t_eval,
            "peak_rss_mb": peak_mb,
        },
    )


if __name__ == "__main__":
    main()

"""The docs' table of planned defaults (docs/usage.md; tests/test_plan.py checks the file against it):
what `make_plan` chooses for a few corpora and budgets, at the rates assumed before a probe.
"""

from __future__ import annotations

import torch

from charrnn.training.plan import make_plan

TABLE_CORPORA = (("30k", 30_000), ("200k", 200_000), ("1.1M", 1_115_394), ("12M", 12_000_000), ("100M", 100_000_000))
TABLE_BUDGETS = (("2m", 120.0), ("10m", 600.0), ("1h", 3600.0))
TABLE_MACHINES = (
    ("CPU fp32", "cpu", torch.float32),
    ("CPU bf16", "cpu", torch.bfloat16),
    ("GPU", "cuda", torch.bfloat16),
)


def planned_defaults_table(vocab_size: int = 65) -> str:
    """A Markdown table of `make_plan`'s choices: the planner's own output, never restated by hand."""
    lines = [
        "| machine | corpus | budget | model | dropout | batch x window | peak lr | passes |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for machine, device_type, dtype in TABLE_MACHINES:
        for corpus, chars in TABLE_CORPORA:
            for budget, seconds in TABLE_BUDGETS:
                plan = make_plan(chars, vocab_size, torch.device(device_type), dtype, seconds=seconds)
                expected = plan.expected_epochs
                passes = f"{expected:,.0f}" if expected >= 10 else f"{expected:.2g}"
                passes = f"{plan.epochs_cap:g} (then stops)" if plan.epochs_cap else passes
                lines.append(
                    f"| {machine} | {corpus} | {budget} | {plan.num_layers}x{plan.hidden_size} | {plan.dropout:g} | "
                    f"{plan.batch_size} x {plan.seq_len} | {plan.lr:g} | {passes} |"
                )
    return "\n".join(lines) + "\n"

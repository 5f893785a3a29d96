"""A copy of a model that keeps learning from the text it reads: dynamic evaluation and prime adaptation.

Modules: `settings` (the update's knobs and their defaults; no torch, so the CLI can read them at
start) and `learn` (the copy, the update rule, `evaluate_dynamic` and `adapt`).
"""

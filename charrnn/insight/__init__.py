"""See inside a model: per-character surprisal, interpretable units, and how far back it looks.

Modules: `source` (the text to look at), `surprisal` (bits per character, top-k guesses),
`palette` / `terminal` / `page` (rendering), `cells` (every layer's states and gates, step by
step), `features` (what a unit might track), `neurons` (streamed unit-feature correlations),
`memory` (context curve, gradient through time), `units` (naming a unit on the command line).
"""

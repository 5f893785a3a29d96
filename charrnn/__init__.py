"""charrnn: character-level language models (LSTM/GRU/RNN) you train on your own text.

Importing the package is cheap: torch loads only when a model is built or loaded.
"""

from __future__ import annotations

__version__ = "0.1.0"

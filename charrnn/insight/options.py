"""The insight commands' closed choices, in a module light enough for the CLI to import at start."""

from __future__ import annotations

from charrnn.choices import Choice


class Unknown(Choice):
    """What to do with characters the model's vocabulary lacks."""

    ERROR = "error"
    SKIP = "skip"

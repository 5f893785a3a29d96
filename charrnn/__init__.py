"""charrnn: character-level language models (LSTM/GRU/RNN) you train on your own text.

    import charrnn
    model = charrnn.load("checkpoints/poems")          # a checkpoint file or a run directory
    print(model.generate(prime="The ", length=200, temperature=0.8, seed=1))
    result = charrnn.train("poems.txt", time="2m")     # same options as `charrnn train`

Importing the package is cheap: torch loads only when a model is built, loaded or trained.
"""

from __future__ import annotations

import sys
import types
from typing import Any

__version__ = "0.1.0"

from charrnn.api import Model, load, train

__all__ = ["Model", "__version__", "load", "train"]


class _CallableModule(types.ModuleType):
    """The `charrnn.train` module, callable as the `charrnn.train()` function."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from charrnn.api import train

        return train(*args, **kwargs)


class _Package(types.ModuleType):
    """Keeps `charrnn.train(...)` working after the `charrnn.train` submodule is imported.

    Importing a submodule sets it as an attribute of its package, which would replace the
    `train` function with the module of the same name; the module is made callable instead,
    so both `charrnn.train(corpus)` and `charrnn.train.Trainer` work in any import order.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "train" and isinstance(value, types.ModuleType) and type(value) is types.ModuleType:
            value.__class__ = _CallableModule
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

"""charrnn: character-level language models (LSTM/GRU/RNN) you train on your own text.

    import charrnn
    model = charrnn.load("checkpoints/poems")          # a checkpoint file or a run directory
    print(model.generate(prime="The ", length=200, temperature=0.8, seed=1))
    result = charrnn.train("poems.txt", time="2m")     # same options as `charrnn train`

Importing the package is cheap: torch loads only when a model is built, loaded or trained.
"""

from charrnn.api import Model, load, train
from charrnn.version import __version__

__all__ = ["Model", "__version__", "load", "train"]

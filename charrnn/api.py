"""The Python API: `charrnn.load(path)` gives a `Model` that generates and scores text;
`charrnn.train(corpus, ...)` trains with the same options as `charrnn train`.

    import charrnn
    result = charrnn.train("poems.txt", time="2m")
    model = charrnn.load(result.run_dir)
    print(model.generate(prime="The sea", length=200, temperature=0.8, seed=1))
    print(model.evaluate("The sea is calm tonight.").bpc)

Importing this module is cheap: torch is imported when a model is loaded or trained.
"""

from __future__ import annotations

import difflib
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from charrnn.errors import InputError

if TYPE_CHECKING:
    import torch

    from charrnn.evaluate import EvalResult
    from charrnn.model import ModelConfig
    from charrnn.store.checkpoint import Checkpoint
    from charrnn.training.loop import TrainObserver, TrainResult

PathLike = str | Path


class Model:
    """A trained model with its vocabulary, ready to generate and score text."""

    def __init__(self, checkpoint: Checkpoint, device: str = "cpu") -> None:
        from charrnn.device import resolve_device
        from charrnn.store.checkpoint import load_model

        self.checkpoint = checkpoint
        self.device: torch.device = resolve_device(device)
        self.module = load_model(checkpoint, self.device)

    @property
    def path(self) -> str:
        return self.checkpoint.path

    @property
    def config(self) -> ModelConfig:
        return self.checkpoint.config

    @property
    def vocab(self) -> str:
        """The characters the model knows, in id order."""
        return "".join(self.checkpoint.vocab.chars)

    @property
    def meta(self) -> dict[str, Any]:
        """Training facts stored in the checkpoint: step, best_val_loss, corpus, command, history..."""
        return self.checkpoint.meta

    def __repr__(self) -> str:
        c = self.config
        return f"<charrnn.Model {c.num_layers}x{c.hidden_size} {c.cell} vocab={c.vocab_size} from {self.path!r}>"

    @overload
    def generate(
        self,
        prime: str = ...,
        length: int = ...,
        temperature: float = ...,
        top_k: int | None = ...,
        top_p: float | None = ...,
        seed: int | None = ...,
        stream: Literal[False] = ...,
    ) -> str: ...

    @overload
    def generate(
        self,
        prime: str = ...,
        length: int = ...,
        temperature: float = ...,
        top_k: int | None = ...,
        top_p: float | None = ...,
        seed: int | None = ...,
        *,
        stream: Literal[True],
    ) -> Iterator[str]: ...

    def generate(
        self,
        prime: str = "",
        length: int = 1000,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        stream: bool = False,
    ) -> str | Iterator[str]:
        """The prime followed by `length` generated characters, as `charrnn sample` prints them.

        temperature 0 picks the likeliest character every time; `top_k` / `top_p` trim the
        distribution; the same `seed` gives the same text. With `stream=True`, an iterator of
        text chunks (the prime first) as they are produced. Bad arguments raise before any text.
        """
        from charrnn.sampling.generate import SampleSettings
        from charrnn.sampling.generate import generate as sample_text

        settings = SampleSettings(temperature=temperature, top_k=top_k, top_p=top_p)
        chunks = sample_text(
            self.module,
            self.checkpoint.vocab,
            prime=prime,
            length=length,
            settings=settings,
            seed=seed,
            device=self.device,
        )
        text = itertools.chain([prime] if prime else [], chunks)
        return text if stream else "".join(text)

    def evaluate(self, text: str) -> EvalResult:
        """Loss of `text` under the model: `.loss` (nats/char), `.bpc`, `.perplexity`, `.chars`."""
        from charrnn.evaluate import evaluate_ids
        from charrnn.vocab import describe_chars

        missing = self.checkpoint.vocab.unknown(text)
        if missing:
            unknown = describe_chars(missing)
            raise InputError(f"the text uses {len(missing)} character(s) the model never saw: {unknown}")
        if len(text) < 2:
            raise InputError("the text must have at least 2 characters (one prediction)")
        return evaluate_ids(self.module, self.checkpoint.vocab.encode(text), self.device)


def load(path: PathLike | None = None, device: str = "cpu") -> Model:
    """A model from a checkpoint file or a run directory (its best); None: the newest run under ./checkpoints.

    The file's digest is checked; a damaged or foreign file raises `charrnn.errors.CheckpointError`.
    """
    from charrnn.store.checkpoint import load_checkpoint
    from charrnn.store.runs import resolve_checkpoint

    return Model(load_checkpoint(resolve_checkpoint(None if path is None else str(path))), device)


# CLI flag names that differ from the TrainOptions fields they fill.
ALIASES = {"layers": "num_layers", "hidden": "hidden_size", "embed": "embed_size"}


def train(
    corpus: PathLike | Sequence[PathLike],
    *,
    out: PathLike | None = None,
    cell: str = "lstm",
    layers: int | None = None,
    hidden: int | None = None,
    embed: int | None = None,
    dropout: float | None = None,
    batch_size: int | None = None,
    seq_len: int | None = None,
    lr: float | None = None,
    grad_clip: float = 1.0,
    weight_decay: float = 0.01,
    val_frac: float = 0.1,
    val_max_chars: int = 131_072,
    time: str | float | None = None,
    steps: int | None = None,
    epochs: float | None = None,
    patience: int | None = None,
    eval_every: str | int | None = None,
    save_every: str | int = "5m",
    device: str = "auto",
    dtype: str = "auto",
    threads: int | None = None,
    seed: int = 1337,
    errors: str = "strict",
    observer: TrainObserver | None = None,
    **more: Any,
) -> TrainResult:
    """Train as `charrnn train` does, with the same options (flag names with `_` for `-`).

    `time` takes "90s", "10m", "1h30m" or seconds; `eval_every` / `save_every` take a step count
    or a duration. None means "choose for this corpus and budget", as on the command line.
    Progress goes to `observer` (see `charrnn.training.loop.TrainObserver`); nothing is printed.
    Options added to `charrnn train` later are accepted through `**more` by their flag name.
    Returns where the checkpoints are (`run_dir`, `best_path`) and how the run went.
    """
    from charrnn.training.loop import TrainOptions
    from charrnn.training.loop import train as run_training

    sources = (corpus,) if isinstance(corpus, (str, Path)) else tuple(corpus)
    given: dict[str, Any] = {
        "out": None if out is None else str(out),
        "cell": cell,
        "layers": layers,
        "hidden": hidden,
        "embed": embed,
        "dropout": dropout,
        "batch_size": batch_size,
        "seq_len": seq_len,
        "lr": lr,
        "grad_clip": grad_clip,
        "weight_decay": weight_decay,
        "val_frac": val_frac,
        "val_max_chars": val_max_chars,
        "time": None if time is None else (time if isinstance(time, str) else f"{time:g}s"),
        "steps": steps,
        "epochs": epochs,
        "patience": patience,
        "eval_every": None if eval_every is None else str(eval_every),
        "save_every": str(save_every),
        "device": device,
        "dtype": dtype,
        "threads": threads,
        "seed": seed,
        "errors": errors,
        **more,
    }
    known = {f.name for f in fields(TrainOptions)} - {"corpus", "command"}
    options: dict[str, Any] = {}
    for name, value in given.items():
        field_name = ALIASES.get(name, name)
        if field_name not in known:
            close = difflib.get_close_matches(name, [*known, *ALIASES], n=1)
            hint = f"did you mean {close[0]!r}?" if close else "see help(charrnn.training.loop)"
            raise TypeError(f"charrnn.train() got an unknown option {name!r}; {hint}")
        options[field_name] = value
    defaults = {f.name: f.default for f in fields(TrainOptions)}
    shown = [repr(str(s)) for s in sources] + [
        f"{name}={value!r}" for name, value in given.items() if value != defaults.get(ALIASES.get(name, name))
    ]
    command = f"charrnn.train({', '.join(shown)})"
    return run_training(TrainOptions(corpus=tuple(str(s) for s in sources), command=command, **options), observer)

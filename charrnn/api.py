"""The Python API: `charrnn.load(path)` gives a `Model` that generates and scores text;
`charrnn.train(corpus, ...)` trains with the same options as `charrnn train`.

    import charrnn
    result = charrnn.train("poems.txt", time="2m")
    model = charrnn.load(result.run_dir)
    print(model.generate(prime="The sea", length=200, temperature=0.8, seed=1))
    print(model.evaluate("The sea is calm tonight.").bpc)
    print(model.evaluate_dynamic(open("held_out.txt").read()).bpc)  # while a copy learns from it

Importing this module is cheap: torch is imported when a model is loaded or trained.
"""

from __future__ import annotations

import difflib
import inspect
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from charrnn.adapt.settings import DEFAULT_LR, DEFAULT_SEQ
from charrnn.errors import InputError
from charrnn.shared_options import DEFAULT_DEVICE, Work

if TYPE_CHECKING:
    import numpy as np
    import torch
    from typing_extensions import Unpack

    from charrnn.evaluate import EvalResult
    from charrnn.model import CharRNN, ModelConfig
    from charrnn.sampling.generate import Piece
    from charrnn.store.checkpoint import Checkpoint
    from charrnn.store.opening import OpenModel
    from charrnn.train_kwargs import TrainKwargs
    from charrnn.training.observer import TrainObserver, TrainResult

PathLike = str | Path


@dataclass(frozen=True)
class Sample:
    """One sample of `Model.samples`: its text (prime first), seed (None for beam search), the model's
    log-probability of the generated part (natural log), characters generated, and why it ended."""

    text: str
    seed: int | None
    logprob: float | None
    chars: int
    finish_reason: str | None


class Model:
    """A trained model with its vocabulary, ready to generate and score text."""

    def __init__(self, opened: OpenModel) -> None:
        self.checkpoint: Checkpoint = opened.checkpoint
        self.device: torch.device = opened.device
        self.module: CharRNN = opened.model

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
        *,
        stream: Literal[False] = ...,
        adapt: int = ...,
        adapt_lr: float = ...,
        **controls: Any,
    ) -> str: ...

    @overload
    def generate(
        self, prime: str = ..., *, stream: Literal[True], adapt: int = ..., adapt_lr: float = ..., **controls: Any
    ) -> Iterator[str]: ...

    def generate(
        self, prime: str = "", *, stream: bool = False, adapt: int = 0, adapt_lr: float = DEFAULT_LR, **controls: Any
    ) -> str | Iterator[str]:
        """The prime followed by one generated sample, as `charrnn sample` prints it.

        `controls` are the generation controls by name, as `charrnn sample` has them without the
        dashes (`--min-p` is `min_p=`, `--temp` is `temperature=`; all in docs/sampling.md): e.g.
        `length`, `temperature` (0 picks the likeliest character), `top_p`, `seed`, `stop`,
        `bias={"e": 2.0}`, `match` (a regex every sample fully matches), `beam`. The same seed and
        controls give the same text as `charrnn sample` and `charrnn serve`. With `stream=True`, an
        iterator of text chunks (the prime first) as they are produced. `adapt=N` first fits a copy
        of the weights to the prime with N updates of `adapt_lr` (as `charrnn sample --adapt N`).
        Bad arguments raise before any text.
        """
        if controls.get("num_samples", 1) != 1:
            raise TypeError("generate() makes one sample; use samples(..., num_samples=N) for several")
        pieces = self._pieces(prime, adapt, adapt_lr, controls)
        chunks = (piece.text for piece in pieces if piece.text)
        text = itertools.chain([prime] if prime else [], chunks)
        return text if stream else "".join(text)

    def samples(
        self, prime: str = "", *, adapt: int = 0, adapt_lr: float = DEFAULT_LR, **controls: Any
    ) -> list[Sample]:
        """`num_samples` whole samples (prime included in `text`), each with its seed, the model's total
        log-probability of the generated text, its length and why it ended; the same as
        `charrnn sample --format jsonl` prints."""
        pieces = self._pieces(prime, adapt, adapt_lr, controls, scored=True)
        found: list[Sample] = []
        parts: list[str] = []
        for piece in pieces:
            parts.append(piece.text)
            if piece.done:
                found.append(Sample(prime + "".join(parts), piece.seed, piece.logprob, piece.chars, piece.reason))
                parts = []
        return found

    def _pieces(
        self, prime: str, adapt: int, adapt_lr: float, controls: dict[str, Any], scored: bool = False
    ) -> Iterator[Piece]:
        from charrnn.adapt.settings import AdaptSettings
        from charrnn.sampling.controls import CONTROLS, build
        from charrnn.sampling.generate import adapted_model, generate_many

        for name in controls:
            if name not in CONTROLS:
                close = difflib.get_close_matches(name, list(CONTROLS), n=1)
                hint = f"did you mean {close[0]!r}?" if close else "see docs/sampling.md"
                raise TypeError(f"generate() got an unknown control {name!r}; {hint}")
        if isinstance(controls.get("bias"), dict):  # {"e": 2.0} from Python: characters as keys
            controls = {**controls, "bias": [f"{k}={v}" for k, v in controls["bias"].items()]}
        settings, run = build(controls, "python")
        learning = AdaptSettings(lr=adapt_lr, flags="--adapt")
        model = adapted_model(self.module, self.checkpoint.vocab, prime, adapt, learning)
        return generate_many(model, self.checkpoint.vocab, prime, settings, run, self.device, scored=scored)

    def evaluate(self, text: str) -> EvalResult:
        """Loss of `text` under the model: `.loss` (nats/char), `.bpc`, `.perplexity`, `.chars`."""
        from charrnn.evaluate import evaluate_ids

        return evaluate_ids(self.module, self._scored_ids(text), self.device)

    def evaluate_dynamic(self, text: str, lr: float = DEFAULT_LR, seq: int = DEFAULT_SEQ) -> EvalResult:
        """Loss of `text` while a copy of the model learns from it, as `charrnn eval --dynamic` scores it.

        The text is one stream of `seq`-character segments; each is scored first, then the copy
        takes one update step on it, so no character is scored by weights that learned from it. One
        sequential pass with a backward per segment: several times slower than `evaluate`. The
        model itself is unchanged. Compare with `evaluate(text)` on the same text. It runs on
        torch's current thread count (`torch.set_num_threads`; the CLI uses 1), which moves the
        last digits.
        """
        from charrnn.adapt.learn import evaluate_dynamic
        from charrnn.adapt.settings import AdaptSettings

        settings = AdaptSettings(lr=lr, seq=seq)  # checked before the text is encoded
        return evaluate_dynamic(self.module, self._scored_ids(text), self.device, settings)

    def _scored_ids(self, text: str) -> np.ndarray:
        """The ids of a text to score: every character known, at least one prediction."""
        from charrnn.vocab import describe_chars

        missing = self.checkpoint.vocab.unknown(text)
        if missing:
            unknown = describe_chars(missing)
            raise InputError(f"the text uses {len(missing)} character(s) the model never saw: {unknown}")
        if len(text) < 2:
            raise InputError("the text must have at least 2 characters (one prediction)")
        return self.checkpoint.vocab.encode(text)


def load(path: PathLike | None = None, device: str = DEFAULT_DEVICE[Work.LATENCY]) -> Model:
    """A model from a checkpoint file or a run directory (its best); None: the newest run under ./checkpoints.

    The file's digest is checked; a damaged or foreign file raises `charrnn.errors.CheckpointError`.
    """
    from charrnn.store.opening import open_model

    return Model(open_model(path, device))


def train(
    corpus: PathLike | Sequence[PathLike], *, observer: TrainObserver | None = None, **options: Unpack[TrainKwargs]
) -> TrainResult:
    """Train as `charrnn train` does, with the same options and defaults (flag names with `_` for `-`).

    `time` takes "90s", "10m", "1h30m" or seconds; `eval_every` / `save_every` take a step count
    or a duration. None means "choose for this corpus and budget", as on the command line.
    Progress goes to `observer` (see `charrnn.training.observer.TrainObserver`); nothing is printed.
    With `resume`, every option passed counts as asked for, even at its default: `decay="linear"`
    switches an older run to it, `seed=1337` is checked against the run's seed.
    Returns where the checkpoints are (`run_dir`, `best_path`) and how the run went. The options are
    typed (`charrnn.train_kwargs.TrainKwargs`): a type checker finds `hiden=` or `time=[5]` before the run.
    """
    from charrnn.training.loop import train as run_training
    from charrnn.training.options import SPECS, field_name, parse_options

    sources = (corpus,) if isinstance(corpus, (str, Path)) else tuple(corpus)
    values: dict[str, Any] = {}
    for name, value in options.items():
        target = field_name(name)
        if target is None:
            names = [*SPECS, *(spec.flag for spec in SPECS.values() if spec.flag)]
            close = difflib.get_close_matches(name, names, n=1)
            hint = f"did you mean {close[0]!r}?" if close else "see help(charrnn.train)"
            raise TypeError(f"charrnn.train() got an unknown option {name!r}; {hint}")
        values[target] = str(value) if isinstance(value, Path) else value
    shown = [repr(str(s)) for s in sources] + [f"{name}={value!r}" for name, value in options.items()]
    command = f"charrnn.train({', '.join(shown)})"
    return run_training(parse_options(tuple(str(s) for s in sources), command=command, **values), observer)


def train_signature() -> inspect.Signature:
    """`help(charrnn.train)` lists every option with its declared default (from training.options)."""
    from charrnn.training.options import SPECS, default_of, value_text

    params = [
        inspect.Parameter("corpus", inspect.Parameter.POSITIONAL_OR_KEYWORD),
        *(
            inspect.Parameter(spec.flag or name, inspect.Parameter.KEYWORD_ONLY, default=value_text(default_of(name)))
            for name, spec in SPECS.items()
        ),
        inspect.Parameter("observer", inspect.Parameter.KEYWORD_ONLY, default=None),
    ]
    return inspect.Signature(params)


train.__signature__ = train_signature()  # type: ignore[attr-defined]


def generation_signature(method: Any) -> inspect.Signature:
    """`help(Model.generate)` lists every generation control with its declared default
    (charrnn.sampling.controls, a torch-free import), after the method's own parameters."""
    from charrnn.sampling.controls import CONTROLS, DEFAULTS

    own = [p for p in inspect.signature(method).parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    controls = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=DEFAULTS[name]) for name in CONTROLS]
    return inspect.Signature([*own, *controls])


Model.generate.__signature__ = generation_signature(Model.generate)  # type: ignore[attr-defined]
Model.samples.__signature__ = generation_signature(Model.samples)  # type: ignore[attr-defined]

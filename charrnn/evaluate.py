"""Loss of a text under a model: full pass, state carried, in nats, bits per char and perplexity.

The score is that of one sequential pass over the text, computed in parallel chunks whose start
states are checked, not assumed: see `chunked_pass`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.device import autocast
from charrnn.errors import InputError
from charrnn.model import CharRNN, State, detach_state

MIN_CHARS_PER_STREAM = 2048
MAX_STREAMS = 64
BURN_IN = 256
WINDOW = 512
# Two states closer than this (h absolute, c relative to its size) lead to the same losses: a
# start state this close to the state one sequential pass has there is taken as that state.
# Reduced precision rounds each state to ~3 significant digits, so its bar is wider.
STATE_TOLERANCE = 1e-3
REDUCED_STATE_TOLERANCE = 3e-2

# visit(positions, live, logits, losses): one window of the streams being scored. `positions` are
# prediction indices [streams, w], `live` marks those that are real (not padding). A position may
# be visited again in a later round, with corrected losses that replace the earlier ones.
Visit = Callable[[np.ndarray, np.ndarray, torch.Tensor, torch.Tensor], None]


@dataclass(frozen=True)
class EvalResult:
    """Mean next-character loss over `chars` predictions."""

    loss: float
    chars: int

    @property
    def bpc(self) -> float:
        return self.loss / math.log(2)

    @property
    def perplexity(self) -> float:
        return math.exp(min(self.loss, 700.0))

    def to_dict(self) -> dict[str, float | int]:
        return {"loss": self.loss, "bpc": self.bpc, "perplexity": self.perplexity, "chars": self.chars}


@dataclass(frozen=True)
class PassStats:
    """How a chunked pass went: the rounds it took and the chunks it scored again."""

    total: float  # summed loss over this process's share (over all ranks with `reduce`)
    rounds: int  # 1 when every burned-in start state matched its neighbour's end state
    rescored: int  # chunk scorings beyond the first (this process's share)


def stream_layout(num_predictions: int, streams: int | None) -> tuple[int, int]:
    """(streams, chunk): how many parallel streams to score and how many predictions each scores."""
    if streams is None:
        streams = max(1, min(MAX_STREAMS, num_predictions // MIN_CHARS_PER_STREAM))
    streams = max(1, min(streams, num_predictions))
    return streams, math.ceil(num_predictions / streams)


def row_of(chunk_index: np.ndarray | int, ranks: int, per_rank: int) -> np.ndarray | int:
    """Where chunk `chunk_index` sits in states gathered from all ranks (rank-major blocks)."""
    return (chunk_index % ranks) * per_rank + chunk_index // ranks


def state_distance(a: State, b: State) -> torch.Tensor:
    """Per row (stream), how far apart two states are: max |h - h'| and max |c - c'| / (1 + |c'|)."""
    if isinstance(a, tuple) and isinstance(b, tuple):
        return torch.maximum(state_distance(a[0], b[0]), cell_distance(a[1], b[1]))
    assert isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)
    return (a.float() - b.float()).abs().amax(dim=(0, 2))


def cell_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    b = b.float()
    return ((a.float() - b).abs() / (1.0 + b.abs())).amax(dim=(0, 2))


def take_rows(state: State, rows: torch.Tensor) -> State:
    if isinstance(state, tuple):
        return (state[0][:, rows], state[1][:, rows])
    return state[:, rows]


def put_rows(state: State, rows: torch.Tensor, values: State) -> State:
    if isinstance(state, tuple) and isinstance(values, tuple):
        return (put_tensor_rows(state[0], rows, values[0]), put_tensor_rows(state[1], rows, values[1]))
    assert isinstance(state, torch.Tensor) and isinstance(values, torch.Tensor)
    return put_tensor_rows(state, rows, values)


def put_tensor_rows(tensor: torch.Tensor, rows: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    return tensor.index_copy(1, rows, values.to(tensor.dtype))


def map_state(state: State, fn: Callable[[torch.Tensor], torch.Tensor]) -> State:
    if isinstance(state, tuple):
        return (fn(state[0]), fn(state[1]))
    return fn(state)


@torch.no_grad()
def chunked_pass(
    model: CharRNN,
    ids: np.ndarray,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    streams: int | None = None,
    burn_in: int = BURN_IN,
    shard: tuple[int, int] = (0, 1),
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    visit: Visit | None = None,
    max_rounds: int | None = None,
) -> PassStats:
    """Score every prediction ids[i] -> ids[i+1] as one sequential pass would, S chunks side by side.

    A chunk's start state must be the state one pass reaches there. It is first guessed by reading
    the `burn_in` characters before the chunk from a zero state, then checked against the end state
    of the chunk before it. Where the two differ, the model still remembers the cut, so the chunk
    is scored again from its neighbour's end state, and so on until every start state agrees with
    the end state before it. Chunk 0 starts exact, so chunk k is exact after k rounds at most; a
    model that forgets where it started within a few hundred characters needs one round. When
    rescoring would cost more than one more full pass (a model that never forgets), the rest of
    the text, from the first chunk not yet exact, is scored as one stream: never more than about
    two parallel passes plus one sequential one.

        round 1:  chunk 0 [scored.......]E0
                  chunk 1          [warm]P1[scored.......]E1      P1 ~ E0 ? done : rescore from E0
                  chunk 2                         [warm]P2[scored...]

    Under torchrun, `shard=(rank, ranks)` scores every ranks-th chunk from `rank`; `gather` joins
    every rank's end states (rows in rank order) and `reduce` sums over the ranks, so validation
    takes 1/ranks of the time on each. Both must be given with ranks > 1. `max_rounds=1` scores
    from the guessed start states alone (what a fixed burn-in gives; for measuring that error).
    """
    n_pred = int(ids.size) - 1
    if n_pred < 1:  # a loss of nothing is not a number: refused rather than reported as NaN
        raise InputError("the text must have at least 2 characters (one prediction) to be scored")
    rank, ranks = shard
    if ranks > 1 and (gather is None or reduce is None):
        raise ValueError("a sharded pass needs gather and reduce")
    num_streams, chunk = stream_layout(n_pred, streams)
    per_rank = -(-num_streams // ranks)
    mine = np.arange(per_rank, dtype=np.int64) * ranks + rank  # chunk index of each local row
    real = mine < num_streams  # the last ranks may hold a padding row
    starts = np.where(real, mine * chunk, 0)
    lengths = np.where(real, np.minimum(chunk, n_pred - starts), 0)
    warm = min(burn_in, chunk)
    tolerance = STATE_TOLERANCE if dtype in (torch.float32, torch.float64) else REDUCED_STATE_TOLERANCE
    was_training = model.training
    model.eval()
    sums = torch.zeros(per_rank, dtype=torch.float64, device=device)

    def forward(x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        with autocast(device, dtype):
            return model(x, state)

    def run(rows: np.ndarray, state: State | None) -> State:
        """Score `rows` from `state`; their sums are replaced. Returns their state after `chunk` steps."""
        begins, span = starts[rows], lengths[rows]
        row_sums = torch.zeros(rows.size, dtype=torch.float64, device=device)
        # Each window's columns are gathered from `ids` as they are needed (a memory map stays one),
        # so memory is streams x WINDOW, not three int64 copies of the whole text.
        for pos in range(0, chunk, WINDOW):
            cols = np.arange(pos, min(pos + WINDOW, chunk), dtype=np.int64)
            live = cols[None, :] < span[:, None]  # past a chunk's end: padding, never scored
            index = np.where(live, begins[:, None] + cols[None, :], 0)
            x = torch.from_numpy(np.asarray(ids[index], dtype=np.int64)).to(device)
            y = torch.from_numpy(np.asarray(ids[index + 1], dtype=np.int64)).to(device)
            logits, state = forward(x, state)
            losses = F.cross_entropy(logits.float().transpose(1, 2), y, reduction="none")  # [rows, w]
            row_sums += (losses * torch.from_numpy(live).to(device)).sum(dim=1, dtype=torch.float64)
            if visit is not None:
                visit(index, live, logits, losses)
            state = detach_state(state)
        sums[torch.from_numpy(rows).to(device)] = row_sums
        assert state is not None
        return state

    def score_stream(begin: int, state: State) -> torch.Tensor:
        """Predictions begin .. n_pred-1 as one stream from `state`: their summed loss."""
        total = torch.zeros((), dtype=torch.float64, device=device)
        for pos in range(begin, n_pred, WINDOW):
            index = np.arange(pos, min(pos + WINDOW, n_pred), dtype=np.int64)[None, :]
            x = torch.from_numpy(np.asarray(ids[index], dtype=np.int64)).to(device)
            y = torch.from_numpy(np.asarray(ids[index + 1], dtype=np.int64)).to(device)
            logits, state = forward(x, state)
            losses = F.cross_entropy(logits.float().transpose(1, 2), y, reduction="none")
            total += losses.sum(dtype=torch.float64)
            if visit is not None:
                visit(index, np.ones_like(index, dtype=bool), logits, losses)
            state = detach_state(state)
        return total

    # Round 1: each chunk but the first starts from `warm` characters read from a zero state.
    everyone = np.arange(per_rank, dtype=np.int64)
    burn = np.where((starts > 0)[:, None], starts[:, None] - max(warm, 1) + np.arange(max(warm, 1))[None, :], 0)
    _, guess = forward(torch.from_numpy(np.asarray(ids[burn], dtype=np.int64)).to(device), None)
    at_zero = torch.from_numpy((starts == 0) | (warm == 0)).to(device).view(1, -1, 1)
    start_state = map_state(guess, lambda t: torch.where(at_zero, torch.zeros_like(t), t))
    end_state = run(everyone, start_state)
    rounds, rescored, extra = 1, 0, 0
    tail = torch.zeros((), dtype=torch.float64, device=device)
    for _ in range(min(num_streams, max_rounds or num_streams) - 1):  # chunk k is exact after k rounds
        # The end state of the chunk before each local chunk, from whichever rank scored it.
        every_end = end_state if gather is None else map_state(end_state, gather)
        before = np.where(mine > 0, row_of(mine - 1, ranks, per_rank), 0)
        handed = take_rows(every_end, torch.from_numpy(before).to(device))
        off = (state_distance(start_state, handed) > tolerance) & torch.from_numpy(real & (mine > 0)).to(device)
        flags = off.float().view(1, -1, 1)
        every_off = (flags if gather is None else gather(flags)).flatten().bool().cpu().numpy()
        pending = np.sort(np.flatnonzero(every_off) % per_rank * ranks + np.flatnonzero(every_off) // per_rank)
        if pending.size == 0:
            break
        if extra + pending.size > num_streams:
            # Rescoring again would cost more than one more full pass: the model carries its state
            # too far for chunks. Every chunk before the first pending one is exact, so score the
            # rest as one stream from there (on rank 0), which costs at most a sequential pass.
            first = int(pending[0])
            sums[torch.from_numpy(mine >= first).to(device)] = 0.0
            if rank == 0:
                state = take_rows(every_end, torch.tensor([row_of(first - 1, ranks, per_rank)], device=device))
                tail = score_stream(first * chunk, state)
            rounds += 1
            break
        rows_t = off.nonzero().flatten()
        if rows_t.numel():
            rows = rows_t.cpu().numpy()
            start_state = put_rows(start_state, rows_t, take_rows(handed, rows_t))
            end_state = put_rows(end_state, rows_t, run(rows, take_rows(start_state, rows_t)))
            rescored += int(rows.size)
        extra += int(pending.size)
        rounds += 1
    model.train(was_training)
    total = sums.sum() + tail
    if reduce is not None:
        total = reduce(total)
    return PassStats(total=float(total.item()), rounds=rounds, rescored=rescored)


def evaluate_ids(
    model: CharRNN,
    ids: np.ndarray,
    device: torch.device,
    dtype: torch.dtype = torch.float32,
    streams: int | None = None,
    burn_in: int = BURN_IN,
    shard: tuple[int, int] = (0, 1),
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> EvalResult:
    """The mean loss of one sequential pass over `ids`, computed by `chunked_pass`."""
    stats = chunked_pass(model, ids, device, dtype, streams, burn_in, shard, reduce, gather)
    return EvalResult(loss=stats.total / (int(ids.size) - 1), chars=int(ids.size) - 1)

"""The hidden state carried from window to window, and the parts of a run that travel with it.

Each of the B x G streams (data.batches) keeps its own row of the state ([layers, B x G, hidden]
tensors; an LSTM has two, h and c); a step reads and writes the rows of its group. Under torchrun
each rank holds a block of those rows.
"""

from __future__ import annotations

import torch

from charrnn.model import State
from charrnn.training.distributed import Team

CARRIED_DTYPE = torch.float32  # the carried state's dtype in memory, and so in checkpoints


def slice_state(state: State | None, rows: slice) -> State | None:
    """Some rows of the carried state: this rank's block, or one group's streams."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return (state[0][:, rows].contiguous(), state[1][:, rows].contiguous())
    return state[:, rows].contiguous()


def gather_state(team: Team, state: State | None) -> State | None:
    """Inverse of `slice_state`: every rank's rows, joined (the identity for one process)."""
    if state is None:
        return None
    if isinstance(state, tuple):
        return (team.gather_rows(state[0], 1), team.gather_rows(state[1], 1))
    return team.gather_rows(state, 1)


def group_rows(state: State | None, group: int, groups: int) -> State | None:
    """The rows of one group's streams (stream s is in group s % groups): a step's initial state."""
    return state if groups == 1 else slice_state(state, slice(group, None, groups))


def put_group_rows(state: State | None, part: State, group: int, groups: int) -> State:
    """The whole carried state with one group's rows replaced by `part` (a new tensor: a snapshot
    being saved keeps the values it took)."""
    if groups == 1:
        return part
    if isinstance(part, tuple):
        olds = state if isinstance(state, tuple) else (None, None)
        h, c = (put_group_rows(o, p, group, groups) for o, p in zip(olds, part, strict=True))
        assert isinstance(h, torch.Tensor) and isinstance(c, torch.Tensor)
        return (h, c)
    if isinstance(state, torch.Tensor):
        whole = state.clone()
    else:
        layers, rows, hidden = part.shape
        whole = part.new_zeros(layers, rows * groups, hidden)
    whole[:, group::groups] = part
    return whole


def keep_finite_state(bad: torch.Tensor, new: State, old: State | None) -> State:
    """The new carried state, or the old one after a skipped step (chosen on the device, no sync).

    Always float32, whatever dtype the recurrent layer returned under autocast (bf16 on a CPU,
    fp16 from cuDNN): the state a checkpoint stores is then the very state training goes on with,
    so a resumed run continues exactly, and every reader of the file (numpy has no bf16) can open it.
    Widening to float32 is exact, and autocast narrows it again at the next step's input.
    """
    if isinstance(new, tuple):
        olds = old if isinstance(old, tuple) else (None, None)
        h, c = (keep_finite_state(bad, n, o) for n, o in zip(new, olds, strict=True))
        assert isinstance(h, torch.Tensor) and isinstance(c, torch.Tensor)
        return (h, c)
    new = new.detach().to(CARRIED_DTYPE)
    previous = old.to(CARRIED_DTYPE) if isinstance(old, torch.Tensor) else torch.zeros_like(new)
    return torch.where(bad, previous, new)


def reset_rows(state: State | None, seed: int, step: int, chance: float, batch_size: int, rows: slice) -> State | None:
    """The carried state with each stream's row zeroed with probability `chance` (`--state-reset`).

    The draw depends on the seed and the step alone, so a resumed run and every rank of a torchrun
    team (each taking its `rows` of the whole batch's draw) reset the same streams.
    """
    if state is None or chance <= 0:
        return state
    first = state[0] if isinstance(state, tuple) else state
    generator = torch.Generator().manual_seed((seed * 1_000_003 + step) % 2**63)
    draw = torch.rand(batch_size, generator=generator)[rows]
    keep = (draw >= chance).to(first.device, first.dtype).view(1, -1, 1)
    if isinstance(state, tuple):
        return (state[0] * keep, state[1] * keep)
    return state * keep

"""B x G contiguous streams read B at a time in windows of T characters, for truncated BPTT.

The training ids are laid out as S = B x G streams, each a contiguous slice of the text, and
read in G groups of B (stream s belongs to batch row s // G and group s % G):

    text:     [ stream 0 ...... | stream 1 ...... | ... | stream S-1 ...... ]
    step t:   group t % G, window t // G of each of its B streams (T chars each)
    target:   the same windows shifted one character to the right

The hidden state of stream s after its window w is its initial state for window w+1, so the
model sees each stream as one long sequence; gradients stop at window edges. Consecutive steps
read different groups, text far apart: a step's update does not follow the last one's text
(one group, G = 1, is the classic layout; a run recorded before groups existed has it).
An epoch is one pass over all windows; the state is reset at the start of each epoch.
Under torchrun each rank reads its own block of batch rows (`rows`, and so G x as many
streams); the layout does not depend on how many processes share them.
"""

from __future__ import annotations

import numpy as np
import torch

from charrnn.errors import CorpusError


def check_layout(size: int, batch_size: int, seq_len: int, groups: int = 1) -> None:
    """CorpusError unless `size` ids fill B x G streams of at least one window each (checked before
    anything is allocated at these sizes: a probe of the machine's speed, the batches)."""
    if size - 1 < seq_len:
        raise CorpusError(
            f"the training text has {size} characters, fewer than one window of "
            f"--seq-len {seq_len} + 1; use a longer text or a smaller --seq-len"
        )
    if (size - 1) // (batch_size * groups) < seq_len:
        what = f"{batch_size} streams" if groups == 1 else f"{batch_size} x {groups} streams (--stream-groups)"
        raise CorpusError(
            f"the training text ({size} chars) cannot fill {what} of {seq_len} chars; "
            f"lower --batch-size{'' if groups == 1 else ', --stream-groups'} or --seq-len"
        )


class StreamBatcher:
    """Windows of B x T ids (inputs and next-char targets), addressed by their index in the epoch."""

    def __init__(
        self,
        ids: np.ndarray,
        batch_size: int,
        seq_len: int,
        rows: slice | None = None,
        groups: int = 1,
        alternate_ends: bool = False,
    ) -> None:
        check_layout(int(ids.size), batch_size, seq_len, groups)
        streams = batch_size * groups
        self.batch_size = batch_size
        self.seq_len = seq_len
        self.groups = groups
        stream_len = (ids.size - 1) // streams
        used = streams * stream_len
        first, last, _ = (rows or slice(0, batch_size)).indices(batch_size)
        mine = slice(first * groups, last * groups)  # this rank's batch rows, all their groups
        self.stream_rows = mine
        self.inputs = ids[:used].reshape(streams, stream_len)[mine]
        self.targets = ids[1 : used + 1].reshape(streams, stream_len)[mine]
        self.rows = self.inputs.shape[0] // groups
        self.windows_per_epoch = stream_len // seq_len * groups
        # A stream's last `spare` characters do not fill a window. With `alternate_ends` every odd
        # epoch aligns its windows to the stream's end instead of its start, so any two epochs in a
        # row read every character (runs recorded before it never read the spare ones: ~2% of Tiny
        # Shakespeare at 32 x 16 streams of 64).
        self.spare = stream_len % seq_len if alternate_ends else 0
        self.resident: torch.Tensor | None = None  # [rows x G, stream_len + 1] on the device, once `place`d

    def place(self, device: torch.device, max_bytes: int | None = None) -> bool:
        """Keep this rank's streams on `device` (a GPU), so a step slices its window there instead of
        copying it from the host: no host work, no transfer, nothing for the step to wait on. Only
        where they take at most `max_bytes` there (a share of the free device memory): a text too
        big for it stays on the host, read window by window as before. Returns whether it moved.

        One matrix holds each stream and its next character (targets are inputs shifted by one),
        in int16 where the vocabulary allows (half the memory of int32; 2 bytes a character).
        """
        rows, length = self.inputs.shape
        if max_bytes is not None and rows * (length + 1) * (2 if self.inputs.dtype.itemsize == 1 else 4) > max_bytes:
            return False
        ends = self.targets[:, -1:]
        small = int(max(self.inputs.max(initial=0), ends.max(initial=0))) < 2**15
        both = np.concatenate([self.inputs, ends], axis=1).astype(np.int16 if small else np.int32)
        self.resident = torch.from_numpy(both).to(device)
        return True

    @property
    def chars_per_window(self) -> int:
        """Characters one window holds across all ranks."""
        return self.batch_size * self.seq_len

    def group(self, index: int) -> int:
        """The group of streams window `index` reads."""
        return index % self.groups

    def window(self, index: int, pin: bool = False, epoch: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of window `index` (0-based within `epoch`), int64 [rows, T]: its
        group's streams, at their window `index // groups` (shifted to the streams' ends in odd
        epochs, with `alternate_ends`).

        `pin` puts them in page-locked memory so the copy to a GPU does not block the host. Once
        `place`d, they are sliced on the device instead.
        """
        start = index // self.groups * self.seq_len + (self.spare if epoch % 2 else 0)
        stop = start + self.seq_len
        streams = slice(self.group(index), None, self.groups)
        if self.resident is not None:
            return self.resident[streams, start:stop].long(), self.resident[streams, start + 1 : stop + 1].long()
        x = torch.from_numpy(np.ascontiguousarray(self.inputs[streams, start:stop]).astype(np.int64))
        y = torch.from_numpy(np.ascontiguousarray(self.targets[streams, start:stop]).astype(np.int64))
        return (x.pin_memory(), y.pin_memory()) if pin else (x, y)

"""B parallel contiguous streams cut into windows of T characters, for truncated BPTT.

The training ids are laid out as B rows, each a contiguous slice of the text:

    text:     [ stream 0 ............ | stream 1 ............ | ... | stream B-1 .......... ]
    row b:    | window 0 | window 1 | window 2 | ...        (T chars each)
    target:   the same windows shifted one character to the right

The hidden state of row b after window w is the initial state of row b for window w+1, so
the model sees each stream as one long sequence; gradients stop at window edges.
An epoch is one pass over all windows; the state is reset at the start of each epoch.
Under torchrun each rank reads its own block of rows (`rows`); the layout of the B streams
does not depend on how many processes share them.
"""

from __future__ import annotations

import numpy as np
import torch

from charrnn.errors import CorpusError


class StreamBatcher:
    """Windows of B x T ids (inputs and next-char targets), addressed by their index in the epoch."""

    def __init__(self, ids: np.ndarray, batch_size: int, seq_len: int, rows: slice | None = None) -> None:
        if ids.size - 1 < seq_len:
            raise CorpusError(
                f"the training text has {ids.size} characters, fewer than one window of "
                f"--seq-len {seq_len} + 1; use a longer text or a smaller --seq-len"
            )
        if (ids.size - 1) // batch_size < seq_len:
            raise CorpusError(
                f"the training text ({ids.size} chars) cannot fill {batch_size} streams of "
                f"{seq_len} chars; lower --batch-size or --seq-len"
            )
        self.batch_size = batch_size
        self.seq_len = seq_len
        stream_len = (ids.size - 1) // batch_size
        used = batch_size * stream_len
        rows = rows or slice(0, batch_size)
        self.inputs = ids[:used].reshape(batch_size, stream_len)[rows]
        self.targets = ids[1 : used + 1].reshape(batch_size, stream_len)[rows]
        self.rows = self.inputs.shape[0]
        self.windows_per_epoch = stream_len // seq_len

    @property
    def chars_per_window(self) -> int:
        """Characters one window holds across all ranks."""
        return self.batch_size * self.seq_len

    def window(self, index: int, pin: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """Inputs and targets of window `index` (0-based within an epoch), int64 [rows, T].

        `pin` puts them in page-locked memory so the copy to a GPU does not block the host.
        """
        start = index * self.seq_len
        stop = start + self.seq_len
        x = torch.from_numpy(np.ascontiguousarray(self.inputs[:, start:stop]).astype(np.int64))
        y = torch.from_numpy(np.ascontiguousarray(self.targets[:, start:stop]).astype(np.int64))
        return (x.pin_memory(), y.pin_memory()) if pin else (x, y)

from __future__ import annotations

import numpy as np
import pytest

from charrnn.data.batches import StreamBatcher
from charrnn.errors import CorpusError


def test_windows_are_contiguous_streams_with_shifted_targets() -> None:
    ids = np.arange(41, dtype=np.uint8)  # 40 predictions -> 2 streams of 20 -> 2 windows of 8 each
    batcher = StreamBatcher(ids, batch_size=2, seq_len=8)
    assert batcher.windows_per_epoch == 2
    x0, y0 = batcher.window(0)
    x1, _ = batcher.window(1)
    assert x0.shape == (2, 8) and x0.dtype.is_floating_point is False
    assert x0[0].tolist() == list(range(8)) and x0[1].tolist() == list(range(20, 28))
    assert y0[0].tolist() == list(range(1, 9))
    assert x1[0].tolist() == list(range(8, 16))  # stream 0 continues where window 0 ended


def test_too_short_for_one_window() -> None:
    with pytest.raises(CorpusError, match="fewer than one window"):
        StreamBatcher(np.arange(10, dtype=np.uint8), batch_size=1, seq_len=16)
    with pytest.raises(CorpusError, match="lower --batch-size"):
        StreamBatcher(np.arange(100, dtype=np.uint8), batch_size=32, seq_len=16)

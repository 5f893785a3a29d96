from __future__ import annotations

import numpy as np
import pytest
import torch

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


def test_groups_take_turns_and_each_stream_continues_where_it_stopped() -> None:
    ids = np.arange(97, dtype=np.int64)  # 96 predictions -> 2 rows x 3 groups = 6 streams of 16 -> 2 windows
    batcher = StreamBatcher(ids, batch_size=2, seq_len=8, groups=3)
    assert batcher.windows_per_epoch == 6 and batcher.rows == 2
    starts = [batcher.window(index)[0][:, 0].tolist() for index in range(6)]
    # step t reads group t % 3 (streams s with s % 3 == group, i.e. s = row * 3 + group), window t // 3
    assert starts[:3] == [[0, 48], [16, 64], [32, 80]]
    assert starts[3:] == [[8, 56], [24, 72], [40, 88]]
    seen = np.concatenate([batcher.window(index)[0].numpy().ravel() for index in range(6)])
    assert sorted(seen.tolist()) == list(range(96))  # an epoch reads every window once


def test_ranks_read_their_rows_of_every_group() -> None:
    ids = np.arange(257, dtype=np.int64)
    whole = StreamBatcher(ids, batch_size=4, seq_len=8, groups=2)
    halves = [StreamBatcher(ids, batch_size=4, seq_len=8, rows=rows, groups=2) for rows in (slice(0, 2), slice(2, 4))]
    assert [half.stream_rows for half in halves] == [slice(0, 4), slice(4, 8)]  # carried-state rows too
    for index in range(whole.windows_per_epoch):
        joined = np.concatenate([half.window(index)[0].numpy() for half in halves])
        assert (joined == whole.window(index)[0].numpy()).all()
    with pytest.raises(CorpusError, match="--stream-groups"):
        StreamBatcher(np.arange(200, dtype=np.uint8), batch_size=4, seq_len=8, groups=8)


def test_a_step_reads_and_writes_only_its_groups_rows_of_the_carried_state() -> None:
    import torch

    from charrnn.training.carried import group_rows, put_group_rows

    whole = torch.arange(2 * 6 * 3, dtype=torch.float32).view(2, 6, 3)  # [layers, 2 rows x 3 groups, hidden]
    part = group_rows(whole, 1, 3)
    assert isinstance(part, torch.Tensor) and (part == whole[:, [1, 4]]).all()
    updated = put_group_rows(whole, -part, 1, 3)
    assert isinstance(updated, torch.Tensor)
    assert (updated[:, [1, 4]] == -part).all() and (updated[:, [0, 2, 3, 5]] == whole[:, [0, 2, 3, 5]]).all()
    assert (whole[:, [1, 4]] == part).all()  # a new tensor: a snapshot taken before keeps its values
    fresh = put_group_rows(None, (part, part), 2, 3)  # the first step of a group, before any state
    assert isinstance(fresh, tuple) and fresh[0].shape == (2, 6, 3) and (fresh[0][:, [0, 1, 3, 4]] == 0).all()
    assert group_rows(whole, 0, 1) is whole and put_group_rows(whole, part, 0, 1) is part  # one group: as before


@pytest.mark.parametrize("top", [255, 40_000])  # int16 on the device, and int32 past its range
def test_windows_kept_on_the_device_are_the_windows_read_from_the_host(top: int) -> None:
    """A GPU run `place`s its streams on the device; the CPU shows it reads the very same windows."""
    ids = np.random.default_rng(0).integers(0, top + 1, size=2_001).astype(np.uint16 if top > 255 else np.uint8)
    ids[-1] = top  # the last target, held only in the extra column
    for rows in (None, slice(1, 3)):
        host = StreamBatcher(ids, batch_size=4, seq_len=16, rows=rows, groups=3)
        placed = StreamBatcher(ids, batch_size=4, seq_len=16, rows=rows, groups=3)
        placed.place(torch.device("cpu"))
        assert placed.resident is not None and placed.resident.dtype == (torch.int32 if top > 2**15 else torch.int16)
        for index in range(host.windows_per_epoch):
            (x, y), (px, py) = host.window(index), placed.window(index)
            assert px.dtype == py.dtype == torch.int64
            assert torch.equal(x, px) and torch.equal(y, py), index


def test_a_text_too_big_for_its_share_of_the_device_stays_on_the_host() -> None:
    batcher = StreamBatcher(np.arange(2_001, dtype=np.int64) % 200, batch_size=4, seq_len=16, groups=3)
    need = batcher.inputs.shape[0] * (batcher.inputs.shape[1] + 1) * 4
    assert not batcher.place(torch.device("cpu"), max_bytes=need - 1) and batcher.resident is None
    x, _ = batcher.window(0)
    assert x.dtype == torch.int64 and x.shape == (4, 16)  # read from the host, as before
    assert batcher.place(torch.device("cpu"), max_bytes=need) and batcher.resident is not None


def test_two_epochs_in_a_row_read_every_character_of_every_stream() -> None:
    """With alternate_ends, odd epochs align the windows to the streams' ends: the spare tail that
    no start-aligned window reaches is read every other epoch, and epoch 0 is the layout of before."""
    ids = np.arange(1_001, dtype=np.int64)  # 1,000 predictions -> 2 x 2 streams of 250 -> 15 windows of 16, 10 spare
    before = StreamBatcher(ids, batch_size=2, seq_len=16, groups=2)
    batcher = StreamBatcher(ids, batch_size=2, seq_len=16, groups=2, alternate_ends=True)
    assert batcher.spare == 10 and before.spare == 0 and batcher.windows_per_epoch == 30

    def read(b: StreamBatcher, epoch: int) -> set[int]:
        return {int(v) for i in range(b.windows_per_epoch) for v in b.window(i, epoch=epoch)[0].numpy().ravel()}

    assert read(batcher, 0) == read(before, 0) == read(before, 1)  # start-aligned: the old layout
    assert len(read(before, 0)) == 960  # 40 characters, the streams' tails, never read
    assert read(batcher, 0) | read(batcher, 1) == set(range(1_000))  # two epochs: every character
    assert read(batcher, 2) == read(batcher, 0) and read(batcher, 3) == read(batcher, 1)
    x, y = batcher.window(1, epoch=1)  # group 1's first window in an odd epoch, and its targets
    assert x[0, 0] == 250 + 10 and torch.equal(y, x + 1)
    placed = StreamBatcher(ids, batch_size=2, seq_len=16, groups=2, alternate_ends=True)
    placed.place(torch.device("cpu"))
    for epoch in (0, 1):
        for index in range(placed.windows_per_epoch):
            assert all(
                torch.equal(a, b)
                for a, b in zip(placed.window(index, epoch=epoch), batcher.window(index, epoch=epoch), strict=True)
            )

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from charrnn.errors import CheckpointError
from charrnn.model import CharRNN, ModelConfig
from charrnn.store.checkpoint import FORMAT_VERSION, load_checkpoint, load_model, save_checkpoint
from charrnn.vocab import Vocab


def write_tiny(path: Path) -> CharRNN:
    torch.manual_seed(0)
    vocab = Vocab("\nabc")
    model = CharRNN(ModelConfig(vocab_size=vocab.size, hidden_size=8, embed_size=4))
    save_checkpoint(path, model.config, vocab, model.state_dict(), {"step": 7}, {"rng.torch": torch.get_rng_state()})
    return model


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    model = write_tiny(path)
    ckpt = load_checkpoint(path)
    assert ckpt.config == model.config
    assert ckpt.vocab.chars == "\nabc"
    assert ckpt.meta["step"] == 7
    assert "rng.torch" in ckpt.extra
    loaded = load_model(ckpt)
    for name, tensor in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], tensor)


def test_no_temp_files_left(tmp_path: Path) -> None:
    write_tiny(tmp_path / "m.safetensors")
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


def test_overwrite_is_atomic_when_write_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "m.safetensors"
    write_tiny(path)
    before = path.read_bytes()

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("charrnn.files.os.fsync", broken_fsync)
    with pytest.raises(OSError):
        write_tiny(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]


@pytest.mark.parametrize("offset", [0, 7, 100, -1, -500])
def test_flipped_byte_is_detected(tmp_path: Path, offset: int) -> None:
    path = tmp_path / "m.safetensors"
    write_tiny(path)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


@pytest.mark.parametrize("keep", [0, 5, 8, 64, 0.5, 0.99])
def test_truncation_is_detected(tmp_path: Path, keep: float) -> None:
    path = tmp_path / "m.safetensors"
    write_tiny(path)
    data = path.read_bytes()
    size = int(len(data) * keep) if isinstance(keep, float) else keep
    path.write_bytes(data[:size])
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


class Payload:
    marker: Path

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_payload_is_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = Payload()
    payload.marker = marker
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(payload))
    with pytest.raises(CheckpointError, match="not a charrnn checkpoint"):
        load_checkpoint(path)
    torch_file = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3), "payload": payload}, torch_file)
    marker.unlink(missing_ok=True)  # torch.save itself does not run it, but be sure
    with pytest.raises(CheckpointError, match="not a charrnn checkpoint"):
        load_checkpoint(torch_file)
    assert not marker.exists()


def test_foreign_safetensors_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError, match="no charrnn metadata"):
        load_checkpoint(path)


def test_future_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    write_tiny(path)
    data = path.read_bytes().replace(
        f'"format_version":"{FORMAT_VERSION}"'.encode(), f'"format_version":"{FORMAT_VERSION + 1}"'.encode()
    )
    path.write_bytes(data)
    with pytest.raises(CheckpointError, match="upgrade charrnn"):
        load_checkpoint(path)


def test_directory_and_missing(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "absent.safetensors")

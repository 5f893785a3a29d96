"""A checkpoint's tensors without torch: the safetensors layout read from bytes, the digest over
them, and the model's weights as numpy arrays.

safetensors is 8 bytes of header length, a JSON header (`name -> dtype, shape, data_offsets`,
plus `__metadata__`) and the tensors' raw little-endian bytes. The digest (store.checkpoint) is
taken over each tensor's name, torch dtype name, shape and bytes: the same bytes hash the same
here, so a torch-free reader checks a file exactly as `load_checkpoint` does.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np

from charrnn.errors import CheckpointError
from charrnn.store.meta import header_length

# safetensors dtype -> (torch's name for it, as the digest spells it; bytes per element)
DTYPES = {
    "F64": ("torch.float64", 8), "F32": ("torch.float32", 4), "F16": ("torch.float16", 2),
    "BF16": ("torch.bfloat16", 2), "I64": ("torch.int64", 8), "I32": ("torch.int32", 4),
    "I16": ("torch.int16", 2), "I8": ("torch.int8", 1), "U8": ("torch.uint8", 1), "BOOL": ("torch.bool", 1),
}  # fmt: skip


@dataclass(frozen=True)
class RawTensor:
    dtype: str  # safetensors' code: F32, BF16, ...
    shape: tuple[int, ...]
    data: memoryview

    def float32(self) -> np.ndarray:
        """The tensor as a float32 array (a copy: the file's bytes are not kept alive by it)."""
        if self.dtype != "F32":
            raise TypeError(f"expected F32, got {self.dtype}")
        return np.frombuffer(self.data, dtype="<f4").reshape(self.shape).astype(np.float32, copy=True)


def read_tensors(data: bytes, where: str) -> dict[str, RawTensor]:
    """Every tensor of a safetensors file's bytes, checked against the file (offsets, sizes, dtypes)."""
    length = header_length(data[:8], len(data), where)
    try:
        header = json.loads(data[8 : 8 + length])
    except (ValueError, RecursionError):
        raise CheckpointError(f"{where}: corrupted checkpoint (header is not JSON)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{where}: corrupted checkpoint (header is not an object)")
    body = memoryview(data)[8 + length :]
    tensors: dict[str, RawTensor] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (begin, end) = entry["dtype"], tuple(entry["shape"]), entry["data_offsets"]
            size = DTYPES[dtype][1] * math.prod(shape)
            valid = all(isinstance(n, int) and n >= 0 for n in (*shape, begin, end))
        except (KeyError, TypeError, ValueError):
            raise CheckpointError(f"{where}: corrupted checkpoint (tensor {name!r}: bad header entry)") from None
        if not valid or end - begin != size or end > len(body):
            raise CheckpointError(f"{where}: corrupted checkpoint (tensor {name!r} does not fit the file)")
        tensors[name] = RawTensor(dtype, shape, body[begin:end])
    return tensors


def raw_digest(meta_json: str, tensors: dict[str, RawTensor]) -> str:
    """store.checkpoint.payload_digest, over raw tensors."""
    digest = hashlib.sha256(meta_json.encode("utf-8"))
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"\0{name}\0{DTYPES[tensor.dtype][0]}\0{tensor.shape}\0".encode())
        digest.update(tensor.data)
    return digest.hexdigest()

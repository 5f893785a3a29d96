"""AdamW as the run uses it, and its state as named tensors plus JSON (a checkpoint holds no pickle)."""

from __future__ import annotations

from typing import Any

import torch

from charrnn.errors import CheckpointError
from charrnn.model import CharRNN
from charrnn.store.checkpoint import Checkpoint
from charrnn.training.config import TrainConfig

OPTIMIZER_SLOTS = ("exp_avg", "exp_avg_sq", "step")  # AdamW's state per parameter


def make_optimizer(model: CharRNN, config: TrainConfig) -> torch.optim.AdamW:
    """AdamW with weight decay on weight matrices only (not on biases or the embedding table)."""
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith("embed.")]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2 or n.startswith("embed.")]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # fused: one kernel per step, and `found_inf` lets a NaN/inf step be skipped on the device
    return torch.optim.AdamW(groups, lr=config.lr, betas=(0.9, 0.99), fused=True)


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], list[dict[str, Any]]]:
    """Optimizer state as named tensors plus JSON-able param groups (no pickle needed)."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            tensors[f"optim.{index}.{key}"] = value if torch.is_tensor(value) else torch.tensor(value)
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in state["param_groups"]]
    return tensors, groups


def optimizer_state(ckpt: Checkpoint) -> dict[str, Any]:
    """Inverse of `optimizer_tensors`: a state dict `Optimizer.load_state_dict` accepts."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, tensor in ckpt.extra.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = tensor
    groups = ckpt.info.optimizer.get("param_groups")
    if not isinstance(groups, list):
        raise CheckpointError(f"{ckpt.path}: holds no optimizer state; it cannot be resumed (use --init-from)")
    return {"state": state, "param_groups": groups}

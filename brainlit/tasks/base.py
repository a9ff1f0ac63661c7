"""Optimiser and schedule wiring shared by the brainlit tasks."""

from __future__ import annotations

import math
from collections.abc import Iterable

import lightning as L
import torch
from torch import nn


def decay_groups(
    named_parameters: Iterable[tuple[str, nn.Parameter]], lr: float, weight_decay: float
) -> list[dict]:
    """Split trainable parameters into decayed weights and undecayed biases/norms/embeddings.

    Args:
        named_parameters: ``(name, parameter)`` pairs to group, as from ``named_parameters()``.
        lr: Learning rate for both groups.
        weight_decay: Decay applied to matrices (``ndim >= 2``) only.
    """
    decay, no_decay = [], []
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        is_matrix = param.ndim >= 2 and "embed" not in name
        is_matrix = is_matrix and not getattr(param, "_no_weight_decay", False)
        (decay if is_matrix else no_decay).append(param)
    groups = [
        {"params": decay, "lr": lr, "weight_decay": weight_decay},
        {"params": no_decay, "lr": lr, "weight_decay": 0.0},
    ]
    return [g for g in groups if g["params"]]


def warmup_cosine(step: int, total_steps: int, warmup_fraction: float) -> float:
    """Learning-rate factor: linear warm-up, then cosine decay to zero."""
    warmup = max(1, int(warmup_fraction * total_steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


class BrainTask(L.LightningModule):
    """A LightningModule with AdamW and a per-step warm-up + cosine schedule.

    Subclasses set ``self.lr``, ``self.weight_decay``, ``self.warmup_fraction`` and may
    override :meth:`param_groups` (e.g. for a layer-wise learning rate).
    """

    lr: float
    weight_decay: float
    warmup_fraction: float

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store the data card (atlas, ROI count, TR, cleaning, training cohort) beside the
        weights, so that whoever loads them can check new data against it."""
        card = getattr(getattr(self.trainer, "datamodule", None), "data_card", None)
        if card is not None:
            checkpoint["brainlit_data"] = card()

    def param_groups(self) -> list[dict]:
        """Parameter groups handed to the optimiser."""
        return decay_groups(self.named_parameters(), self.lr, self.weight_decay)

    def configure_optimizers(self) -> dict:
        """AdamW with a linear warm-up and cosine decay, stepped every batch."""
        optimizer = torch.optim.AdamW(self.param_groups(), lr=self.lr)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda step: warmup_cosine(step, total, self.warmup_fraction)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def sliding_windows(x: torch.Tensor, length: int) -> torch.Tensor:
    """Cut ``x: [B, R, T]`` into windows ``[B, W, R, length]`` half a window apart that cover all of T.

    The last window is aligned to the end of the run so no time point is left out.
    """
    total = x.shape[-1]
    length = min(length, total)
    stride = max(1, length // 2)
    starts = list(range(0, total - length + 1, stride))
    if starts[-1] != total - length:
        starts.append(total - length)
    return torch.stack([x[..., s : s + length] for s in starts], dim=1)

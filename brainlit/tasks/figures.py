"""Figures a task sends to TensorBoard and saves as PNG next to its logs."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import matplotlib.pyplot as plt
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from brainlit.viz import plot_expert_maps, plot_predictions, plot_reconstruction

log = logging.getLogger(__name__)


def _publish(module: L.LightningModule, tag: str, figure: plt.Figure, save_png: bool) -> None:
    """Add ``figure`` to TensorBoard and, if asked, save it as ``<log_dir>/<tag>.png``."""
    trainer = module.trainer
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):
            logger.experiment.add_figure(tag, figure, global_step=trainer.global_step)
    if save_png and trainer.log_dir:
        path = Path(trainer.log_dir) / f"{tag.replace('/', '_')}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=120, bbox_inches="tight")
        log.info("Saved %s", path)
    plt.close(figure)


def log_prediction_scatter(
    module: L.LightningModule, stage: str, pred: torch.Tensor, true: torch.Tensor
) -> None:
    """One predicted-vs-true scatter per target (``[N, n_targets]`` in original units)."""
    if not module.trainer.is_global_zero or len(pred) < 2:
        return
    pred_np, true_np = pred.float().cpu().numpy(), true.float().cpu().numpy()
    for i, name in enumerate(module.hparams.target_names):
        figure = plot_predictions(true_np[:, i], pred_np[:, i], name)
        _publish(module, f"{stage}/{name}/scatter", figure, save_png=stage == "test")


def log_expert_maps(module: L.LightningModule, roi_expert_weights: torch.Tensor) -> None:
    """Brain maps of the mean per-ROI gate weight of each expert, plus a CSV of the weights."""
    if not module.trainer.is_global_zero:
        return
    weights = roi_expert_weights.float().cpu().numpy()  # [R, E]
    coords = getattr(module.trainer.datamodule, "roi_coordinates", None)
    figure = plot_expert_maps(weights, None if coords is None else np.asarray(coords))
    _publish(module, "test/expert_maps", figure, save_png=True)
    if module.trainer.log_dir:
        header = ",".join(f"expert_{e}" for e in range(weights.shape[1]))
        path = Path(module.trainer.log_dir) / "roi_expert_weights.csv"
        np.savetxt(path, weights, delimiter=",", header=header, comments="", fmt="%.6f")


def log_reconstruction(
    module: L.LightningModule,
    stage: str,
    target: torch.Tensor,
    mask: torch.Tensor,
    fills: dict[str, torch.Tensor],
    n_rois: int = 4,
) -> None:
    """Truth, hidden spans, LMAE and the best simple filler for a few ROIs of the first subject.

    Args:
        module: The pretraining task (its trainer and loggers).
        stage: ``val`` or ``test``.
        target: True patches ``[B, R, P, L]``.
        mask: ``[B, R, P]``, True = hidden.
        fills: Reconstructions ``{name: [B, R, P, L]}``, ``lmae`` among them.
        n_rois: ROIs drawn (the first ones with a hidden patch).
    """
    if not module.trainer.is_global_zero or "lmae" not in fills:
        return
    hidden = mask[0].float()  # [R, P]
    errors = {
        name: float(((pred[0] - target[0]).pow(2).mean(-1) * hidden).sum() / hidden.sum().clamp_min(1))
        for name, pred in fills.items() if name != "lmae"
    }
    best = min(errors, key=errors.get)
    rois = [int(r) for r in torch.nonzero(mask[0].any(-1)).flatten()[:n_rois]]
    as_numpy = {name: fills[name][0, rois].flatten(-2).float().cpu().numpy() for name in ("lmae", best)}
    figure = plot_reconstruction(
        target[0, rois].flatten(-2).float().cpu().numpy(),
        mask[0, rois].repeat_interleave(target.shape[-1], -1).cpu().numpy(),
        as_numpy["lmae"],
        as_numpy[best],
        best,
        rois,
    )
    _publish(module, f"{stage}/reconstruction", figure, save_png=stage == "test")

"""Figures a task sends to TensorBoard and saves as PNG next to its logs.

Every figure is best effort: one that cannot be drawn or saved (odd atlas coordinates, a full
disk, a logger that refuses images) is skipped with a warning, and the run goes on.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec

import lightning as L
import matplotlib.pyplot as plt
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger

from brainlit.viz import plot_expert_maps, plot_predictions, plot_reconstruction

log = logging.getLogger(__name__)
P = ParamSpec("P")


def best_effort(draw: Callable[P, None]) -> Callable[P, None]:
    """Run ``draw``; on any error log a warning with the reason instead of failing the run."""

    @functools.wraps(draw)
    def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            draw(*args, **kwargs)
        except Exception as error:  # a figure must never cost a finished training run
            log.warning("Skipped %s: %s: %s", draw.__name__, type(error).__name__, error)

    return guarded


def _publish(module: L.LightningModule, tag: str, figure: plt.Figure, save_png: bool) -> None:
    """Add ``figure`` to TensorBoard and, if asked, save it as ``<log_dir>/<tag>.png``."""
    trainer = module.trainer
    try:
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure(tag, figure, global_step=trainer.global_step, close=False)
        if save_png and trainer.log_dir:
            path = Path(trainer.log_dir) / f"{tag.replace('/', '_')}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            figure.savefig(path, dpi=120, bbox_inches="tight")
            log.info("Saved %s", path)
    finally:
        plt.close(figure)


@best_effort
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
    """A CSV of the mean per-ROI gate weight of each expert (``[R, E]``), then their brain maps.

    Each is best effort on its own: maps that cannot be drawn leave the CSV in place.
    """
    if not module.trainer.is_global_zero:
        return
    weights = roi_expert_weights.float().cpu().numpy()  # [R, E]
    save_expert_weights(module, weights)
    draw_expert_maps(module, weights)


@best_effort
def save_expert_weights(module: L.LightningModule, weights: np.ndarray) -> None:
    """``<log_dir>/roi_expert_weights.csv``: one row per ROI, one column per expert."""
    if module.trainer.log_dir:
        header = ",".join(f"expert_{e}" for e in range(weights.shape[1]))
        path = Path(module.trainer.log_dir) / "roi_expert_weights.csv"
        np.savetxt(path, weights, delimiter=",", header=header, comments="", fmt="%.6f")


@best_effort
def draw_expert_maps(module: L.LightningModule, weights: np.ndarray) -> None:
    """Glass-brain maps of ``weights`` (``[R, E]``) at the atlas's ROI centres."""
    coords = getattr(module.trainer.datamodule, "roi_coordinates", None)
    figure = plot_expert_maps(weights, None if coords is None else np.asarray(coords))
    _publish(module, "test/expert_maps", figure, save_png=True)


@best_effort
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

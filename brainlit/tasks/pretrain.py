"""LMAEPretrainer: self-supervised Local Masked Autoencoder pretraining on ROI time series.

Validation and test score LMAE against the closed-form fillers of
:mod:`brainlit.baselines.fillers` on the very same masks, so a user sees at once whether the
encoder has learned more than zeros, interpolation in time or a same-time linear fit.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import nn
from torchmetrics import MeanMetric

from brainlit.baselines.fillers import SpatialRidgeFiller, interpolate_fill, zero_fill
from brainlit.models.encoder import PatchEncoder
from brainlit.models.lmae import LocalMaskedAutoencoder
from brainlit.tasks.base import BrainTask
from brainlit.tasks.figures import log_reconstruction
from brainlit.tasks.specs import EncoderSpec, as_spec, encoder_args, resolve_patch_len, spec_dict

log = logging.getLogger(__name__)

SIMPLE_FILLERS = ("zero", "interp", "spatial_ridge")


class ReconstructionMetrics(nn.Module):
    """Masked-patch MSE of LMAE and of each simple filler, averaged over hidden values."""

    def __init__(self) -> None:
        super().__init__()
        self.mse = nn.ModuleDict({name: MeanMetric() for name in ("lmae", *SIMPLE_FILLERS)})

    def update(self, name: str, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> None:
        """Add the squared errors of ``pred`` on the hidden patches (``[B, R, P, L]``, ``[B, R, P]``)."""
        errors = (pred.float() - target.float()).pow(2)[mask]  # [n_hidden, L]
        if errors.numel():
            self.mse[name].update(errors.mean(), weight=errors.numel())

    def compute(self) -> dict[str, float]:
        """``{name: MSE}`` for every entry that saw data, plus ``lmae_vs_best_simple``."""
        values = {n: float(m.compute()) for n, m in self.mse.items() if m.update_count}
        simple = [values[n] for n in SIMPLE_FILLERS if n in values]
        if "lmae" in values and simple:
            values["lmae_vs_best_simple"] = values["lmae"] / min(simple)
        return values

    def reset(self) -> None:
        """Clear all accumulated errors."""
        for metric in self.mse.values():
            metric.reset()


class LMAEPretrainer(BrainTask):
    """Wires :class:`LocalMaskedAutoencoder` to the masked-patch MSE, diagnostics and checkpoints.

    No labels are used. The checkpoint's ``model.encoder.*`` weights and its ``encoder``
    hyperparameters are what :class:`~brainlit.tasks.regress.RegressionTask` loads.

    Validation and test draw their masks from a generator seeded by the batch index, so every
    epoch scores the same hidden patches, and log ``<stage>/mse/{lmae,zero,interp,
    spatial_ridge}`` and ``<stage>/lmae_vs_best_simple`` (below 1: LMAE beats every simple
    filler). The spatial ridge filler is fit on the training crops as they pass.

    Args:
        n_rois: Number of ROIs (linked from the datamodule).
        encoder: Encoder architecture.
        mask_ratio: Fraction of tokens hidden per subject.
        mask_strategy: ``local`` hides contiguous blocks (the paper); ``random`` is MAE-style.
        block_len: Patches per masked block along time (2 x 8 TRs, about 32 s).
        block_rois: Neighbouring ROIs (atlas order) a block spans.
        decoder_dim: Width of the light decoder.
        decoder_depth: Decoder transformer layers (0: a linear head on the encoder output).
        norm_pix_loss: Normalise each target patch before the MSE (as in MAE). The LMAE entry
            of the diagnostics is then left out: its output is not in the data's units.
        filler_ridge: Ridge penalty of the spatial filler (series have unit variance).
        lr: Peak learning rate.
        weight_decay: AdamW weight decay on weight matrices.
        warmup_fraction: Fraction of all steps spent in linear warm-up.
        figure_rois: ROIs drawn in the reconstruction figure of the first validation batch.
        t_r: Cohort TR in seconds (linked from the datamodule); used by ``encoder.patch_seconds``.
    """

    def __init__(
        self,
        n_rois: int,
        encoder: EncoderSpec = EncoderSpec(),
        mask_ratio: float = 0.5,
        mask_strategy: Literal["local", "random"] = "local",
        block_len: int = 2,
        block_rois: int = 1,
        decoder_dim: int = 64,
        decoder_depth: int = 0,
        norm_pix_loss: bool = False,
        filler_ridge: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.05,
        figure_rois: int = 4,
        t_r: float | None = None,
    ) -> None:
        super().__init__()
        encoder = resolve_patch_len(as_spec(encoder, EncoderSpec), t_r)
        self.save_hyperparameters(ignore=["encoder"])
        self.hparams["encoder"] = spec_dict(encoder)  # a plain dict keeps checkpoints portable
        self.lr, self.weight_decay, self.warmup_fraction = lr, weight_decay, warmup_fraction
        self.model = LocalMaskedAutoencoder(
            PatchEncoder(n_rois, **encoder_args(encoder)),
            decoder_dim=decoder_dim,
            decoder_depth=decoder_depth,
            mask_ratio=mask_ratio,
            mask_strategy=mask_strategy,
            block_len=block_len,
            block_rois=block_rois,
            norm_pix_loss=norm_pix_loss,
        )
        self.filler = SpatialRidgeFiller(n_rois, filler_ridge)
        self.val_metrics, self.test_metrics = ReconstructionMetrics(), ReconstructionMetrics()
        self.diagnostics: dict[str, dict[str, float]] = {}

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Masked-patch MSE on a random crop; the crop also updates the spatial filler's fit."""
        x = batch["x"]  # x: [B, R, T]
        self.filler.update(x)
        loss = self.model(x)["loss"]
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        return loss

    def _eval_step(self, batch: dict, batch_idx: int, stage: str) -> None:
        x = batch["x"]  # x: [B, R, T], whole runs
        generator = torch.Generator().manual_seed(batch_idx)
        shape = (x.shape[0], x.shape[1], x.shape[2] // self.model.encoder.patch_len)
        mask = self.model.make_mask(*shape, device=x.device, generator=generator)
        out = self.model(x, mask)
        self.log(f"{stage}/loss", out["loss"], prog_bar=True, batch_size=x.shape[0], sync_dist=True)
        fills = self.simple_fills(out["target"], mask)
        if not self.hparams.norm_pix_loss:
            fills["lmae"] = out["pred"]
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        for name, pred in fills.items():
            metrics.update(name, pred, out["target"], mask)
        if batch_idx == 0 and not self.trainer.sanity_checking:
            log_reconstruction(self, stage, out["target"], mask, fills, self.hparams.figure_rois)

    def simple_fills(self, target: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each simple filler's patches ``[B, R, P, L]`` on ``mask`` (ridge once it is fit)."""
        fills = {"zero": zero_fill(target, mask), "interp": interpolate_fill(target, mask)}
        if self.filler.fitted:
            fills["spatial_ridge"] = self.filler(target, mask)
        return fills

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Masked-patch MSE of LMAE and of the simple fillers on held-out whole runs."""
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        """The same diagnostics on the test fold."""
        self._eval_step(batch, batch_idx, "test")

    def _log_diagnostics(self, stage: str) -> None:
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        values = metrics.compute()
        metrics.reset()
        for name, value in values.items():
            key = name if name == "lmae_vs_best_simple" else f"mse/{name}"
            self.log(f"{stage}/{key}", value, sync_dist=False)
        if not self.trainer.sanity_checking:
            self.diagnostics[stage] = values

    def on_validation_epoch_end(self) -> None:
        """Log the reconstruction diagnostics of the epoch."""
        self._log_diagnostics("val")

    def on_test_epoch_end(self) -> None:
        """Log the reconstruction diagnostics of the test fold."""
        self._log_diagnostics("test")

    def on_fit_end(self) -> None:
        """Print the last validation diagnostics as a small table."""
        if self.trainer.is_global_zero and "val" in self.diagnostics:
            log.info("LMAE reconstruction of held-out runs (masked-patch MSE):\n%s",
                     format_diagnostics(self.diagnostics["val"]))


def format_diagnostics(values: dict[str, float]) -> str:
    """Aligned ``name  MSE`` lines, LMAE first, then the simple fillers and the ratio."""
    order = ["lmae", *SIMPLE_FILLERS, "lmae_vs_best_simple"]
    return "\n".join(f"  {name:<20} {values[name]:.3f}" for name in order if name in values)

"""LMAEPretrainer: self-supervised pretraining of the patch encoder on ROI time series.

The pretext is LMAE's masked reconstruction (the paper's), a subject-contrastive loss
(:mod:`brainlit.models.contrastive`), or both. Validation and test score LMAE against the
closed-form fillers of :mod:`brainlit.baselines.fillers` on the very same masks, so a user
sees at once whether the encoder has learned more than zeros, interpolation in time or a
same-time linear fit; and they score subject re-identification between the two halves of
held-out runs (:mod:`brainlit.tasks.reid`) against FC fingerprinting and chance.
"""

from __future__ import annotations

import logging
from typing import Literal

import torch
from torch import nn
from torchmetrics import MeanMetric

from brainlit.baselines.fillers import SpatialRidgeFiller, interpolate_fill, zero_fill
from brainlit.errors import BrainlitConfigError
from brainlit.models.contrastive import Pooling, SubjectContrastiveHead
from brainlit.models.encoder import PatchEncoder
from brainlit.models.lmae import LocalMaskedAutoencoder
from brainlit.tasks.base import BrainTask, sliding_windows
from brainlit.tasks.figures import log_reconstruction
from brainlit.tasks.reid import ReidentificationMetrics, format_reidentification, run_halves
from brainlit.tasks.specs import EncoderSpec, as_spec, encoder_args, resolve_patch_len, spec_dict

log = logging.getLogger(__name__)

SIMPLE_FILLERS = ("zero", "interp", "spatial_ridge")
Pretext = Literal["masked", "contrastive", "both"]


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
    """Wires the encoder to its pretext (masked MSE, NT-Xent or both), diagnostics and checkpoints.

    No labels are used. The checkpoint's ``model.encoder.*`` weights and its ``encoder``
    hyperparameters are what :class:`~brainlit.tasks.regress.RegressionTask` loads, whatever
    the pretext.

    ``pretext: contrastive`` and ``both`` need two windows of each subject per item
    (``data.views: 2``); ``both`` reuses LMAE's masked views as the contrastive pair, so each
    view costs one encoder pass. Evidence: ``docs/research/contrastive_pretext.md``.

    Validation and test draw their masks from a generator seeded by the batch index, so every
    epoch scores the same hidden patches, and log ``<stage>/mse/{lmae,zero,interp,
    spatial_ridge}`` and ``<stage>/lmae_vs_best_simple`` (below 1: LMAE beats every simple
    filler). The spatial ridge filler is fit on the training crops as they pass. Every pretext
    also logs ``<stage>/reid/{encoder_mean,encoder_fc,fc,chance}``: top-1 re-identification of
    held-out subjects between the two halves of their runs (:mod:`brainlit.tasks.reid`).

    Args:
        n_rois: Number of ROIs (linked from the datamodule).
        encoder: Encoder architecture.
        pretext: ``masked`` (LMAE, the paper's), ``contrastive`` (two windows of a subject are
            positives, the batch's other subjects negatives) or ``both``.
        contrastive_weight: Weight of the contrastive loss beside the masked MSE (``both``).
        pooling: What the contrastive head reads: the tokens' own connectivity (``connectivity``)
            or their mean (``mean``).
        temperature: NT-Xent softmax temperature.
        projection_dim: Width of the contrastive projection head's output.
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
        crop_len: Length of the training windows (linked from ``data.crop_len``). Validation and
            test score the masked reconstruction on windows of it, half a window apart, as the
            model was trained (the attention's context is the window); None: on whole runs.
    """

    def __init__(
        self,
        n_rois: int,
        encoder: EncoderSpec = EncoderSpec(),
        pretext: Pretext = "masked",
        contrastive_weight: float = 0.1,
        pooling: Pooling = "connectivity",
        temperature: float = 0.1,
        projection_dim: int = 64,
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
        crop_len: int | None = None,
    ) -> None:
        super().__init__()
        if pretext not in ("masked", "contrastive", "both") or contrastive_weight <= 0:
            raise ValueError(f"model.pretext must be masked, contrastive or both (got {pretext!r}) and "
                             f"model.contrastive_weight positive (got {contrastive_weight}).")
        encoder = resolve_patch_len(as_spec(encoder, EncoderSpec), t_r)
        self.save_hyperparameters(ignore=["encoder"])
        self.hparams["encoder"] = spec_dict(encoder)  # a plain dict keeps checkpoints portable
        self.lr, self.weight_decay, self.warmup_fraction = lr, weight_decay, warmup_fraction
        self.masked = pretext != "contrastive"
        patch_encoder = PatchEncoder(n_rois, **encoder_args(encoder))
        if self.masked:
            self.model = LocalMaskedAutoencoder(
                patch_encoder, decoder_dim=decoder_dim, decoder_depth=decoder_depth, mask_ratio=mask_ratio,
                mask_strategy=mask_strategy, block_len=block_len, block_rois=block_rois, norm_pix_loss=norm_pix_loss,
            )
        else:  # no decoder to train; the encoder keeps its model.encoder.* keys for fine-tuning
            self.model = nn.ModuleDict({"encoder": patch_encoder})
            # the mask token is never used; DDP stops on a trainable parameter left unused
            patch_encoder.mask_embed.requires_grad_(False)
        self.contrastive = None
        if pretext != "masked":
            self.contrastive = SubjectContrastiveHead(encoder.d_model, n_rois, pooling, proj_dim=projection_dim,
                                                      temperature=temperature)
        self.filler = SpatialRidgeFiller(n_rois, filler_ridge)
        self.val_metrics, self.test_metrics = ReconstructionMetrics(), ReconstructionMetrics()
        self.val_reid, self.test_reid = ReidentificationMetrics(), ReidentificationMetrics()
        self.diagnostics: dict[str, dict[str, float]] = {}

    def total_loss(self, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The pretext's loss from its terms ``{masked, contrastive}`` (either may be absent)."""
        weight = self.hparams.contrastive_weight if self.masked else 1.0
        return sum(weight * value if name == "contrastive" else value for name, value in losses.items())

    def second_view(self, batch: dict) -> torch.Tensor:
        """The batch's second windows ``x2: [B, R, T]``; a clear error when the data gives none."""
        if "x2" not in batch:
            raise BrainlitConfigError(
                f"model.pretext {self.hparams.pretext} needs two windows of each subject per item: set "
                "data.views: 2, with a data.crop_len well under the run length so that the windows differ."
            )
        return batch["x2"]

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """The pretext's loss on random crops; the crops also update the spatial filler's fit."""
        x = batch["x"]  # x: [B, R, T]
        views = [x] if self.contrastive is None else [x, self.second_view(batch)]
        losses = {}
        if self.masked:
            self.filler.update(x)
            outs = [self.model(view) for view in views]
            losses["masked"] = torch.stack([out["loss"] for out in outs]).mean()
            tokens = [out["latent"] for out in outs]
        else:
            tokens = [self.model.encoder(view) for view in views]
        if self.contrastive is not None:
            losses["contrastive"] = self.contrastive(*tokens)
        loss = self.total_loss(losses)
        self.log("train/loss", loss, prog_bar=True, batch_size=x.shape[0])
        if len(losses) > 1:
            self.log_dict({f"train/loss_{name}": value for name, value in losses.items()}, batch_size=x.shape[0])
        return loss

    def _eval_step(self, batch: dict, batch_idx: int, stage: str) -> None:
        x = batch["x"]  # x: [B, R, T], whole runs
        losses = {}
        if self.masked:
            losses["masked"] = self._score_reconstruction(self.eval_windows(x), batch_idx, stage)
        halves = run_halves(x)  # two disjoint halves of each held-out run
        if halves[0].shape[-1] >= self.model.encoder.patch_len:
            tokens = tuple(self.model.encoder(half) for half in halves)
            (self.val_reid if stage == "val" else self.test_reid).update(halves, tokens)
            if self.contrastive is not None and x.shape[0] > 1:  # one subject has no negatives
                losses["contrastive"] = self.contrastive(*tokens)
        if losses:
            self.log(f"{stage}/loss", self.total_loss(losses), prog_bar=True, batch_size=x.shape[0], sync_dist=True)

    def eval_windows(self, x: torch.Tensor) -> torch.Tensor:
        """Held-out runs ``[B, R, T]`` as the training windows ``[B * W, R, crop_len]`` (half a
        window apart, the last aligned to the end), or as they are without ``crop_len``."""
        if self.hparams.crop_len is None:
            return x
        return sliding_windows(x, self.hparams.crop_len).flatten(0, 1)

    def _score_reconstruction(self, x: torch.Tensor, batch_idx: int, stage: str) -> torch.Tensor:
        """Masked MSE of LMAE on seeded masks; LMAE and the simple fillers update the metrics."""
        generator = torch.Generator().manual_seed(batch_idx)
        shape = (x.shape[0], x.shape[1], x.shape[2] // self.model.encoder.patch_len)
        mask = self.model.make_mask(*shape, device=x.device, generator=generator)
        out = self.model(x, mask)
        fills = self.simple_fills(out["target"], mask)
        if not self.hparams.norm_pix_loss:
            fills["lmae"] = out["pred"]
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        for name, pred in fills.items():
            metrics.update(name, pred, out["target"], mask)
        if batch_idx == 0 and not self.trainer.sanity_checking:
            log_reconstruction(self, stage, out["target"], mask, fills, self.hparams.figure_rois)
        return out["loss"]

    def simple_fills(self, target: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each simple filler's patches ``[B, R, P, L]`` on ``mask`` (ridge once it is fit)."""
        fills = {"zero": zero_fill(target, mask), "interp": interpolate_fill(target, mask)}
        if self.filler.fitted:
            fills["spatial_ridge"] = self.filler(target, mask)
        return fills

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """The pretext's loss and the diagnostics on held-out whole runs."""
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        """The same diagnostics on the test fold."""
        self._eval_step(batch, batch_idx, "test")

    def _log_diagnostics(self, stage: str) -> None:
        metrics, reid = (self.val_metrics, self.val_reid) if stage == "val" else (self.test_metrics, self.test_reid)
        values, reid_values = metrics.compute(), reid.compute()
        metrics.reset()
        reid.reset()
        for name, value in values.items():
            key = name if name == "lmae_vs_best_simple" else f"mse/{name}"
            self.log(f"{stage}/{key}", value, sync_dist=False)
        for name, value in reid_values.items():
            self.log(f"{stage}/reid/{name.removeprefix('reid_')}", value, sync_dist=False)
        if not self.trainer.sanity_checking:
            self.diagnostics[stage] = {**values, **reid_values}

    def on_validation_epoch_end(self) -> None:
        """Log the diagnostics of the epoch."""
        self._log_diagnostics("val")

    def on_test_epoch_end(self) -> None:
        """Log the diagnostics of the test fold."""
        self._log_diagnostics("test")

    def on_fit_end(self) -> None:
        """Print the last validation diagnostics as small tables."""
        values = self.diagnostics.get("val", {})
        if not self.trainer.is_global_zero:
            return
        if self.masked and values:
            log.info("LMAE reconstruction of held-out runs (masked-patch MSE):\n%s", format_diagnostics(values))
        if "reid_chance" in values:
            log.info("Re-identification of held-out subjects between the halves of their runs (top-1):\n%s",
                     format_reidentification(values))


def format_diagnostics(values: dict[str, float]) -> str:
    """Aligned ``name  MSE`` lines, LMAE first, then the simple fillers and the ratio."""
    order = ["lmae", *SIMPLE_FILLERS, "lmae_vs_best_simple"]
    return "\n".join(f"  {name:<20} {values[name]:.3f}" for name in order if name in values)

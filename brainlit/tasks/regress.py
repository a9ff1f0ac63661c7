"""RegressionTask: the network of brainlit, pretrained LMAE encoder -> RWMOE -> Mamba -> targets."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn
from torchmetrics import MeanAbsoluteError, Metric, PearsonCorrCoef
from torchmetrics.aggregation import CatMetric

from brainlit.models.predictor import BrainRegressor
from brainlit.tasks.base import BrainTask, decay_groups, sliding_windows
from brainlit.tasks.checkpoints import load_encoder
from brainlit.tasks.figures import log_expert_maps, log_prediction_scatter
from brainlit.tasks.specs import (
    EncoderSpec,
    MoESpec,
    SSMSpec,
    as_spec,
    encoder_args,
    resolve_patch_len,
    spec_dict,
)

log = logging.getLogger(__name__)

LOSSES = {"l1": F.l1_loss, "smooth_l1": F.smooth_l1_loss, "mse": F.mse_loss}


class StageMetrics(nn.Module):
    """MAE and Pearson r per target in original units, plus the pooled predictions for figures.

    All are torchmetrics, so they are synced across DDP ranks when computed.
    """

    def __init__(self, target_names: list[str]) -> None:
        super().__init__()
        self.mae = nn.ModuleDict({t: MeanAbsoluteError() for t in target_names})
        self.pearson = nn.ModuleDict({t: PearsonCorrCoef() for t in target_names})
        self.pred, self.true, self.experts = CatMetric(), CatMetric(), CatMetric()

    def update(self, pred: torch.Tensor, true: torch.Tensor, experts: torch.Tensor) -> None:
        """Add a batch: pred/true ``[B, n_targets]`` in original units, experts ``[B, R, E]``."""
        for i, name in enumerate(self.mae):
            self.mae[name].update(pred[:, i], true[:, i])
            self.pearson[name].update(pred[:, i], true[:, i])
        self.pred.update(pred)
        self.true.update(true)
        self.experts.update(experts)
        self._expert_shape = tuple(experts.shape[1:])

    def pooled(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """All predictions ``[N, n_targets]``, truths and expert weights ``[N, R, E]`` (synced).

        CatMetric may flatten or squeeze what it concatenates, so shapes are restored here.
        """
        n_targets = len(self.mae)
        experts = self.experts.compute()
        n = experts.numel() // max(1, self._expert_shape[0] * self._expert_shape[1])
        return (self.pred.compute().reshape(-1, n_targets), self.true.compute().reshape(-1, n_targets),
                experts.reshape(n, *self._expert_shape))

    def reset(self) -> None:
        """Clear all accumulated state at the end of an epoch."""
        for metric in self.modules():
            if isinstance(metric, Metric):
                metric.reset()


class RegressionTask(BrainTask):
    """Trains encoder + RWMOE + SSM on z-scored targets; reports MAE and r in original units.

    Training reads random windows of ``crop_len``; evaluation (val/test/predict) slides windows
    of ``crop_len`` over the whole run (half a window apart, the last one aligned to the end)
    and averages their predictions. The network knows nothing of brainlit's read-out: the two
    are combined by :class:`brainlit.stack.NetworkShare`.

    Args:
        n_rois: Number of ROIs (linked from the datamodule).
        target_names: Phenotypes regressed, one output each (linked from ``data.targets``).
        crop_len: Window length in time points (linked from ``data.crop_len``).
        encoder: Encoder architecture; replaced by the checkpoint's when ``pretrained`` is set,
            except ``checkpoint`` (a memory setting), which is always this one's.
        moe: Random-walk mixture of experts.
        ssm: Mamba predictor and its head.
        pretrained: LMAE checkpoint (``.ckpt``) or exported encoder (``.safetensors``) whose
            encoder is loaded, or null. Checkpoints are read as plain data only.
        encoder_lr_scale: Encoder learning rate as a fraction of ``lr``; 0 freezes it.
        loss: Regression loss on z-scored targets.
        aux_weight: Weight of the MoE load-balancing loss.
        eval_windows: Windows per forward pass in evaluation (bounds its memory; predictions do
            not depend on it); null: all windows of a batch at once.
        lr: Peak learning rate.
        weight_decay: AdamW weight decay on weight matrices.
        warmup_fraction: Fraction of all steps spent in linear warm-up.
        t_r: Cohort TR in seconds (linked from the datamodule); used by ``encoder.patch_seconds``.
    """

    def __init__(
        self,
        n_rois: int,
        target_names: list[str],
        crop_len: int = 128,
        encoder: EncoderSpec = EncoderSpec(),
        moe: MoESpec = MoESpec(),
        ssm: SSMSpec = SSMSpec(),
        pretrained: str | None = None,
        encoder_lr_scale: float = 0.1,
        loss: Literal["l1", "smooth_l1", "mse"] = "smooth_l1",
        aux_weight: float = 0.01,
        eval_windows: int | None = 32,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.05,
        t_r: float | None = None,
    ) -> None:
        super().__init__()
        if not target_names:
            raise ValueError("RegressionTask needs at least one target: set data.targets, e.g. [age].")
        if encoder_lr_scale < 0:
            raise ValueError(f"encoder_lr_scale must be >= 0 (0 freezes the encoder), got {encoder_lr_scale}.")
        encoder, weights = resolve_patch_len(as_spec(encoder, EncoderSpec), t_r), None
        if pretrained:
            loaded, weights = load_encoder(pretrained)
            encoder = replace(loaded, checkpoint=encoder.checkpoint)
            log.info("Encoder architecture and weights from %s: %s", pretrained, encoder)
        moe, ssm = as_spec(moe, MoESpec), as_spec(ssm, SSMSpec)
        self.save_hyperparameters(ignore=["encoder", "moe", "ssm"])
        self.hparams.update(encoder=spec_dict(encoder), moe=spec_dict(moe), ssm=spec_dict(ssm))
        self.lr, self.weight_decay, self.warmup_fraction = lr, weight_decay, warmup_fraction
        self.model = BrainRegressor.from_specs(n_rois, len(target_names), encoder_args(encoder), moe, ssm)
        if weights is not None:
            self.model.load_pretrained_encoder(weights)
        self.model.encoder.requires_grad_(encoder_lr_scale > 0)
        # the mask token serves pretraining only; DDP stops on a trainable parameter left unused
        self.model.encoder.mask_embed.requires_grad_(False)
        self.register_buffer("target_mean", torch.zeros(len(target_names)))
        self.register_buffer("target_std", torch.ones(len(target_names)))
        self.val_metrics, self.test_metrics = StageMetrics(target_names), StageMetrics(target_names)
        self.best_val_mae: dict[str, float] = {}  # per target, over this fit's epochs

    def setup(self, stage: str) -> None:
        """Take the training fold's target statistics from the datamodule."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is not None and getattr(datamodule, "target_mean", None) is not None:
            self.target_mean.copy_(torch.as_tensor(datamodule.target_mean))
            self.target_std.copy_(torch.as_tensor(datamodule.target_std))

    def param_groups(self) -> list[dict]:
        """Head/MoE/SSM at ``lr``; the encoder at ``lr * encoder_lr_scale``."""
        encoder_lr = self.lr * self.hparams.encoder_lr_scale
        groups = decay_groups(self.model.encoder_parameters(), encoder_lr, self.weight_decay)
        return groups + decay_groups(self.model.head_parameters(), self.lr, self.weight_decay)

    def to_original_units(self, y_z: torch.Tensor) -> torch.Tensor:
        """Undo the training-fold z-scoring of targets."""
        return y_z * self.target_std + self.target_mean

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Loss on z-scored targets of a random crop, plus the MoE balance loss."""
        pred, aux = self.model(batch["x"])  # pred: [B, n_targets]
        task_loss = LOSSES[self.hparams.loss](pred.float(), batch["y"])
        loss = task_loss + self.hparams.aux_weight * aux["balance_loss"]
        size = batch["x"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/task_loss", task_loss, batch_size=size)
        self.log("train/balance_loss", aux["balance_loss"], batch_size=size)
        return loss

    def predict_runs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Average the outputs over sliding windows covering whole runs ``x: [B, R, T]``.

        Returns:
            Window means: z-scored ``pred`` ``[B, n_targets]`` and ``experts`` (mean gate
            weights) ``[B, R, E]``.
        """
        windows = sliding_windows(x, self.hparams.crop_len)  # [B, W, R, L]
        b, w = windows.shape[:2]
        windows = windows.flatten(0, 1)
        step = self.hparams.eval_windows or len(windows)
        parts = [self.model(windows[i : i + step]) for i in range(0, len(windows), step)]
        pred = torch.cat([p for p, _ in parts]).float().view(b, w, -1).mean(1)
        experts = torch.cat([aux["roi_expert_weights"] for _, aux in parts]).float()
        return {"pred": pred, "experts": experts.view(b, w, *experts.shape[1:]).mean(1)}

    def _eval_step(self, batch: dict, stage: str) -> None:
        outputs = self.predict_runs(batch["x"])
        loss = LOSSES[self.hparams.loss](outputs["pred"], batch["y"])
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=len(batch["x"]), sync_dist=True)
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        metrics.update(self.to_original_units(outputs["pred"]), self.to_original_units(batch["y"]), outputs["experts"])

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Window-averaged loss and metrics on held-out subjects."""
        self._eval_step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        """Window-averaged loss and metrics on the test fold."""
        self._eval_step(batch, "test")

    def _log_epoch(self, stage: str) -> None:
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        for name in self.hparams.target_names:
            mae = metrics.mae[name].compute()
            self.log(f"{stage}/{name}/mae", mae, sync_dist=False)
            self.log(f"{stage}/{name}/pearson", metrics.pearson[name].compute(), sync_dist=False)
            if stage == "val" and not self.trainer.sanity_checking:
                self.best_val_mae[name] = min(float(mae), self.best_val_mae.get(name, float("inf")))
        if not self.trainer.sanity_checking:
            pred, true, experts = metrics.pooled()
            log_prediction_scatter(self, stage, pred, true)
            if stage == "test":
                log_expert_maps(self, experts.mean(0))
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        """Log per-target MAE / r and the predicted-vs-true scatter."""
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        """Log per-target MAE / r, the scatter and the expert brain maps."""
        self._log_epoch("test")

    def on_fit_end(self) -> None:
        """Log the best validation MAE per target as the run's ``hp_metric`` (TensorBoard's
        HPARAMS card): ``hp_metric`` is the first target's, ``hp_metric/<target>`` each one's."""
        if not self.best_val_mae:
            return
        names = list(self.hparams.target_names)
        metrics = {"hp_metric": self.best_val_mae[names[0]]}
        metrics.update({f"hp_metric/{name}": self.best_val_mae[name] for name in names})
        for logger in self.loggers:
            if isinstance(logger, TensorBoardLogger):
                logger.log_hyperparams(self.hparams, metrics)
            else:
                logger.log_metrics(metrics, step=self.global_step)

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """Subject ids with true and predicted targets in original units."""
        pred = self.to_original_units(self.predict_runs(batch["x"])["pred"])
        true = self.to_original_units(batch["y"]).cpu() if batch["y"].numel() else None
        return {"subject_id": list(batch["subject_id"]), "pred": pred.cpu(), "true": true}

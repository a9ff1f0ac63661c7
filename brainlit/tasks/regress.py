"""RegressionTask: pretrained LMAE encoder -> RWMOE -> Mamba predictor regressing phenotypes."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from nilearn.connectome import ConnectivityMeasure
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchmetrics import MeanAbsoluteError, Metric, PearsonCorrCoef
from torchmetrics.aggregation import CatMetric

from brainlit.models.predictor import BrainRegressor
from brainlit.models.readout import EDGE_KINDS, Connectivity, FCReadout
from brainlit.models.rwmoe import correlation
from brainlit.tasks.base import BrainTask, decay_groups
from brainlit.tasks.checkpoints import load_encoder
from brainlit.tasks.closed_form import Combine, fit_anchored_ridge, network_share_weights
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
    """MAE and Pearson r per target in original units, plus the pooled predictions for figures
    and (with a read-out) the read-out's share of them.

    All are torchmetrics, so they are synced across DDP ranks when computed.
    """

    def __init__(self, target_names: list[str]) -> None:
        super().__init__()
        self.mae = nn.ModuleDict({t: MeanAbsoluteError() for t in target_names})
        self.pearson = nn.ModuleDict({t: PearsonCorrCoef() for t in target_names})
        self.pred, self.true, self.experts, self.readout = CatMetric(), CatMetric(), CatMetric(), CatMetric()

    def update(self, pred: torch.Tensor, true: torch.Tensor, experts: torch.Tensor,
               readout: torch.Tensor | None = None) -> None:
        """Add a batch: pred/true/readout ``[B, n_targets]`` in original units, experts ``[B, R, E]``."""
        for i, name in enumerate(self.mae):
            self.mae[name].update(pred[:, i], true[:, i])
            self.pearson[name].update(pred[:, i], true[:, i])
        self.pred.update(pred)
        self.true.update(true)
        self.experts.update(experts)
        if readout is not None:
            self.readout.update(readout)
        self._expert_shape = tuple(experts.shape[1:])

    def pooled_readout(self) -> torch.Tensor:
        """The read-out's predictions ``[N, n_targets]`` of the pooled subjects (synced)."""
        return self.readout.compute().reshape(-1, len(self.mae))

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
    """Fine-tunes encoder + RWMOE + SSM to regress z-scored targets; reports MAE and r in original units.

    Evaluation (val/test/predict) slides windows of ``crop_len`` over the whole run with
    ``eval_stride`` and averages the per-window predictions for each subject.

    Args:
        n_rois: Number of ROIs (linked from the datamodule).
        target_names: Phenotypes regressed, one output each (linked from ``data.targets``).
        crop_len: Window length in time points (linked from ``data.crop_len``).
        encoder: Encoder architecture; replaced by the checkpoint's when ``pretrained`` is set,
            except ``checkpoint`` (a memory setting, not architecture), which is always this one's.
        moe: Random-walk mixture of experts.
        ssm: Mamba predictor.
        head_dropout: Dropout before the linear head.
        fc_readout: A linear read-out of the window's Fisher-z FC added to the SSM head's
            output, the features FC baselines get ready-made: ``none``; ``learned`` (trained
            with the rest); or ``ridge``: fit in closed form on the fold's training and
            validation subjects' whole runs at the start of ``fit`` (every non-test subject,
            as the classical baselines; ridge, penalty per target by leave-one-out CV) and then
            kept fixed, so RWMOE + SSM learn what the linear FC model leaves unexplained.
            While fitting, the subjects the ridge saw get their leave-one-out ridge
            predictions instead of its in-sample ones (cross-fitted stacking, see
            :mod:`brainlit.tasks.closed_form`); test and predict apply the read-out to each
            whole run, the input it was fit on (the network still reads windows), so the
            read-out's share of a prediction is exactly the closed-form ridge model's.
        fc_dropout: Dropout on the FC read-out's features (``learned`` only).
        readout_lags: The read-out also reads each ROI's autocorrelation at lags 1..N of the
            window (0: FC only). FC is zero-lag; each region's own temporal structure is what
            it discards, and ``benchmarks/beyond_fc.py`` measures how much that adds.
        readout_connectivity: The read-out's edges: ``correlation`` (Fisher-z), ``tangent``:
            each window's Ledoit-Wolf covariance projected into the tangent space at the
            geometric mean of the fold's training and validation runs (nilearn
            ``ConnectivityMeasure(kind="tangent")``, fit at the start of ``fit``), the features
            of the tangent ridge baseline (Dadi et al. 2019 found them the best for prediction),
            or ``both``: a ``ridge`` read-out on ``both`` fits a ridge on each edge set (each
            with the autocorrelations) and combines them as ``readout_combine`` says.
        readout_combine: How a ``ridge`` read-out on several edge sets combines their ridges:
            ``mean`` averages them (on two stationary development cohorts that beat either
            alone for age); ``stack`` weighs them per target by non-negative least squares on
            their leave-one-out predictions (Breiman's stacked regression,
            :func:`~brainlit.tasks.closed_form.stacking_weights`), so the set that predicts
            better on the cohort at hand counts more, and weights summing to more than one
            undo part of ridge's shrinkage. In closed form on five development cohorts it
            cut the age MAE by 0.14 to 1.23 years against ``mean`` (docs/regressor.md).
        readout_anchor: With a ``ridge`` read-out, the target (e.g. ``age``) whose read-out the
            others are chained to: each other target is regressed on its cross-fitted read-out
            prediction, plus a ridge on what that leaves (a regressor chain, see
            :func:`brainlit.tasks.closed_form.fit_anchored_ridge`; still one linear layer). On
            the two development cohorts, in closed form, it cut the fluid intelligence MAE
            from 4.36 / 4.70 to 4.24 / 4.51 points; it predicts the part the anchor explains
            better and can lose the rest (the age-partialled r fell on three of four simulated
            cohorts). null: every target on its own, for when that rest is the point.
        zero_head: Start the SSM path's linear head at zero, so the model starts as its FC
            read-out (with ``fc_readout: ridge``, the closed-form model) and the network's
            share grows only as far as training finds something to add (as in ReZero).
        direct_weight: Weight of an auxiliary loss on a second head that predicts the targets
            from the network's pooled features alone, without the read-out (0: no such head).
            In a stacked model the main head learns only the read-out's residual, mostly noise
            where the read-out is good; the direct loss makes the encoder, RWMOE and SSM learn
            the targets' full signal (deep supervision, as in GoogLeNet's auxiliary heads), so
            that features the read-out cannot compute, such as how FC changes over time, exist
            for the residual head to use. The auxiliary head is used for training only.
        pretrained: LMAEPretrainer checkpoint (``.ckpt``) or exported encoder (``.safetensors``)
            whose encoder is loaded, or null. Checkpoints are read as plain data only.
        freeze_encoder: Keep the encoder weights fixed.
        encoder_lr_scale: Encoder learning rate as a fraction of ``lr`` (layer-wise LR).
        loss: Regression loss on z-scored targets.
        aux_weight: Weight of the MoE load-balancing loss.
        eval_stride: Step between evaluation windows; null means ``crop_len // 2``.
        eval_windows: Windows per forward pass in evaluation. A batch of B whole runs holds
            ``B * W`` windows; passing them in chunks bounds evaluation memory near a training
            batch's (at 400 ROIs, 64 windows at once add 1.6 GiB). Predictions do not depend on
            it. null: all windows of a batch at once.
        network_share: How much of the network's share of a prediction (the prediction minus
            the ``ridge`` read-out's) test, predict and ``apply`` keep, per target. ``all``:
            all of it. ``validation``: a weight in [0, 1] per target, refit at the end of every
            validation epoch on the validation subjects (least squares of the read-out's
            residual on the network's share, :func:`~brainlit.tasks.closed_form.network_share_weights`;
            their read-out predictions are cross-fitted, so the residual is an out-of-sample
            one) and saved with the checkpoint that epoch may become, so that a target the
            network does not help on held-out subjects falls back to the read-out. ``shrunk``:
            the validation weight shrunk by its standard error (positive-part James-Stein):
            ~20 validation subjects, which also chose the checkpoint, make a least-squares
            weight noisy and optimistic, so a share not clearly above its noise gets 0. Validation
            metrics, and so the checkpoint choice, use the whole share; the weights are
            logged as ``val/<target>/share``.
        readout_only: Targets predicted by the ``ridge`` read-out alone: their network share
            is dropped (weight 0) in test, predict and ``apply``, while the network still learns
            them through its losses. For a target where no development cohort showed the
            network adding anything (fluid intelligence: -0.01 to +0.08 points on the four of
            docs/dynamics.md), the validation weight only adds noise from ~20 subjects.
        ema_decay: Keep an exponential moving average of the weights (decay per step) and
            validate, test and predict with it: on a small cohort the weights a single step
            leaves are noisy, and the average of the last ``~1 / (1 - decay)`` steps generalises
            better (Polyak averaging). null trains and evaluates the raw weights.
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
        head_dropout: float = 0.1,
        fc_readout: Literal["none", "learned", "ridge"] = "none",
        fc_dropout: float = 0.0,
        readout_lags: int = 0,
        readout_connectivity: Connectivity = "correlation",
        readout_anchor: str | None = None,
        readout_combine: Combine = "mean",
        zero_head: bool = False,
        direct_weight: float = 0.0,
        pretrained: str | None = None,
        freeze_encoder: bool = False,
        encoder_lr_scale: float = 0.1,
        loss: Literal["l1", "smooth_l1", "mse"] = "smooth_l1",
        aux_weight: float = 0.01,
        eval_stride: int | None = None,
        eval_windows: int | None = 32,
        network_share: Literal["all", "validation", "shrunk"] = "all",
        readout_only: list[str] | None = None,
        ema_decay: float | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.05,
        t_r: float | None = None,
    ) -> None:
        super().__init__()
        if not target_names:
            raise ValueError("RegressionTask needs at least one target: set data.targets, e.g. [age].")
        if fc_readout == "none" and (readout_lags or readout_connectivity != "correlation"):
            raise ValueError("readout_lags and readout_connectivity need a read-out to feed: "
                             "set fc_readout to learned or ridge.")
        if readout_anchor is not None and (fc_readout != "ridge" or readout_anchor not in target_names):
            raise ValueError(f"readout_anchor {readout_anchor!r} needs fc_readout: ridge and one of the "
                             f"targets {target_names}.")
        if readout_combine not in ("mean", "stack") or (readout_combine != "mean" and fc_readout != "ridge"):
            raise ValueError(f"readout_combine must be mean or stack (stack with fc_readout: ridge), "
                             f"got {readout_combine!r}.")
        if network_share not in ("all", "validation", "shrunk"):
            raise ValueError(f"network_share must be all, validation or shrunk, got {network_share!r}.")
        if network_share != "all" and fc_readout != "ridge":
            raise ValueError(f"network_share: {network_share} weighs the network against a closed-form "
                             "read-out: set fc_readout: ridge, or network_share: all.")
        readout_only = list(readout_only or [])
        if readout_only and (fc_readout != "ridge" or not set(readout_only) <= set(target_names)):
            raise ValueError(f"readout_only {readout_only} needs fc_readout: ridge and names among the "
                             f"targets {target_names}.")
        encoder, weights = resolve_patch_len(as_spec(encoder, EncoderSpec), t_r), None
        if pretrained:
            loaded, weights = load_encoder(pretrained)
            encoder = replace(loaded, checkpoint=encoder.checkpoint)
            log.info("Encoder architecture and weights from %s: %s", pretrained, encoder)
        moe, ssm = as_spec(moe, MoESpec), as_spec(ssm, SSMSpec)
        self.save_hyperparameters(ignore=["encoder", "moe", "ssm"])
        self.hparams.update(encoder=spec_dict(encoder), moe=spec_dict(moe), ssm=spec_dict(ssm))
        self.lr, self.weight_decay, self.warmup_fraction = lr, weight_decay, warmup_fraction
        self.model = BrainRegressor.from_specs(
            n_rois, len(target_names), encoder_args(encoder), moe, ssm, head_dropout,
            fc_readout != "none", fc_dropout, readout_lags, readout_connectivity, direct_weight > 0,
        )  # fmt: skip
        if fc_readout == "ridge":
            self.model.fc_readout.requires_grad_(False)
        if zero_head:
            nn.init.zeros_(self.model.head.weight)
            nn.init.zeros_(self.model.head.bias)
        if weights is not None:
            self.model.load_pretrained_encoder(weights)
        self.model.encoder.requires_grad_(not freeze_encoder)
        # the mask token serves pretraining only; DDP stops on a trainable parameter left unused
        self.model.encoder.mask_embed.requires_grad_(False)
        self.stacked_offsets: dict[str, torch.Tensor] = {}  # cross-fitted read-out, set by on_fit_start
        self.ema = None
        if ema_decay:
            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True)
            self.ema.requires_grad_(False)
        self.register_buffer("target_mean", torch.zeros(len(target_names)))
        self.register_buffer("target_std", torch.ones(len(target_names)))
        # the weight on the network's share per target: 0 for readout_only targets, the others refit on
        # validation subjects under network_share: validation or shrunk (None: the whole share everywhere)
        self.network_kept = torch.tensor([t not in readout_only for t in target_names], dtype=torch.float32)
        weighed = network_share != "all" or readout_only
        self.register_buffer("share", self.network_kept.clone() if weighed else None)
        self.val_metrics, self.test_metrics = StageMetrics(target_names), StageMetrics(target_names)
        self.best_val_mae: dict[str, float] = {}  # per target, over this fit's epochs

    def on_fit_start(self) -> None:
        """Fit the read-out's tangent reference and its ``ridge`` weights before the first step.

        Both see the fold's training and validation subjects (every non-test subject, as the
        classical baselines), never the test fold.
        """
        tangent = "tangent" in EDGE_KINDS[self.hparams.readout_connectivity]
        if self.hparams.fc_readout != "ridge" and not tangent:
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        if not hasattr(datamodule, "split_runs"):
            raise RuntimeError("the FC read-out's closed-form fit needs a datamodule with split_runs "
                               "(FMRIDataModule).")
        runs, targets = datamodule.split_runs("train")
        val_runs, val_targets = datamodule.split_runs("val")
        runs, targets = runs + val_runs, np.concatenate([targets, val_targets])
        if tangent:
            reference = ConnectivityMeasure(kind="tangent").fit([r.T for r in runs])
            self._each_readout(lambda readout: readout.set_reference(torch.from_numpy(reference.whitening_)))
            log.info("Tangent reference of the FC read-out: geometric mean of %d training runs", len(runs))
        if self.hparams.fc_readout == "ridge":
            subjects = datamodule.fold_subject_ids("train") + datamodule.fold_subject_ids("val")
            self._fit_ridge_readout(runs, torch.from_numpy(targets), subjects)

    def _fit_ridge_readout(self, runs: list[np.ndarray], targets: torch.Tensor, subjects: list[str]) -> None:
        readout = self.model.fc_readout
        with torch.no_grad():
            series = [torch.from_numpy(r)[None].to(self.device) for r in runs]
            features = torch.cat([readout.features(x, correlation(x)) for x in series]).cpu()
        anchor = self.hparams.readout_anchor
        anchor = None if anchor is None else list(self.hparams.target_names).index(anchor)
        fit = fit_anchored_ridge(features, targets, readout.blocks(), anchor, self.hparams.readout_combine)
        self.stacked_offsets = dict(zip(subjects, fit.loo, strict=True))
        self._each_readout(lambda readout: readout.set_weights(fit.weight.to(self.device), fit.bias.to(self.device)))
        sets = "; ".join(f"{kind}: penalty " + ", ".join(f"{a:g}" for a in chosen) + ", weight "
                         + ", ".join(f"{w:.2f}" for w in block_weights.tolist())
                         for kind, chosen, block_weights in zip(readout.kinds, fit.alphas, fit.block_weights, strict=True))
        chained = f"; the other targets chained to {self.hparams.readout_anchor}" if anchor is not None else ""
        log.info("FC read-out fit by ridge on %d training runs (%s combined by %s; per target, %s)%s",
                 len(runs), len(readout.kinds), self.hparams.readout_combine, sets, chained)

    def _each_readout(self, install: Callable[[FCReadout], None]) -> None:
        """Apply ``install`` to the read-out of the trained weights and of their moving average."""
        install(self.model.fc_readout)
        if self.ema is not None:
            install(self.ema.module.fc_readout)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Store the data card (atlas, TR, cleaning, training cohort) beside the weights, so
        ``python -m brainlit export`` can build a model folder from the checkpoint alone."""
        card = getattr(getattr(self.trainer, "datamodule", None), "data_card", None)
        if card is not None:
            checkpoint["brainlit_data"] = card()

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
        pred, aux = self.model(batch["x"], self.offsets(batch))  # pred: [B, n_targets]
        task_loss = LOSSES[self.hparams.loss](pred.float(), batch["y"])
        loss = task_loss + self.hparams.aux_weight * aux["balance_loss"]
        if "direct" in aux:
            direct_loss = LOSSES[self.hparams.loss](aux["direct"].float(), batch["y"])
            loss = loss + self.hparams.direct_weight * direct_loss
            self.log("train/direct_loss", direct_loss, batch_size=batch["x"].shape[0])
        size = batch["x"].shape[0]
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        self.log("train/task_loss", task_loss, batch_size=size)
        self.log("train/balance_loss", aux["balance_loss"], batch_size=size)
        return loss

    def on_train_batch_end(self, outputs: torch.Tensor, batch: dict, batch_idx: int) -> None:
        """Move the weight average one step."""
        if self.ema is not None:
            self.ema.update_parameters(self.model)

    @property
    def eval_model(self) -> BrainRegressor:
        """The weights evaluation uses: the moving average when ``ema_decay`` is set."""
        return self.model if self.ema is None else self.ema.module

    def offsets(self, batch: dict) -> torch.Tensor | None:
        """Cross-fitted FC read-out predictions ``[B, n_targets]`` while fitting a stacked model.

        None (the read-out itself) unless every subject of the batch was in the ridge fit.
        """
        ids = batch.get("subject_id", [])
        if not self.stacked_offsets or not ids or any(s not in self.stacked_offsets for s in ids):
            return None
        return torch.stack([self.stacked_offsets[s] for s in ids]).to(batch["x"].device)

    def run_readout(self, x: torch.Tensor) -> torch.Tensor | None:
        """The ``ridge`` read-out of whole runs ``x: [B, R, T]`` -> ``[B, n_targets]``; None otherwise."""
        if self.hparams.fc_readout != "ridge":
            return None
        return self.eval_model.fc_readout(x, correlation(x))

    def predict_windows(self, x: torch.Tensor, offsets: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Average predictions over sliding windows covering the run.

        Args:
            x: Full runs ``[B, R, T]``.
            offsets: Cross-fitted read-out predictions ``[B, n_targets]`` (see :meth:`offsets`).

        Returns:
            Window means of the model's outputs: z-scored ``pred`` ``[B, n_targets]``,
            ``experts`` (mean gate weights) ``[B, R, E]`` and, with an FC read-out,
            ``readout`` ``[B, n_targets]`` (its share of ``pred``).
        """
        windows = sliding_windows(x, self.hparams.crop_len, self.hparams.eval_stride)  # [B, W, R, L]
        b, w = windows.shape[:2]
        windows = windows.flatten(0, 1)
        if offsets is not None:
            offsets = offsets.repeat_interleave(w, dim=0)
        step = self.hparams.eval_windows or len(windows)
        parts = [
            self._window_outputs(windows[i : i + step], None if offsets is None else offsets[i : i + step])
            for i in range(0, len(windows), step)
        ]
        outputs = {k: torch.cat([part[k] for part in parts]) for k in parts[0]}
        return {k: v.float().view(b, w, *v.shape[1:]).mean(1) for k, v in outputs.items()}

    def _window_outputs(self, windows: torch.Tensor, offsets: torch.Tensor | None) -> dict[str, torch.Tensor]:
        """The evaluated model's ``pred``, ``experts`` and (with a read-out) ``readout`` per window."""
        pred, aux = self.eval_model(windows, offsets)
        return {"pred": pred, "experts": aux["roi_expert_weights"], **{k: aux[k] for k in ("readout",) if k in aux}}

    def blend(self, outputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """The z-scored prediction from :meth:`predict_windows`' outputs: the read-out plus the
        network's share, weighted per target by ``share`` (``network_share``, ``readout_only``)."""
        if self.share is None:
            return outputs["pred"]
        return outputs["readout"] + self.share * (outputs["pred"] - outputs["readout"])

    def predict_runs(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Whole runs ``x: [B, R, T]`` -> :meth:`predict_windows`' outputs, ``pred`` blended
        (:meth:`blend`): what test, predict and ``apply`` report, z-scored."""
        outputs = self.predict_windows(x, self.run_readout(x))
        return {**outputs, "pred": self.blend(outputs)}

    def _eval_step(self, batch: dict, stage: str) -> None:
        if stage == "val":  # the whole share, with cross-fitted read-out predictions where there are
            offsets = self.offsets(batch)
            outputs = self.predict_windows(batch["x"], self.run_readout(batch["x"]) if offsets is None else offsets)
        else:
            outputs = self.predict_runs(batch["x"])
        pred_z = outputs["pred"]
        loss = LOSSES[self.hparams.loss](pred_z, batch["y"])
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=len(pred_z), sync_dist=True)
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        readout = outputs.get("readout") if stage == "val" else None  # what the share weights are fit on
        metrics.update(self.to_original_units(pred_z), self.to_original_units(batch["y"]), outputs["experts"],
                       None if readout is None else self.to_original_units(readout))

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
            if stage == "val" and not self.trainer.sanity_checking:
                self.best_val_mae[name] = min(float(mae), self.best_val_mae.get(name, float("inf")))
            self.log(f"{stage}/{name}/pearson", metrics.pearson[name].compute(), sync_dist=False)
        pred, true, experts = metrics.pooled()
        if stage == "val" and self.hparams.network_share != "all" and not self.trainer.sanity_checking:
            shrink = self.hparams.network_share == "shrunk"
            weights = network_share_weights(pred, true, metrics.pooled_readout(), shrink)
            self.share.copy_(weights * self.network_kept.to(weights.device))
            for name, weight in zip(self.hparams.target_names, self.share.tolist(), strict=True):
                self.log(f"val/{name}/share", weight, sync_dist=False)
        if not self.trainer.sanity_checking:
            log_prediction_scatter(self, stage, pred, true)
            if stage == "test":
                log_expert_maps(self, experts.mean(0))
        metrics.reset()

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

    def on_validation_epoch_end(self) -> None:
        """Log per-target MAE / r and the predicted-vs-true scatter."""
        self._log_epoch("val")

    def on_test_epoch_end(self) -> None:
        """Log per-target MAE / r, the scatter and the expert brain maps."""
        self._log_epoch("test")

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        """Subject ids with true and predicted targets in original units.

        With ``fc_readout: ridge`` also ``readout``: what the closed-form read-out alone
        predicts, so that every report can show what RWMOE + SSM add to it.
        """
        outputs = self.predict_runs(batch["x"])
        out = {
            "subject_id": list(batch["subject_id"]),
            "pred": self.to_original_units(outputs["pred"]).cpu(),
            "true": self.to_original_units(batch["y"]).cpu() if batch["y"].numel() else None,
        }
        if self.hparams.fc_readout == "ridge":
            out["readout"] = self.to_original_units(outputs["readout"]).cpu()
        return out


def sliding_windows(x: torch.Tensor, length: int, stride: int | None = None) -> torch.Tensor:
    """Cut ``x: [B, R, T]`` into windows ``[B, W, R, length]`` that cover all of T.

    The last window is aligned to the end of the run so no time point is left out.
    """
    total = x.shape[-1]
    length = min(length, total)
    stride = stride or max(1, length // 2)
    starts = list(range(0, total - length + 1, stride))
    if starts[-1] != total - length:
        starts.append(total - length)
    return torch.stack([x[..., s : s + length] for s in starts], dim=1)

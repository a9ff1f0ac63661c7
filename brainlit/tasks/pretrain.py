"""LMAEPretrainer: self-supervised Local Masked Autoencoder pretraining on ROI time series."""

from __future__ import annotations

from typing import Literal

import torch

from brainlit.models.lmae import LocalMaskedAutoencoder
from brainlit.tasks.base import BrainTask
from brainlit.tasks.specs import EncoderSpec, as_spec, spec_dict


class LMAEPretrainer(BrainTask):
    """Wires :class:`LocalMaskedAutoencoder` to the masked-patch MSE, logging and checkpoints.

    No labels are used. The checkpoint's ``model.encoder.*`` weights and its ``encoder``
    hyperparameters are what :class:`~brainlit.tasks.regress.RegressionTask` loads.

    Args:
        n_rois: Number of ROIs (linked from the datamodule).
        encoder: Encoder architecture.
        mask_ratio: Fraction of tokens hidden per subject.
        mask_strategy: ``local`` hides contiguous blocks (the paper); ``random`` is MAE-style.
        block_len: Patches per masked block along time (2 x 8 TRs, about 32 s).
        block_rois: Neighbouring ROIs (atlas order) a block spans.
        decoder_dim: Width of the light decoder.
        decoder_depth: Decoder transformer layers.
        norm_pix_loss: Normalise each target patch before the MSE (as in MAE).
        lr: Peak learning rate.
        weight_decay: AdamW weight decay on weight matrices.
        warmup_fraction: Fraction of all steps spent in linear warm-up.
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
        decoder_depth: int = 2,
        norm_pix_loss: bool = False,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.05,
    ) -> None:
        super().__init__()
        encoder = as_spec(encoder, EncoderSpec)
        self.save_hyperparameters(ignore=["encoder"])
        self.hparams["encoder"] = spec_dict(encoder)  # a plain dict keeps checkpoints portable
        self.lr, self.weight_decay, self.warmup_fraction = lr, weight_decay, warmup_fraction
        self.model = LocalMaskedAutoencoder(
            n_rois=n_rois,
            **spec_dict(encoder),
            decoder_dim=decoder_dim,
            decoder_depth=decoder_depth,
            mask_ratio=mask_ratio,
            mask_strategy=mask_strategy,
            block_len=block_len,
            block_rois=block_rois,
            norm_pix_loss=norm_pix_loss,
        )

    def _step(self, batch: dict, stage: str) -> torch.Tensor:
        x = batch["x"]  # x: [B, R, T]
        loss = self.model(x)["loss"]
        self.log(f"{stage}/loss", loss, prog_bar=True, batch_size=x.shape[0], sync_dist=stage != "train")
        return loss

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        """Masked-patch MSE on a random crop."""
        return self._step(batch, "train")

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        """Masked-patch MSE on the full run of held-out subjects."""
        self._step(batch, "val")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        """Masked-patch MSE on the test fold."""
        self._step(batch, "test")

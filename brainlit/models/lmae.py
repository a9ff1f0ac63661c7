"""Local Masked Autoencoder (LMAE): local block masking of ROI x patch tokens, masked MSE.

Tokens and the encoder are :class:`~brainlit.models.encoder.PatchEncoder`'s. Hidden tokens
enter the encoder as a learnable mask embedding (with their ROI and time embeddings), a light
decoder maps every encoded token back to its patch, and the loss is the MSE on hidden
patches only.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from brainlit.models.encoder import PatchEncoder, TokenTransformer


def _randint(
    high: int, size: tuple[int, ...], device: torch.device | None, generator: torch.Generator | None
) -> torch.Tensor:
    """Integers in ``[0, high)`` drawn where ``generator`` lives (if given), moved to ``device``."""
    where = generator.device if generator is not None else device
    return torch.randint(high, size, generator=generator, device=where).to(device)


def _rand(
    size: tuple[int, ...], device: torch.device | None, generator: torch.Generator | None
) -> torch.Tensor:
    """Uniform floats drawn where ``generator`` lives (if given), moved to ``device``."""
    where = generator.device if generator is not None else device
    return torch.rand(size, generator=generator, device=where).to(device)


def local_block_order(
    batch_size: int,
    n_rois: int,
    n_patches: int,
    block_len: int,
    block_rois: int,
    device: torch.device | None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Per-sample sort key ``[B, R * P]`` listing the tokens block by block in random block order.

    The ROI x patch grid of each sample is tiled by cells of ``block_rois`` neighbouring ROIs
    (atlas order) x ``block_len`` consecutive patches, with a random offset along ROIs per sample
    and along time per ROI group, so block borders move between samples; cells cut by the
    window edge are shorter. Within a cell tokens are listed ROI-major.
    """
    n_tokens = n_rois * n_patches
    roi_phase = _randint(block_rois, (batch_size, 1), device, generator)
    roi_group = (torch.arange(n_rois, device=device) + roi_phase) // block_rois  # [B, R]
    n_groups = n_rois // block_rois + 2
    time_phase = _randint(block_len, (batch_size, n_groups), device, generator)
    time_phase = time_phase.gather(1, roi_group)  # [B, R], one offset per ROI group
    patch = torch.arange(n_patches, device=device)
    time_block = (patch + time_phase[..., None]) // block_len  # [B, R, P]
    n_time_blocks = n_patches // block_len + 2
    cell = roi_group[..., None] * n_time_blocks + time_block  # [B, R, P]
    cell_scores = _rand((batch_size, n_groups * n_time_blocks), device, generator)
    cell_rank = cell_scores.argsort(1).argsort(1)  # a random order of the cells
    token_rank = cell_rank.gather(1, cell.flatten(1))  # [B, N]
    return token_rank * n_tokens + torch.arange(n_tokens, device=device)


class LocalMaskedAutoencoder(nn.Module):
    """LMAE: encoder with mask tokens, light decoder, MSE on the hidden patches.

    Masking hides exactly ``round(mask_ratio * R * P)`` tokens per sample (clipped to
    ``[1, R * P - 1]``). ``local`` hides whole cells of ``block_rois`` ROIs x ``block_len``
    patches in random order until the count is reached; the last cell is trimmed to hit the
    count exactly (see :func:`local_block_order`). ``random`` hides single tokens (MAE).

    The encoder sees every token, hidden ones as a mask embedding (SimMIM, Xie et al. 2022)
    rather than dropping them as MAE does: with factorised attention each patch has its own
    number of visible ROIs, and dropping would need padding masks that force the slow
    attention path. The reconstruction therefore happens mostly in the encoder, whose
    representations the regressor reuses; the decoder is light (``decoder_depth: 0`` is
    SimMIM's linear head). The paper gives no numbers: the defaults are ours.

    Args:
        encoder: The :class:`PatchEncoder` to pretrain; the decoder uses its heads, MLP ratio
            and attention.
        decoder_dim: Width of the light decoder.
        decoder_depth: Decoder transformer layers (0: a linear head on the encoder output).
        mask_ratio: Fraction of tokens hidden per sample, in (0, 1).
        mask_strategy: ``local`` hides contiguous blocks (the paper); ``random`` is MAE-style.
        block_len: Patches per masked block along time (2 x 8 TRs, about 32 s).
        block_rois: Neighbouring ROIs (atlas order) a block spans.
        norm_pix_loss: Normalise each target patch to zero mean, unit variance before the MSE.
    """

    def __init__(
        self,
        encoder: PatchEncoder,
        decoder_dim: int = 64,
        decoder_depth: int = 1,
        mask_ratio: float = 0.5,
        mask_strategy: Literal["local", "random"] = "local",
        block_len: int = 2,
        block_rois: int = 1,
        norm_pix_loss: bool = False,
    ) -> None:
        super().__init__()
        if not 0.0 < mask_ratio < 1.0 or block_len < 1 or block_rois < 1:
            raise ValueError("need 0 < mask_ratio < 1, block_len >= 1 and block_rois >= 1.")
        if mask_strategy not in ("local", "random"):
            raise ValueError(f"mask_strategy must be 'local' or 'random', got {mask_strategy!r}.")
        self.mask_ratio, self.mask_strategy = mask_ratio, mask_strategy
        self.block_len, self.block_rois, self.norm_pix_loss = block_len, block_rois, norm_pix_loss
        self.encoder = encoder
        width = decoder_dim if decoder_depth else encoder.d_model
        self.decoder_embed = nn.Linear(encoder.d_model, width) if decoder_depth else nn.Identity()
        self.decoder = (
            TokenTransformer(width, decoder_depth, encoder.n_heads, encoder.mlp_ratio, 0.0, encoder.attention)
            if decoder_depth
            else nn.Identity()
        )
        self.decoder_pred = nn.Linear(width, encoder.patch_len)

    def make_mask(
        self,
        batch_size: int,
        n_rois: int,
        n_patches: int,
        device: torch.device | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Bool mask ``[B, R, P]``, True = masked, with the same masked count in every sample.

        A ``generator`` makes the mask reproducible (evaluation uses one per batch).
        """
        n_tokens = n_rois * n_patches
        n_mask = min(max(round(self.mask_ratio * n_tokens), 1), n_tokens - 1)
        if self.mask_strategy == "random":
            order_key = _rand((batch_size, n_tokens), device, generator)
        else:
            order_key = local_block_order(
                batch_size, n_rois, n_patches, self.block_len, self.block_rois, device, generator
            )
        masked_ids = order_key.argsort(1)[:, :n_mask]  # [B, n_mask]
        mask = torch.zeros(batch_size, n_tokens, dtype=torch.bool, device=device)
        return mask.scatter_(1, masked_ids, True).view(batch_size, n_rois, n_patches)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Reconstruct every patch ``[B, R, P, patch_len]`` from encoded tokens ``[B, R, P, D]``."""
        return self.decoder_pred(self.decoder(self.decoder_embed(latent)))

    def masked_mse(
        self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Mean squared error over masked patches only (float32)."""
        target = target.float()
        if self.norm_pix_loss:
            mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        per_patch = (pred.float() - target).pow(2).mean(-1)  # [B, R, P]
        return (per_patch * mask).sum() / mask.sum()

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Mask, encode, decode, and score the masked patches.

        Args:
            x: ROI time series ``[B, R, T]``.
            mask: ``[B, R, P]`` bool (True = hidden); drawn with :meth:`make_mask` when None.

        Returns:
            ``loss`` (scalar), ``pred`` ``[B, R, P, patch_len]``, ``target`` (the patches of
            ``x``), ``mask`` ``[B, R, P]`` and ``latent``, the encoded tokens ``[B, R, P, D]``.
        """
        target = self.encoder.patchify(x)  # [B, R, P, patch_len]
        if mask is None:
            mask = self.make_mask(*target.shape[:3], device=x.device)
        latent = self.encoder(x, mask)
        pred = self.decode(latent)
        loss = self.masked_mse(pred, target, mask)
        return {"loss": loss, "pred": pred, "target": target, "mask": mask, "latent": latent}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """All token embeddings ``[B, R, P, D]`` of ``x: [B, R, T]``, without masking."""
        return self.encoder(x)

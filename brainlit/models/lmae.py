"""Local Masked Autoencoder (LMAE): patch tokens over ROI x time, local block masking, masked MSE.

A token is one (ROI, patch) pair: each ROI series ``[T]`` is cut into ``P = T // patch_len``
patches of ``patch_len`` time points. The encoder attends jointly over all ROI x patch tokens,
as MAE does over image patches; the loss is the MSE on masked patches only.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import nn


def sincos_table(length: int, dim: int) -> torch.Tensor:
    """Fixed sine-cosine position table ``[length, dim]`` (Vaswani et al.; MAE's choice)."""
    position = torch.arange(length, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(position * freq)
    table[:, 1::2] = torch.cos(position * freq[: dim // 2])
    return table


def roi_embedding(n_rois: int, dim: int, std: float = 0.5) -> torch.Tensor:
    """Initial learnable ROI embedding ``[n_rois, dim]``, truncated normal at 2 std."""
    return nn.init.trunc_normal_(torch.empty(n_rois, dim), std=std, a=-2 * std, b=2 * std)


def transformer(dim: int, depth: int, n_heads: int, mlp_ratio: float, dropout: float) -> nn.Module:
    """Pre-norm transformer stack (GELU MLP) with a final LayerNorm, batch first."""
    if dim % n_heads:
        raise ValueError(f"width {dim} is not divisible by n_heads={n_heads}: change one of them.")
    layer = nn.TransformerEncoderLayer(
        dim,
        n_heads,
        int(dim * mlp_ratio),
        dropout,
        activation="gelu",
        batch_first=True,
        norm_first=True,
    )
    return nn.TransformerEncoder(layer, depth, norm=nn.LayerNorm(dim), enable_nested_tensor=False)


class PatchEncoder(nn.Module):
    """Transformer over ROI x patch tokens, shared by LMAE pretraining and the regressor.

    Token embedding = linear projection of the patch + learnable ROI embedding + fixed
    sine-cosine temporal position embedding (a non-persistent buffer of ``max_patches`` rows,
    so it adds no checkpoint keys). The ROI embedding starts at std 0.5, the scale of the other
    two terms, so ROI identity is visible from the first step (with ViT's 0.02 the tiny-model
    reconstruction stalls far longer). The paper does not give the sizes: the defaults are ours.

    Args:
        n_rois: Number of ROIs R (atlas size).
        patch_len: Time points per token (8 x TR 1.97 s = 16 s, about one HRF).
        d_model: Token embedding width.
        depth: Transformer layers.
        n_heads: Attention heads.
        mlp_ratio: Hidden width of the transformer MLP relative to ``d_model``.
        dropout: Dropout inside the transformer.
        max_patches: Longest sequence of patches per ROI the position table covers.
    """

    def __init__(
        self,
        n_rois: int,
        patch_len: int = 8,
        d_model: int = 128,
        depth: int = 4,
        n_heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        max_patches: int = 128,
    ) -> None:
        super().__init__()
        self.n_rois, self.patch_len, self.max_patches = n_rois, patch_len, max_patches
        self.patch_proj = nn.Linear(patch_len, d_model)
        self.roi_embed = nn.Parameter(roi_embedding(n_rois, d_model))
        self.register_buffer("time_embed", sincos_table(max_patches, d_model), persistent=False)
        self.transformer = transformer(d_model, depth, n_heads, mlp_ratio, dropout)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """Cut ``x: [B, R, T]`` into ``[B, R, P, patch_len]``, dropping the last ``T % patch_len`` points."""
        b, r, t = x.shape
        n_patches = t // self.patch_len
        if r != self.n_rois or n_patches == 0:
            raise ValueError(
                f"expected x of shape [B, {self.n_rois}, T >= {self.patch_len}], got {tuple(x.shape)}: "
                "check n_rois against the cache and that windows are at least patch_len long."
            )
        return x[..., : n_patches * self.patch_len].reshape(b, r, n_patches, self.patch_len)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Token embeddings ``[B, R, P, D]`` of ``x: [B, R, T]`` before the transformer."""
        patches = self.patchify(x)  # [B, R, P, patch_len]
        n_patches = patches.shape[2]
        if n_patches > self.max_patches:
            raise ValueError(
                f"{n_patches} patches per ROI exceed max_patches={self.max_patches}: "
                "raise encoder.max_patches or use shorter windows."
            )
        return self.patch_proj(patches) + self.roi_embed[:, None] + self.time_embed[:n_patches]

    def forward(self, x: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """Encode the tokens of ``x: [B, R, T]``.

        Args:
            x: ROI time series ``[B, R, T]``.
            keep: Optional ``[B, R, P]`` bool, True = visible. Only visible tokens are embedded
                into the attention; samples with fewer visible tokens are padded and the padding
                is excluded with a key-padding mask.

        Returns:
            ``[B, R, P, D]`` encoded tokens; masked positions are exactly zero.
        """
        tokens = self.embed(x)  # [B, R, P, D]
        b, r, p, d = tokens.shape
        flat = tokens.flatten(1, 2)  # [B, N, D]
        if keep is None:
            return self.transformer(flat).view(b, r, p, d)
        keep = keep.flatten(1)  # [B, N]
        n_keep = keep.sum(1)  # [B]
        n_max = int(n_keep.max())
        # visible tokens first, each sample's in their original order (MAE's gather trick)
        order = torch.argsort((~keep).to(torch.uint8), dim=1, stable=True)[:, :n_max]  # [B, n_max]
        padding = torch.arange(n_max, device=x.device) >= n_keep[:, None]  # [B, n_max]
        visible = flat.gather(1, order[..., None].expand(-1, -1, d))  # [B, n_max, D]
        encoded = self.transformer(visible, src_key_padding_mask=padding if padding.any() else None)
        encoded = encoded.masked_fill(padding[..., None], 0.0)
        out = encoded.new_zeros(b, r * p, d)
        return out.scatter(1, order[..., None].expand(-1, -1, d), encoded).view(b, r, p, d)


def local_block_order(
    batch_size: int,
    n_rois: int,
    n_patches: int,
    block_len: int,
    block_rois: int,
    device: torch.device | None,
) -> torch.Tensor:
    """Per-sample sort key ``[B, R * P]`` listing the tokens block by block in random block order.

    The ROI x patch grid of each sample is tiled by cells of ``block_rois`` neighbouring ROIs
    (atlas order) x ``block_len`` consecutive patches, with a random offset along ROIs per sample
    and along time per ROI group, so block borders move between samples; cells cut by the
    window edge are shorter. Within a cell tokens are listed ROI-major.
    """
    n_tokens = n_rois * n_patches
    roi_phase = torch.randint(block_rois, (batch_size, 1), device=device)
    roi_group = (torch.arange(n_rois, device=device) + roi_phase) // block_rois  # [B, R]
    n_groups = n_rois // block_rois + 2
    time_phase = torch.randint(block_len, (batch_size, n_groups), device=device)
    time_phase = time_phase.gather(1, roi_group)  # [B, R], one offset per ROI group
    patch = torch.arange(n_patches, device=device)
    time_block = (patch + time_phase[..., None]) // block_len  # [B, R, P]
    n_time_blocks = n_patches // block_len + 2
    cell = roi_group[..., None] * n_time_blocks + time_block  # [B, R, P]
    cell_scores = torch.rand(batch_size, n_groups * n_time_blocks, device=device)
    cell_rank = cell_scores.argsort(1).argsort(1)  # a random order of the cells
    token_rank = cell_rank.gather(1, cell.flatten(1))  # [B, N]
    return token_rank * n_tokens + torch.arange(n_tokens, device=device)


class LocalMaskedAutoencoder(nn.Module):
    """LMAE: encoder over visible tokens, light decoder reconstructing the masked patches.

    Masking hides exactly ``round(mask_ratio * R * P)`` tokens per sample (clipped to
    ``[1, R * P - 1]``), so every sample has the same number of visible tokens. ``local``
    hides whole cells of ``block_rois`` ROIs x ``block_len`` patches in random order until the
    count is reached; the last cell is trimmed to hit the count exactly (see
    :func:`local_block_order`). ``random`` hides single tokens (MAE). The decoder uses
    ``n_heads`` heads and its own learnable ROI embedding plus fixed sine-cosine time positions.
    The paper gives no numbers: mask ratio 0.5, blocks of 2 patches (about 32 s, longer than
    the HRF) and a 2-layer, 64-wide decoder are our defaults.

    Args:
        n_rois: Number of ROIs R.
        patch_len: Time points per token.
        d_model: Encoder token width.
        depth: Encoder transformer layers.
        n_heads: Attention heads of the encoder and of the decoder.
        mlp_ratio: Transformer MLP width relative to the token width.
        dropout: Dropout inside the encoder.
        max_patches: Longest sequence of patches per ROI.
        decoder_dim: Width of the light decoder.
        decoder_depth: Decoder transformer layers.
        mask_ratio: Fraction of tokens hidden per sample, in (0, 1).
        mask_strategy: ``local`` hides contiguous blocks (the paper); ``random`` is MAE-style.
        block_len: Patches per masked block along time (2 x 8 TRs, about 32 s).
        block_rois: Neighbouring ROIs (atlas order) a block spans.
        norm_pix_loss: Normalise each target patch to zero mean, unit variance before the MSE.
    """

    def __init__(
        self,
        n_rois: int,
        patch_len: int = 8,
        d_model: int = 128,
        depth: int = 4,
        n_heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        max_patches: int = 128,
        decoder_dim: int = 64,
        decoder_depth: int = 2,
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
        self.encoder = PatchEncoder(
            n_rois, patch_len, d_model, depth, n_heads, mlp_ratio, dropout, max_patches
        )
        self.decoder_embed = nn.Linear(d_model, decoder_dim)
        self.mask_token = nn.Parameter(nn.init.trunc_normal_(torch.empty(decoder_dim), std=0.02))
        self.decoder_roi_embed = nn.Parameter(roi_embedding(n_rois, decoder_dim))
        self.register_buffer(
            "decoder_time_embed", sincos_table(max_patches, decoder_dim), persistent=False
        )
        self.decoder = transformer(decoder_dim, decoder_depth, n_heads, mlp_ratio, 0.0)
        self.decoder_pred = nn.Linear(decoder_dim, patch_len)

    def make_mask(
        self, batch_size: int, n_rois: int, n_patches: int, device: torch.device | None = None
    ) -> torch.Tensor:
        """Bool mask ``[B, R, P]``, True = masked, with the same masked count in every sample."""
        n_tokens = n_rois * n_patches
        n_mask = min(max(round(self.mask_ratio * n_tokens), 1), n_tokens - 1)
        if self.mask_strategy == "random":
            order_key = torch.rand(batch_size, n_tokens, device=device)
        else:
            order_key = local_block_order(
                batch_size, n_rois, n_patches, self.block_len, self.block_rois, device
            )
        masked_ids = order_key.argsort(1)[:, :n_mask]  # [B, n_mask]
        mask = torch.zeros(batch_size, n_tokens, dtype=torch.bool, device=device)
        return mask.scatter_(1, masked_ids, True).view(batch_size, n_rois, n_patches)

    def decode(self, latent: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Reconstruct every patch ``[B, R, P, patch_len]`` from encoded tokens ``[B, R, P, D]``."""
        b, r, p, _ = latent.shape
        tokens = self.decoder_embed(latent)  # [B, R, P, decoder_dim]
        tokens = torch.where(mask[..., None], self.mask_token.to(tokens.dtype), tokens)
        tokens = tokens + self.decoder_roi_embed[:, None] + self.decoder_time_embed[:p]
        decoded = self.decoder(tokens.flatten(1, 2)).view(b, r, p, -1)
        return self.decoder_pred(decoded)

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

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mask, encode the visible tokens, decode, and score the masked patches.

        Args:
            x: ROI time series ``[B, R, T]``.

        Returns:
            ``loss`` (scalar), ``pred`` ``[B, R, P, patch_len]`` and ``mask`` ``[B, R, P]``.
        """
        target = self.encoder.patchify(x)  # [B, R, P, patch_len]
        b, r, p, _ = target.shape
        mask = self.make_mask(b, r, p, x.device)
        latent = self.encoder(x, keep=~mask)  # [B, R, P, D], zeros where masked
        pred = self.decode(latent, mask)
        return {"loss": self.masked_mse(pred, target, mask), "pred": pred, "mask": mask}

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """All token embeddings ``[B, R, P, D]`` of ``x: [B, R, T]``, without masking."""
        return self.encoder(x)

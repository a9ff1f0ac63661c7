"""Patch-token transformer over ROI x time, shared by LMAE pretraining and the regressor.

A token is one (ROI, patch) pair: each ROI series ``[T]`` is cut into ``P = T // patch_len``
patches. Attention runs either jointly over all ``R * P`` tokens (cost ``O((R P)^2)`` per
layer) or factorised: across the ROIs of each patch, then across the patches of each ROI
(``O(R P (R + P))``). Every attention call goes through
:func:`torch.nn.functional.scaled_dot_product_attention` without a mask, so fused kernels run
on GPUs.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint as activation_checkpoint

Attention = Literal["joint", "factorized"]


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


class SelfAttention(nn.Module):
    """Multi-head self-attention over ``[N, L, D]`` through fused scaled-dot-product attention."""

    def __init__(self, dim: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"width {dim} is not divisible by n_heads={n_heads}: change one of them.")
        self.n_heads, self.dropout = n_heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: [N, L, D]`` -> ``[N, L, D]``."""
        q, k, v = self.qkv(x).unflatten(-1, (3, self.n_heads, -1)).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(  # q, k, v: [N, H, L, D / H]
            q, k, v, dropout_p=self.dropout if self.training else 0.0
        )
        return self.proj(out.transpose(1, 2).flatten(2))


class TokenBlock(nn.Module):
    """Pre-norm transformer block over tokens ``[B, R, P, D]``: attention, then a GELU MLP.

    ``joint`` attends over all ``R * P`` tokens at once; ``factorized`` attends across ROIs
    within each patch (the same time window: where connectivity shows), then across patches
    within each ROI (the ROI's own dynamics). ``dropout`` acts on the residual branches and
    inside the MLP, ``attention_dropout`` on the attention probabilities.
    """

    def __init__(
        self,
        dim: int,
        n_heads: int,
        mlp_ratio: float,
        dropout: float,
        attention: Attention,
        attention_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if attention not in ("joint", "factorized"):
            raise ValueError(f"attention must be 'joint' or 'factorized', got {attention!r}.")
        self.attention = attention
        self.norm_space = nn.LayerNorm(dim)
        self.attn_space = SelfAttention(dim, n_heads, attention_dropout)
        if attention == "factorized":
            self.norm_time = nn.LayerNorm(dim)
            self.attn_time = SelfAttention(dim, n_heads, attention_dropout)
        self.norm_mlp = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(
            nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: [B, R, P, D]`` -> ``[B, R, P, D]``."""
        b, r, p, d = x.shape
        if self.attention == "joint":
            x = x + self.dropout(self.attn_space(self.norm_space(x.flatten(1, 2)))).view_as(x)
        else:
            across_rois = self.norm_space(x).transpose(1, 2).reshape(b * p, r, d)
            x = x + self.dropout(self.attn_space(across_rois)).view(b, p, r, d).transpose(1, 2)
            across_time = self.norm_time(x).reshape(b * r, p, d)
            x = x + self.dropout(self.attn_time(across_time)).view(b, r, p, d)
        return x + self.dropout(self.mlp(self.norm_mlp(x)))


class TokenTransformer(nn.Module):
    """A stack of :class:`TokenBlock` with a final LayerNorm.

    ``checkpoint`` recomputes each block's activations in the backward pass instead of keeping
    them (:func:`torch.utils.checkpoint.checkpoint`, RNG state restored so dropout draws the same
    masks): the encoder then keeps one ``[B, R, P, D]`` tensor per block for backward instead of
    about 25, for about a third more time per step. Gradients are unchanged.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        n_heads: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attention: Attention = "factorized",
        attention_dropout: float = 0.0,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            TokenBlock(dim, n_heads, mlp_ratio, dropout, attention, attention_dropout)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.checkpoint = checkpoint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x: [B, R, P, D]`` -> ``[B, R, P, D]``."""
        recompute = self.checkpoint and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            x = activation_checkpoint(block, x, use_reentrant=False) if recompute else block(x)
        return self.norm(x)


class PatchEncoder(nn.Module):
    """Transformer over ROI x patch tokens, shared by LMAE pretraining and the regressor.

    Token embedding = linear projection of the patch + learnable ROI embedding + fixed
    sine-cosine temporal position embedding (a non-persistent buffer of ``max_patches`` rows,
    so it adds no checkpoint keys). The ROI embedding starts at std 0.5, the scale of the other
    two terms, so ROI identity is visible from the first step (with ViT's 0.02 the tiny-model
    reconstruction stalls far longer). Hidden tokens (LMAE) replace the patch projection by a
    learnable mask embedding and keep their ROI and time embeddings (SimMIM, Xie et al. 2022):
    every token stays in the sequence, so no attention call needs a padding mask. The paper
    does not give the sizes: the defaults are ours.

    Args:
        n_rois: Number of ROIs R (atlas size).
        patch_len: Time points per token (8 x TR 1.97 s = 16 s, about one HRF).
        d_model: Token embedding width.
        depth: Transformer layers.
        n_heads: Attention heads.
        mlp_ratio: Hidden width of the transformer MLP relative to ``d_model``.
        dropout: Dropout on the residual branches and inside the MLPs.
        max_patches: Longest sequence of patches per ROI the position table covers.
        attention: ``factorized`` (across ROIs, then across time; scales to 400-ROI atlases)
            or ``joint`` (all tokens at once).
        attention_dropout: Dropout on the attention probabilities. 0 by default, as in ViT and
            MAE: any other value makes PyTorch's CPU attention fall back from its fused kernel
            to the math path, which keeps every ``[R, R]`` probability matrix for backward (at
            400 ROIs, batch 16: 2 GiB per layer instead of 0.1, and 4x slower).
        checkpoint: Recompute each transformer block in the backward pass instead of keeping
            its activations (less memory, about a third more time; same gradients).
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
        attention: Attention = "factorized",
        attention_dropout: float = 0.0,
        checkpoint: bool = False,
    ) -> None:
        super().__init__()
        self.n_rois, self.patch_len, self.max_patches = n_rois, patch_len, max_patches
        self.d_model, self.n_heads, self.mlp_ratio, self.attention = d_model, n_heads, mlp_ratio, attention
        self.patch_proj = nn.Linear(patch_len, d_model)
        self.mask_embed = nn.Parameter(nn.init.trunc_normal_(torch.empty(d_model), std=0.02))
        self.roi_embed = nn.Parameter(roi_embedding(n_rois, d_model))
        self.register_buffer("time_embed", sincos_table(max_patches, d_model), persistent=False)
        self.transformer = TokenTransformer(
            d_model, depth, n_heads, mlp_ratio, dropout, attention, attention_dropout, checkpoint
        )

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

    def embed(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Token embeddings ``[B, R, P, D]`` of ``x: [B, R, T]`` before the transformer.

        Args:
            x: ROI time series ``[B, R, T]``.
            mask: Optional ``[B, R, P]`` bool, True = hidden: those tokens get the mask embedding.
        """
        patches = self.patchify(x)  # [B, R, P, patch_len]
        n_patches = patches.shape[2]
        if n_patches > self.max_patches:
            raise ValueError(
                f"{n_patches} patches per ROI exceed max_patches={self.max_patches}: "
                "raise encoder.max_patches or use shorter windows."
            )
        content = self.patch_proj(patches)
        if mask is not None:
            content = torch.where(mask[..., None], self.mask_embed.to(content.dtype), content)
        return content + self.roi_embed[:, None] + self.time_embed[:n_patches]

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode ``x: [B, R, T]`` (hidden tokens under ``mask: [B, R, P]``) to ``[B, R, P, D]``."""
        return self.transformer(self.embed(x, mask))

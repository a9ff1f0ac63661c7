"""Closed-form reconstructions of masked patches: the simple things LMAE has to beat.

Each filler returns patches ``[B, R, P, patch_len]`` on the same masks as the model, so the
masked-patch MSE of LMAE and of every filler are computed on identical hidden values:

- :func:`zero_fill`: the mean of a z-scored series (the floor: MSE about 1).
- :func:`interpolate_fill`: per ROI, linear interpolation in time between the nearest visible
  time points on either side (constant beyond the last one).
- :class:`SpatialRidgeFiller`: the same-time linear filler. Each hidden ROI at time t is the
  ridge regression on the ROIs visible at t, with the ROI covariance of the training subjects:
  ``x_M = S_MV (S_VV + lambda I)^-1 x_V`` (the Gaussian conditional mean when lambda = 0).

Plain PyTorch: usable inside a LightningModule on the device of the batch.
"""

from __future__ import annotations

import torch
from torch import nn


def patches_to_time(values: torch.Tensor) -> torch.Tensor:
    """``[B, R, P, L]`` -> ``[B, R, P * L]``."""
    return values.flatten(-2)


def time_to_patches(values: torch.Tensor, patch_len: int) -> torch.Tensor:
    """``[B, R, P * L]`` -> ``[B, R, P, L]``."""
    return values.unflatten(-1, (-1, patch_len))


def zero_fill(patches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zeros ``[B, R, P, L]``: the mean of a z-scored series."""
    return torch.zeros_like(patches)


def interpolate_fill(patches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-ROI linear interpolation in time from the nearest visible points.

    Args:
        patches: ROI series cut into patches ``[B, R, P, L]`` (hidden values are never read).
        mask: ``[B, R, P]`` bool, True = hidden.

    Returns:
        ``[B, R, P, L]``: visible points unchanged, hidden points interpolated between the
        last visible point before and the first after; held constant where only one side
        exists, zero for an ROI with no visible point.
    """
    patch_len = patches.shape[-1]
    series = patches_to_time(patches).float()  # [B, R, T]
    hidden = mask.repeat_interleave(patch_len, dim=-1)  # [B, R, T]
    length = series.shape[-1]
    time = torch.arange(length, device=series.device).expand_as(series)
    before = torch.where(hidden, -1, time).cummax(-1).values  # last visible index <= t, or -1
    after = torch.where(hidden, length, time).flip(-1).cummin(-1).values.flip(-1)  # or T
    has_before, has_after = before >= 0, after < length
    left = series.gather(-1, before.clamp(0, length - 1))
    right = series.gather(-1, after.clamp(0, length - 1))
    span = (after - before).clamp_min(1).float()
    weight = (time - before).float() / span
    both = left + weight * (right - left)
    filled = torch.where(has_before & has_after, both, torch.where(has_before, left, right))
    filled = torch.where(has_before | has_after, filled, torch.zeros_like(filled))
    return time_to_patches(torch.where(hidden, filled, series), patch_len).to(patches.dtype)


class SpatialRidgeFiller(nn.Module):
    """Same-time ridge regression of hidden ROIs on visible ROIs, fit on training series.

    :meth:`update` accumulates the ROI second-moment matrix of z-scored training series
    (``S = sum_t x_t x_t^T / n``, the correlation matrix for z-scored data); :meth:`forward`
    solves, for every sample and patch, ``x_M = S_MV (S_VV + lambda I)^-1 x_V`` over the ROIs
    V visible in that patch. This is ridge regression fit on the training data (its normal
    equations are ``S_VV`` and ``S_VM``) and, at ``ridge = 0``, the Gaussian conditional mean.
    The sums are buffers, so a checkpoint carries the fit.

    Args:
        n_rois: Number of ROIs R.
        ridge: Penalty lambda added to the visible block's diagonal (series have unit variance,
            so 0.1 shrinks mildly; it also keeps the solve well posed when R exceeds the
            number of time points seen).
    """

    def __init__(self, n_rois: int, ridge: float = 0.1) -> None:
        super().__init__()
        self.ridge = ridge
        self.register_buffer("moment_sum", torch.zeros(n_rois, n_rois, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    @property
    def fitted(self) -> bool:
        """Whether any training series has been seen."""
        return bool(self.count > 0)

    @torch.no_grad()
    def update(self, x: torch.Tensor) -> None:
        """Add training series ``x: [B, R, T]`` to the second-moment sums."""
        x = x.detach().double()
        self.moment_sum += torch.einsum("brt,bst->rs", x, x)
        self.count += x.shape[0] * x.shape[-1]

    def covariance(self) -> torch.Tensor:
        """The fitted ROI second-moment matrix ``[R, R]`` (float32)."""
        if not self.fitted:
            raise RuntimeError("SpatialRidgeFiller has seen no training series: call update first.")
        return (self.moment_sum / self.count).float()

    @torch.no_grad()
    def forward(self, patches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Fill the hidden patches of ``patches: [B, R, P, L]`` under ``mask: [B, R, P]``.

        One ``R x R`` solve per (sample, patch): the visible block ``S_VV + lambda I`` sits in
        a matrix whose hidden rows and columns are the identity, so the hidden coefficients
        come out zero and every system has the same shape.
        """
        cov = self.covariance().to(patches.device)  # [R, R]
        n_rois = cov.shape[0]
        visible = (~mask).transpose(1, 2).float()  # [B, P, R]
        outer = visible[..., :, None] * visible[..., None, :]  # [B, P, R, R]
        eye = torch.eye(n_rois, device=patches.device)
        system = cov * outer + eye * (self.ridge * visible[..., None] + (1 - visible[..., None]))
        observed = patches.float().permute(0, 2, 1, 3) * visible[..., None]  # [B, P, R, L]
        weights = torch.linalg.solve(system, observed)  # zero on hidden ROIs
        predicted = (cov @ weights).permute(0, 2, 1, 3)  # [B, R, P, L]
        return torch.where(mask[..., None], predicted, patches.float()).to(patches.dtype)

"""The linear read-out beside the SSM and its features: FC edges (correlation or tangent space)
and each ROI's autocorrelation, in batched torch so that they run per window on any device."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Connectivity = Literal["correlation", "tangent", "both"]
EDGE_KINDS: dict[str, tuple[str, ...]] = {
    "correlation": ("correlation",), "tangent": ("tangent",), "both": ("correlation", "tangent"),
}


def autocorrelation(x: torch.Tensor, lags: int) -> torch.Tensor:
    """Each ROI's autocorrelation at lags ``1..lags``: ``x: [B, R, T]`` -> ``[B, lags * R]`` (lag-major).

    The window's own temporal structure, which zero-lag FC discards: z-score each ROI over
    the window, then average ``z[t] * z[t + lag]``. Computed in float32 even under autocast.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x.float()
        z = (x - x.mean(-1, keepdim=True)) / x.std(-1, unbiased=False, keepdim=True).clamp_min(1e-8)
        return torch.cat([(z[..., lag:] * z[..., :-lag]).mean(-1) for lag in range(1, lags + 1)], dim=1)


def ledoit_wolf(x: torch.Tensor) -> torch.Tensor:
    """Ledoit-Wolf shrunk covariance of each sample's ROI series: ``x: [B, R, T]`` -> ``[B, R, R]``.

    The estimator nilearn's ``ConnectivityMeasure`` uses (sklearn's ``LedoitWolf``, series
    centred over time), in batched torch so that it runs per window on any device. The
    shrinkage towards ``trace / R * I`` keeps every window's covariance positive definite.
    """
    x = x - x.mean(-1, keepdim=True)
    n, p = x.shape[-1], x.shape[-2]
    cov = x @ x.transpose(-1, -2) / n  # [B, R, R]
    mu = cov.diagonal(dim1=-2, dim2=-1).mean(-1)  # [B]
    squared = x**2
    beta = ((squared @ squared.transpose(-1, -2)).sum((-2, -1)) / n - (cov**2).sum((-2, -1))) / (p * n)
    identity = torch.eye(p, dtype=x.dtype, device=x.device)
    delta = ((cov - mu[:, None, None] * identity) ** 2).sum((-2, -1)) / p
    shrinkage = torch.where(delta > 0, torch.minimum(beta, delta) / delta.clamp_min(1e-30), 0.0)
    return (1 - shrinkage)[:, None, None] * cov + (shrinkage * mu)[:, None, None] * identity


def tangent_space(cov: torch.Tensor, whitening: torch.Tensor) -> torch.Tensor:
    """``logm(W C W)``: covariances ``[B, R, R]`` projected at the reference whose ``W = ref^(-1/2)``.

    The tangent-space parametrisation of Varoquaux et al. (2010) that nilearn's
    ``ConnectivityMeasure(kind="tangent")`` computes, each subject's deviation from the group's
    geometric mean, here batched in torch.
    """
    whitened = whitening @ cov @ whitening
    values, vectors = torch.linalg.eigh((whitened + whitened.transpose(-1, -2)) / 2)
    return vectors @ torch.diag_embed(values.clamp_min(1e-10).log()) @ vectors.transpose(-1, -2)


def feature_blocks(n_edges: int, n_kinds: int, n_features: int) -> list[torch.Tensor]:
    """Column indices of each edge kind together with the columns shared by all (the
    autocorrelations), for features laid out as ``[kind 0 edges, kind 1 edges, ..., shared]``."""
    shared = torch.arange(n_kinds * n_edges, n_features)
    return [torch.cat([torch.arange(k * n_edges, (k + 1) * n_edges), shared]) for k in range(n_kinds)]


class FCReadout(nn.Module):
    """Linear read-out of the window's FC edges (and optionally each ROI's autocorrelation),
    ``x [B, R, T]``, ``fc [B, R, R]`` -> ``[B, n_targets]``.

    The features kernel ridge and tangent ridge get ready-made, handed to the model directly:
    ``connectivity='correlation'`` reads the Fisher-z correlation upper triangle;
    ``'tangent'`` the upper triangle of each window's Ledoit-Wolf covariance projected into
    the tangent space at a reference (Dadi et al. 2019: the strongest classical FC features),
    which :meth:`set_reference` installs from training subjects (identity until then);
    ``'both'`` reads both edge sets. With ``lags > 0`` each ROI's autocorrelation at lags
    1..lags joins them: the temporal structure FC discards (``benchmarks/beyond_fc.py``
    measures what it adds in closed form). :meth:`blocks` names the columns of each edge
    kind with the autocorrelations, the feature sets of the combined closed-form fit
    (:func:`brainlit.tasks.closed_form.fit_ridge_combination`). The weights start at zero, so at
    initialisation the model's output is the SSM path's alone.

    Args:
        n_rois: Number of ROIs R.
        n_targets: Number of outputs.
        dropout: Dropout on the features (a ridge-like penalty in expectation).
        clip: ``|r|`` is clipped to this before arctanh.
        lags: Autocorrelation lags per ROI added to the features (0: FC only).
        connectivity: ``correlation``, ``tangent`` or ``both`` edge sets.
    """

    def __init__(
        self,
        n_rois: int,
        n_targets: int,
        dropout: float = 0.0,
        clip: float = 0.999,
        lags: int = 0,
        connectivity: Connectivity = "correlation",
    ) -> None:
        super().__init__()
        if connectivity not in EDGE_KINDS:
            raise ValueError(f"connectivity must be one of {', '.join(EDGE_KINDS)}, got {connectivity!r}")
        self.register_buffer("upper", torch.triu_indices(n_rois, n_rois, 1), persistent=False)
        self.kinds = EDGE_KINDS[connectivity]
        # reference^(-1/2) of the tangent space; saved only where it is used, so older checkpoints load
        whitening = torch.eye(n_rois, dtype=torch.float64)
        self.register_buffer("whitening", whitening, persistent="tangent" in self.kinds)
        self.clip, self.lags = clip, lags
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(len(self.kinds) * self.upper.shape[1] + lags * n_rois, n_targets)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def features(self, x: torch.Tensor, fc: torch.Tensor) -> torch.Tensor:
        """Each kind's FC edges (of ``fc: [B, R, R]``, or tangent of ``x``) then, with ``lags``,
        autocorrelations of ``x``."""
        edges = [self.edges(x, fc, kind)[:, self.upper[0], self.upper[1]] for kind in self.kinds]
        return torch.cat(edges + ([autocorrelation(x, self.lags)] if self.lags else []), dim=1)

    def blocks(self) -> list[torch.Tensor]:
        """Column indices into :meth:`features` of each edge kind together with the autocorrelations."""
        return feature_blocks(self.upper.shape[1], len(self.kinds), self.linear.in_features)

    def edges(self, x: torch.Tensor, fc: torch.Tensor, kind: str) -> torch.Tensor:
        """``[B, R, R]``: Fisher-z correlations, or tangent-space covariances in float64 for ``tangent``."""
        if kind == "correlation":
            return torch.atanh(fc.clamp(-self.clip, self.clip))
        with torch.autocast(device_type=x.device.type, enabled=False):
            return tangent_space(ledoit_wolf(x.double()), self.whitening.double()).to(fc.dtype)

    @torch.no_grad()
    def set_reference(self, whitening: torch.Tensor) -> None:
        """Install the tangent reference as ``reference^(-1/2)`` ``[R, R]`` (nilearn's ``whitening_``)."""
        self.whitening.copy_(whitening)

    def forward(self, x: torch.Tensor, fc: torch.Tensor) -> torch.Tensor:
        """``x: [B, R, T]`` series and ``fc: [B, R, R]`` their correlations -> ``[B, n_targets]``."""
        return self.linear(self.dropout(self.features(x, fc)))

    @torch.no_grad()
    def set_weights(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Install a read-out fit elsewhere (e.g. in closed form): ``weight [n_targets, E]``, ``bias``."""
        self.linear.weight.copy_(weight)
        self.linear.bias.copy_(bias)

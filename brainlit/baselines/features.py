"""Static connectivity features of ROI time series, batched in torch: Fisher-z correlation
edges, Ledoit-Wolf covariances, their tangent-space projection and each ROI's autocorrelation.

These are the features of brainlit's closed-form read-out
(:class:`~brainlit.baselines.readout.ConnectivityRidge`) and of the oracle rows.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


def autocorrelation(x: torch.Tensor, lags: int) -> torch.Tensor:
    """Each ROI's autocorrelation at lags ``1..lags``: ``x: [B, R, T]`` -> ``[B, lags * R]`` (lag-major).

    The run's own temporal structure, which zero-lag FC discards: z-score each ROI over time,
    then average ``z[t] * z[t + lag]``. Computed in float32 or better even under autocast.
    """
    with torch.autocast(device_type=x.device.type, enabled=False):
        x = x if x.dtype == torch.float64 else x.float()
        z = (x - x.mean(-1, keepdim=True)) / x.std(-1, unbiased=False, keepdim=True).clamp_min(1e-8)
        return torch.cat([(z[..., lag:] * z[..., :-lag]).mean(-1) for lag in range(1, lags + 1)], dim=1)


def fisher_z_edges(x: torch.Tensor, clip: float = 0.999) -> torch.Tensor:
    """Fisher-z Pearson correlations of ``x: [B, R, T]`` -> ``[B, R (R - 1) / 2]`` upper triangle.

    A flat ROI correlates 0 with everything; ``|r|`` is clipped to ``clip`` before arctanh.
    """
    z = x - x.mean(-1, keepdim=True)
    z = z / z.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    upper = torch.triu_indices(x.shape[-2], x.shape[-2], 1, device=x.device)
    r = (z @ z.transpose(-1, -2))[:, upper[0], upper[1]]
    return torch.atanh(r.clamp(-clip, clip))


def ledoit_wolf(x: torch.Tensor) -> torch.Tensor:
    """Ledoit-Wolf shrunk covariance of each sample's ROI series: ``x: [B, R, T]`` -> ``[B, R, R]``.

    The estimator nilearn's ``ConnectivityMeasure`` uses (sklearn's ``LedoitWolf``, series
    centred over time). The shrinkage towards ``trace / R * I`` keeps every covariance positive
    definite.
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
    ``ConnectivityMeasure(kind="tangent")`` computes: each subject's deviation from the
    group's geometric mean.
    """
    whitened = whitening @ cov @ whitening
    values, vectors = torch.linalg.eigh((whitened + whitened.transpose(-1, -2)) / 2)
    return vectors @ torch.diag_embed(values.clamp_min(1e-10).log()) @ vectors.transpose(-1, -2)


def tangent_edges(x: torch.Tensor, whitening: torch.Tensor) -> torch.Tensor:
    """Upper triangle ``[B, R (R - 1) / 2]`` of the tangent-space covariances of ``x: [B, R, T]``
    at the reference ``whitening = ref^(-1/2)`` (float64)."""
    upper = torch.triu_indices(x.shape[-2], x.shape[-2], 1, device=x.device)
    tangent = tangent_space(ledoit_wolf(x.double()), whitening.double())
    return tangent[:, upper[0], upper[1]]


def feature_blocks(n_edges: int, n_kinds: int, n_features: int) -> list[torch.Tensor]:
    """Column indices of each edge kind together with the columns shared by all (the
    autocorrelations), for features laid out as ``[kind 0 edges, kind 1 edges, ..., shared]``."""
    shared = torch.arange(n_kinds * n_edges, n_features)
    return [torch.cat([torch.arange(k * n_edges, (k + 1) * n_edges), shared]) for k in range(n_kinds)]


def lag_features(runs: Sequence[np.ndarray], lags: int = 3) -> np.ndarray:
    """Each ROI's autocorrelation at lags ``1..lags`` of runs ``[R, T]`` (any lengths): ``[N, lags * R]``."""
    return np.stack([autocorrelation(torch.from_numpy(np.asarray(run, dtype=np.float64))[None], lags)[0].numpy()
                     for run in runs])

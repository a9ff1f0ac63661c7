"""Ridge on third-order connectivity (co-skewness) beside tangent-space FC.

FC is second-order: it sees the ROI series only through their covariance. Third-order
co-moments of the z-scored series, ``E[z_i^2 z_j]``, are what a Gaussian model of the signal
sets to zero and what an independent benchmark of brain foundation models found they lose and
linear models on connectivity keep (arXiv 2606.04010). This estimator gives ridge both blocks.
Measurements (it helps where a target lives in co-skewness, not on the linear-Gaussian
simulated cohort) are in ``docs/research/higher_order.md``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold

from brainlit.baselines.tangent_ridge import fit_tangent, tangent_features


def standardise(series: np.ndarray) -> np.ndarray:
    """Each row of ``series`` ``[K, T]`` z-scored over time (a constant row becomes zeros)."""
    series = np.asarray(series, dtype=np.float64)
    centred = series - series.mean(1, keepdims=True)
    sd = centred.std(1, keepdims=True)
    return np.divide(centred, sd, out=np.zeros_like(centred), where=sd > 0)


def coskewness_matrix(series: np.ndarray) -> np.ndarray:
    """``M[i, j] = E[z_i^2 z_j]`` ``[K, K]`` of the z-scored rows of ``series`` ``[K, T]``.

    The diagonal is each row's skewness; ``M[i, j]`` and ``M[j, i]`` are the two co-skewnesses
    of a pair, so the matrix holds every distinct third-order co-moment of two series.
    """
    z = standardise(series)
    return (z * z) @ z.T / z.shape[1]


def coskewness_features(roi_timeseries: Sequence[np.ndarray], projection: np.ndarray | None = None) -> np.ndarray:
    """Flattened co-skewness matrices ``[N, K * K]`` of series ``[R, T]`` each.

    Args:
        roi_timeseries: One ``[R, T]`` array per subject.
        projection: Orthonormal ROI-space directions ``[R, K]`` (from :func:`coskewness_subspace`):
            the co-skewness of the series projected on them; None: of the ROIs (``K = R``).
    """
    rows = []
    for series in roi_timeseries:
        z = standardise(series)
        rows.append(coskewness_matrix(z if projection is None else projection.T @ z).ravel())
    return np.stack(rows)


def coskewness_subspace(roi_timeseries: Sequence[np.ndarray], n_components: int) -> np.ndarray:
    """The ``[R, n_components]`` orthonormal ROI-space directions that keep most co-skewness.

    The leading left singular vectors of the mode-1 unfolding ``[R, R * R]`` of the cohort's
    mean co-skewness tensor ``E[z_i z_j z_k]`` (a truncated higher-order SVD, De Lathauwer et
    al. 2000). Costs ``O(N R^3 T)``: fine for 100 ROIs, slow for 400.
    """
    n_rois = np.asarray(roi_timeseries[0]).shape[0]
    if not 1 <= n_components <= n_rois:
        raise ValueError(f"n_components must be between 1 and the {n_rois} ROIs, got {n_components}.")
    unfolding = np.zeros((n_rois, n_rois * n_rois))
    for series in roi_timeseries:
        z = standardise(series)  # [R, T]
        pairs = (z[:, None, :] * z[None, :, :]).reshape(n_rois * n_rois, -1)  # z_j z_k: [R * R, T]
        unfolding += z @ pairs.T / z.shape[1]
    _, vectors = np.linalg.eigh(unfolding @ unfolding.T)  # ascending eigenvalues
    return vectors[:, ::-1][:, :n_components]


class CoskewRidge:
    """Tangent FC and co-skewness of the ROI series, side by side, into ridge.

    The tangent block is :class:`~brainlit.baselines.TangentRidge`'s (reference from the
    training subjects). The co-skewness block (:func:`coskewness_features`) is scaled on the
    training subjects so that its total variance is ``coskew_weight`` times the tangent block's:
    neither block wins the penalty by its number of features. Ridge's penalty is chosen by an
    inner K-fold CV on the training subjects only (mean absolute error).

    Args:
        coskew_weight: Total variance of the co-skewness block relative to the tangent block.
        n_components: Co-skewness of the projections on the ``n_components`` ROI-space
            directions that keep most of the training cohort's co-skewness
            (:func:`coskewness_subspace`) instead of the ROIs'; None: every ROI pair.
        alphas: Ridge penalties tried by the inner CV.
        inner_folds: Folds of the inner CV (fewer if there are fewer training subjects).
        seed: Seed of the inner fold shuffling.
    """

    def __init__(
        self,
        coskew_weight: float = 1.0,
        n_components: int | None = None,
        alphas: Sequence[float] = tuple(np.logspace(-3, 4, 15)),
        inner_folds: int = 5,
        seed: int = 0,
    ) -> None:
        if coskew_weight <= 0:
            raise ValueError(f"CoskewRidge coskew_weight must be positive, got {coskew_weight}.")
        self.coskew_weight, self.n_components = coskew_weight, n_components
        self.alphas, self.inner_folds, self.seed = tuple(alphas), inner_folds, seed

    def _blocks(self, roi_timeseries: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Tangent FC ``[N, R (R - 1) / 2]`` and unscaled co-skewness ``[N, K * K]``."""
        return (tangent_features(self.tangent_, roi_timeseries),
                coskewness_features(roi_timeseries, self.projection_))

    def fit(self, roi_timeseries: Sequence[np.ndarray], y: Sequence[float]) -> CoskewRidge:
        """Fit the tangent reference, the subspace, the block scale and the ridge on training
        series (``[R, T]`` each) and targets."""
        y = np.asarray(y, dtype=np.float64)
        self.tangent_ = fit_tangent(roi_timeseries)
        self.projection_ = coskewness_subspace(roi_timeseries, self.n_components) if self.n_components else None
        tangent, coskew = self._blocks(roi_timeseries)
        coskew_variance = max(float(coskew.var(0).sum()), np.finfo(float).tiny)
        self.coskew_scale_ = float(np.sqrt(self.coskew_weight * tangent.var(0).sum() / coskew_variance))
        cv = KFold(min(self.inner_folds, len(y)), shuffle=True, random_state=self.seed)
        self.ridge_ = RidgeCV(alphas=self.alphas, cv=cv, scoring="neg_mean_absolute_error")
        self.ridge_.fit(np.hstack([tangent, self.coskew_scale_ * coskew]), y)
        return self

    def predict(self, roi_timeseries: Sequence[np.ndarray]) -> np.ndarray:
        """Predictions [N] for series ([R, T] each), with everything fit on the training subjects."""
        tangent, coskew = self._blocks(roi_timeseries)
        return self.ridge_.predict(np.hstack([tangent, self.coskew_scale_ * coskew]))

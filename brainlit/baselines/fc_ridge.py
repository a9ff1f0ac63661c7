"""Kernel ridge regression on the functional-connectivity (FC) upper triangle."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler


def fc_features(
    roi_timeseries: Sequence[np.ndarray] | np.ndarray, clip: float = 0.999
) -> np.ndarray:
    """Fisher-z (arctanh) of the Pearson FC upper triangle of each subject.

    Args:
        roi_timeseries: One [R, T] array per subject (T may differ between subjects).
        clip: |r| is clipped to this before arctanh, so that r = +-1 stays finite.

    Returns:
        [N, R * (R - 1) / 2] float64. A constant (flat) ROI gets correlation 0.
    """
    features = []
    for series in roi_timeseries:
        series = np.asarray(series, dtype=np.float64)  # [R, T]
        if series.ndim != 2:
            raise ValueError(f"expected one [R, T] array per subject, got shape {series.shape}")
        with np.errstate(divide="ignore", invalid="ignore"):
            fc = np.corrcoef(series)  # [R, R]
        upper = np.nan_to_num(fc[np.triu_indices(len(series), 1)], nan=0.0)
        features.append(np.arctanh(np.clip(upper, -clip, clip)))
    if len({f.size for f in features}) > 1:
        raise ValueError("all subjects must have the same number of ROIs")
    return np.stack(features)


class FCKernelRidge:
    """Kernel ridge on FC features with alpha (and gamma) chosen by inner CV on the training data.

    Features are standardised and targets z-scored with training statistics only. Both grids
    are relative, so one grid suits any atlas size: ``alpha`` is scaled by the mean diagonal of
    the kernel (1 for RBF, n_features for the linear kernel on standardised features) and the
    RBF ``gamma`` by ``1 / n_features``.

    Args:
        kernel: ``"rbf"`` or ``"linear"``.
        alphas: Relative ridge penalties tried by the inner CV.
        gammas: Relative RBF widths tried by the inner CV (ignored for the linear kernel).
        inner_folds: Folds of the inner CV (fewer if there are fewer training subjects).
        seed: Seed of the inner fold shuffling.
    """

    def __init__(
        self,
        kernel: Literal["rbf", "linear"] = "rbf",
        alphas: Sequence[float] = (0.01, 0.1, 1.0, 10.0, 100.0),
        gammas: Sequence[float] = (0.1, 0.3, 1.0),
        inner_folds: int = 3,
        seed: int = 0,
    ) -> None:
        if kernel not in ("rbf", "linear"):
            raise ValueError(f"kernel must be 'rbf' or 'linear', got {kernel!r}")
        self.kernel, self.alphas, self.gammas = kernel, tuple(alphas), tuple(gammas)
        self.inner_folds, self.seed = inner_folds, seed

    def fit(self, roi_timeseries: Sequence[np.ndarray], y: Sequence[float]) -> FCKernelRidge:
        """Inner grid search on ``roi_timeseries`` ([R, T] each) and targets ``y`` [N]."""
        return self.fit_features(fc_features(roi_timeseries), y)

    def fit_features(self, features: np.ndarray, y: Sequence[float]) -> FCKernelRidge:
        """Inner grid search on precomputed features ``[N, F]`` (e.g. FC and more) and ``y`` [N]."""
        y = np.asarray(y, dtype=np.float64)
        self.y_mean_, self.y_std_ = float(y.mean()), float(y.std()) or 1.0
        n_features = features.shape[1]
        diagonal = 1.0 if self.kernel == "rbf" else n_features
        grid = {"ridge__alpha": [a * diagonal for a in self.alphas]}
        if self.kernel == "rbf":
            grid["ridge__gamma"] = [g / n_features for g in self.gammas]
        pipeline = Pipeline(
            [("scale", StandardScaler()), ("ridge", KernelRidge(kernel=self.kernel))]
        )
        cv = KFold(min(self.inner_folds, len(y)), shuffle=True, random_state=self.seed)
        self.search_ = GridSearchCV(pipeline, grid, cv=cv, scoring="neg_mean_absolute_error")
        self.search_.fit(features, (y - self.y_mean_) / self.y_std_)
        self.best_params_ = self.search_.best_params_
        return self

    def predict(self, roi_timeseries: Sequence[np.ndarray]) -> np.ndarray:
        """Predictions [N] in the units of the training targets."""
        return self.predict_features(fc_features(roi_timeseries))

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """Predictions [N] from features made as those given to :meth:`fit_features`."""
        return self.search_.predict(features) * self.y_std_ + self.y_mean_

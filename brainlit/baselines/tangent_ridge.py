"""Ridge regression on tangent-space functional connectivity (Dadi et al., NeuroImage 2019)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from nilearn.connectome import ConnectivityMeasure
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold


def fit_tangent(roi_timeseries: Sequence[np.ndarray]) -> ConnectivityMeasure:
    """nilearn's tangent-space FC (vectorised, no diagonal) with its reference, the geometric
    mean of the Ledoit-Wolf covariances of ``roi_timeseries`` ([R, T] each): the training
    subjects only, so that no test subject shapes it."""
    measure = ConnectivityMeasure(kind="tangent", vectorize=True, discard_diagonal=True)
    return measure.fit([np.asarray(s).T for s in roi_timeseries])


def tangent_features(measure: ConnectivityMeasure, roi_timeseries: Sequence[np.ndarray]) -> np.ndarray:
    """``[N, R (R - 1) / 2]`` tangent-space FC of ``roi_timeseries`` at ``measure``'s reference."""
    return measure.transform([np.asarray(s).T for s in roi_timeseries])


class TangentRidge:
    """Tangent-space FC (reference = geometric mean of the training subjects) + ridge.

    Each subject's Ledoit-Wolf covariance is projected onto the tangent space at the geometric
    mean of the *training* covariances (nilearn ``ConnectivityMeasure(kind="tangent")``,
    vectorised without the diagonal); ridge's penalty is chosen by an inner K-fold CV on the
    training subjects only (mean absolute error). Dadi et al. found this the strongest
    classical pipeline for prediction from resting-state fMRI.

    Args:
        alphas: Ridge penalties tried by the inner CV.
        inner_folds: Folds of the inner CV (fewer if there are fewer training subjects).
        seed: Seed of the inner fold shuffling.
    """

    def __init__(
        self,
        alphas: Sequence[float] = tuple(np.logspace(-3, 3, 13)),
        inner_folds: int = 5,
        seed: int = 0,
    ) -> None:
        self.alphas, self.inner_folds, self.seed = tuple(alphas), inner_folds, seed

    def fit(self, roi_timeseries: Sequence[np.ndarray], y: Sequence[float]) -> TangentRidge:
        """Fit the tangent reference and the ridge on training series ([R, T] each) and targets."""
        y = np.asarray(y, dtype=np.float64)
        self.connectivity_ = fit_tangent(roi_timeseries)
        features = tangent_features(self.connectivity_, roi_timeseries)
        cv = KFold(min(self.inner_folds, len(y)), shuffle=True, random_state=self.seed)
        self.ridge_ = RidgeCV(
            alphas=self.alphas, cv=cv, scoring="neg_mean_absolute_error"
        ).fit(features, y)
        return self

    @property
    def reference_(self) -> np.ndarray:
        """The tangent reference ``[R, R]``: the geometric mean of the training covariances."""
        return self.connectivity_.mean_

    def predict(self, roi_timeseries: Sequence[np.ndarray]) -> np.ndarray:
        """Predictions [N] for series ([R, T] each), projected at the training reference."""
        return self.ridge_.predict(tangent_features(self.connectivity_, roi_timeseries))

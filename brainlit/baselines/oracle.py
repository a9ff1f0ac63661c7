"""The ceiling of a positive control: static FC plus the true latent parameters of a simulation."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.linear_model import LinearRegression, RidgeCV
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from brainlit.baselines.fc_ridge import fc_features
from brainlit.baselines.tangent_ridge import fit_tangent, tangent_features
from brainlit.models.readout import autocorrelation

ORACLE = "oracle (true latents)"


def lag_features(roi_timeseries: Sequence[np.ndarray], lags: int = 3) -> np.ndarray:
    """Each ROI's autocorrelation at lags 1..``lags``, as brainlit's read-out computes it:
    ``[N, lags * R]``."""
    return np.stack([autocorrelation(torch.from_numpy(np.asarray(s, dtype=np.float64))[None], lags)[0].numpy()
                     for s in roi_timeseries])


class LatentOracle:
    """Ridge on static FC (correlation and tangent) + autocorrelations, stacked with the
    subjects' true latent parameters.

    A simulated positive control knows what the BOLD carries beyond static FC (e.g. each
    subject's mean dwell time in an FC state). The oracle is what a model that reads static FC
    as the closed-form read-out does *and* knows those parameters exactly would reach: a linear
    regression of the target on the ridge's cross-fitted prediction and the latents (only the
    training subjects' targets and latents are seen). Its distance to brainlit's read-out is
    what the dynamics can add; no model reading a finite scan gets all of it.

    Args:
        alphas: Ridge penalties (leave-one-out).
        folds: Folds of the cross-fitting that gives the training subjects' ridge predictions.
        seed: Seed of the fold shuffling.
    """

    def __init__(self, alphas: Sequence[float] = tuple(np.logspace(-2, 5, 30)), folds: int = 5,
                 seed: int = 0) -> None:
        self.alphas, self.folds, self.seed = tuple(alphas), folds, seed

    def fit(self, roi_timeseries: Sequence[np.ndarray], y: Sequence[float], latents: np.ndarray) -> LatentOracle:
        """Fit on training series ([R, T] each), targets [N] and latent parameters [N, L]."""
        y = np.asarray(y, dtype=np.float64)
        self.tangent_ = fit_tangent(roi_timeseries)
        features = self._static(roi_timeseries)
        self.ridge_ = make_pipeline(StandardScaler(), RidgeCV(alphas=self.alphas))
        cv = KFold(min(self.folds, len(y)), shuffle=True, random_state=self.seed)
        crossfit = cross_val_predict(self.ridge_, features, y, cv=cv)
        self.ridge_.fit(features, y)
        self.stack_ = LinearRegression().fit(np.column_stack([crossfit, latents]), y)
        return self

    def _static(self, roi_timeseries: Sequence[np.ndarray]) -> np.ndarray:
        """Correlation FC, tangent FC at the training reference and autocorrelations ``[N, F]``."""
        return np.hstack([fc_features(roi_timeseries), tangent_features(self.tangent_, roi_timeseries),
                          lag_features(roi_timeseries)])

    def predict(self, roi_timeseries: Sequence[np.ndarray], latents: np.ndarray) -> np.ndarray:
        """Predictions [N] from series and the same latent parameters as in :meth:`fit`."""
        static = self.ridge_.predict(self._static(roi_timeseries))
        return self.stack_.predict(np.column_stack([static, latents]))

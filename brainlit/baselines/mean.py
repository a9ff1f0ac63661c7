"""The mean predictor: the floor any model has to beat."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class MeanPredictor:
    """Predicts the mean target of the training subjects, whatever the input."""

    def fit(self, roi_timeseries: Sequence[np.ndarray], y: Sequence[float]) -> MeanPredictor:
        """Store the training mean of ``y``; the time series are ignored."""
        self.mean_ = float(np.mean(np.asarray(y, dtype=np.float64)))
        return self

    def predict(self, roi_timeseries: Sequence[np.ndarray]) -> np.ndarray:
        """The training mean, once per subject: [N]."""
        return np.full(len(roi_timeseries), self.mean_)

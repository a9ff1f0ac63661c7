"""The classical dynamic-FC pipeline (Allen et al. 2014) into ridge: windowed FC, k-means states,
occupancy, dwell times, transitions and windowed-FC variability."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.cluster import KMeans
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from brainlit.baselines.tangent_ridge import fit_tangent, tangent_features


def windowed_fc(series: np.ndarray, window: int, step: int) -> np.ndarray:
    """Fisher-z correlation upper triangles of sliding windows: ``[R, T]`` -> ``[W, E]`` (a run
    shorter than ``window`` is one window; a flat ROI in a window correlates 0 there)."""
    series = np.asarray(series, dtype=np.float64)
    if series.shape[1] <= window:
        windows = series[None]
    else:
        windows = np.lib.stride_tricks.sliding_window_view(series, window, axis=1)[:, ::step].transpose(1, 0, 2)
    centred = windows - windows.mean(-1, keepdims=True)  # [W, R, window]
    with np.errstate(divide="ignore", invalid="ignore"):
        unit = np.nan_to_num(centred / np.linalg.norm(centred, axis=-1, keepdims=True))
    upper = np.triu_indices(series.shape[0], 1)
    return np.arctanh(np.clip((unit @ unit.transpose(0, 2, 1))[:, upper[0], upper[1]], -0.99, 0.99))


def state_summaries(states: np.ndarray, n_states: int) -> np.ndarray:
    """Fractional occupancy ``[K]``, mean dwell (in windows) ``[K]`` and transition rate ``[1]``
    of one subject's window-by-window state sequence ``[W]``."""
    changes = np.flatnonzero(np.diff(states)) + 1
    runs = np.split(states, changes)
    occupancy = np.bincount(states, minlength=n_states) / len(states)
    dwell = np.array([np.mean([len(r) for r in runs if r[0] == k] or [0.0]) for k in range(n_states)])
    return np.concatenate([occupancy, dwell, [len(changes) / max(len(states) - 1, 1)]])


class DynamicFCRidge:
    """Windowed-FC states (k-means on the training subjects' windows only) -> per-subject
    summaries -> ridge, beside static FC.

    Each subject's features: static tangent-space FC (reference from the training subjects),
    each edge's sd over windows (windowed-FC variability), and, from the state each window is
    nearest to, the fractional occupancy and mean dwell time of every state and the transition
    rate. Static FC is included so that the pipeline competes with brainlit's read-out on the
    same footing: the dynamic summaries alone miss the static signal every cohort has. Features are standardised on the training
    subjects, and ridge's penalty is chosen by an inner K-fold CV (mean absolute error).

    Args:
        window: Window length in volumes (Allen et al.: 22 TR of 2 s, 44 s).
        step: Volumes between window starts.
        n_states: k-means clusters (FC states).
        alphas: Ridge penalties tried by the inner CV.
        inner_folds: Folds of the inner CV.
        seed: Seed of k-means and the inner fold shuffling.
    """

    def __init__(self, window: int = 22, step: int = 2, n_states: int = 4,
                 alphas: Sequence[float] = tuple(np.logspace(-1, 5, 13)), inner_folds: int = 5,
                 seed: int = 0) -> None:
        self.window, self.step, self.n_states = window, step, n_states
        self.alphas, self.inner_folds, self.seed = tuple(alphas), inner_folds, seed

    def _windows(self, roi_timeseries: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each subject's windowed FC ``[W, E]``."""
        return [windowed_fc(np.asarray(s, dtype=np.float64), self.window, self.step) for s in roi_timeseries]

    def _features(self, roi_timeseries: Sequence[np.ndarray], windows: list[np.ndarray]) -> np.ndarray:
        """Tangent FC, windowed-FC sd and state summaries ``[N, F]`` (states from the training fit)."""
        rows = [np.concatenate([w.std(0), state_summaries(self.kmeans_.predict(w), self.n_states)])
                for w in windows]
        return np.hstack([tangent_features(self.tangent_, roi_timeseries), np.stack(rows)])

    def fit(self, roi_timeseries: Sequence[np.ndarray], y: Sequence[float]) -> DynamicFCRidge:
        """Fit the states on the training windows, then the ridge on the training subjects."""
        windows = self._windows(roi_timeseries)
        self.tangent_ = fit_tangent(roi_timeseries)
        self.kmeans_ = KMeans(self.n_states, n_init=3, random_state=self.seed).fit(np.vstack(windows))
        cv = KFold(min(self.inner_folds, len(y)), shuffle=True, random_state=self.seed)
        self.ridge_ = make_pipeline(StandardScaler(), RidgeCV(alphas=self.alphas, cv=cv,
                                                              scoring="neg_mean_absolute_error"))
        self.ridge_.fit(self._features(roi_timeseries, windows), np.asarray(y, dtype=np.float64))
        return self

    def predict(self, roi_timeseries: Sequence[np.ndarray]) -> np.ndarray:
        """Predictions [N]; each subject's windows are assigned to the training states."""
        return self.ridge_.predict(self._features(roi_timeseries, self._windows(roi_timeseries)))

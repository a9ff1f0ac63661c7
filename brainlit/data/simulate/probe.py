"""Simple probes of FC switching speed, to check that a dynamic cohort's signal is in the BOLD.

Diagnostics of the simulator, never features of a model: brainlit's network must learn such
things from the series itself. They know the mechanism (which ROIs share a network), which a
model of unknown data cannot.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def switching_course(series: np.ndarray, modules: np.ndarray, window: int = 10) -> np.ndarray:
    """The windowed between-minus-within-network correlation of one run ``[R, T]``, centred.

    Args:
        series: ROI time series ``[R, T]``.
        modules: Network of each ROI ``[R]``.
        window: Volumes per correlation window (windows start at every volume).
    """
    between = modules[:, None] != modules[None]
    within = ~between & ~np.eye(len(modules), dtype=bool)
    course = []
    for start in range(series.shape[1] - window + 1):
        fc = np.corrcoef(series[:, start : start + window])
        course.append(fc[between].mean() - fc[within].mean())
    return np.array(course) - np.mean(course)


def _autocorrelation(course: np.ndarray, lag: int) -> float:
    return float((course[lag:] * course[:-lag]).mean() / course.var())


def switching_probe(series: np.ndarray, modules: np.ndarray, window: int = 10, lag: int = 10) -> float:
    """The lag-``lag`` autocorrelation of :func:`switching_course`: slow switching between
    integrated and segregated states keeps it high.

    Args:
        series: ROI time series ``[R, T]``.
        modules: Network of each ROI ``[R]``.
        window: Volumes per correlation window.
        lag: Window starts between the two ends of the autocorrelation.
    """
    return _autocorrelation(switching_course(series, modules, window), lag)


def switching_features(
    series: np.ndarray,
    modules: np.ndarray,
    windows: Sequence[int] = (10, 16, 22),
    lags: Sequence[int] = tuple(range(1, 31, 2)),
) -> np.ndarray:
    """Many probes at once: per window, the course's autocorrelation at every lag and its sd.

    Args:
        series: ROI time series ``[R, T]``.
        modules: Network of each ROI ``[R]``.
        windows: Volumes per correlation window.
        lags: Autocorrelation lags (volumes).

    Returns:
        ``[len(windows) * (len(lags) + 1)]`` features.
    """
    features = []
    for window in windows:
        course = switching_course(series, modules, window)
        features += [_autocorrelation(course, lag) for lag in lags] + [course.std()]
    return np.array(features)

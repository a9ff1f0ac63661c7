"""A simple probe of FC switching speed, to check that a dynamic cohort's signal is in the BOLD.

A diagnostic of the simulator, never a feature of a model: brainlit's network must learn such
things from the series itself.
"""

from __future__ import annotations

import numpy as np


def switching_probe(series: np.ndarray, modules: np.ndarray, window: int = 10, lag: int = 10) -> float:
    """The lag-``lag`` autocorrelation of the windowed (``window`` volumes) between-minus-within-
    network correlation of one run ``[R, T]``: slow switching between integrated and segregated
    states keeps it high.

    Args:
        series: ROI time series ``[R, T]``.
        modules: Network of each ROI ``[R]``.
        window: Volumes per correlation window (windows start at every volume).
        lag: Window starts between the two ends of the autocorrelation.
    """
    between = modules[:, None] != modules[None]
    within = ~between & ~np.eye(len(modules), dtype=bool)
    course = []
    for start in range(series.shape[1] - window + 1):
        fc = np.corrcoef(series[:, start : start + window])
        course.append(fc[between].mean() - fc[within].mean())
    course = np.array(course) - np.mean(course)
    return float((course[lag:] * course[:-lag]).mean() / course.var())

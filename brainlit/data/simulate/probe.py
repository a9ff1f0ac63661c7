"""Simple probes of FC switching speed, to check that a dynamic cohort's signal is in the BOLD.

Diagnostics of the simulator, never features of a model: brainlit's network must learn such
things from the series itself. They know the mechanism (which ROIs share a network), which a
model of unknown data cannot.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brainlit.data.simulate.visible import network_groups


def edge_course(series: np.ndarray, first: np.ndarray, second: np.ndarray, window: int = 10) -> np.ndarray:
    """The windowed mean correlation of the ``first`` edges minus that of the ``second``
    edges, centred: one value per window start ``[T - window + 1]``.

    Args:
        series: ROI time series ``[R, T]``.
        first: Edges ``[R, R]`` bool.
        second: Edges ``[R, R]`` bool.
        window: Volumes per correlation window (windows start at every volume).
    """
    course = []
    for start in range(series.shape[1] - window + 1):
        fc = np.corrcoef(series[:, start : start + window])
        course.append(fc[first].mean() - fc[second].mean())
    return np.array(course) - np.mean(course)


def switching_course(series: np.ndarray, modules: np.ndarray, window: int = 10) -> np.ndarray:
    """The windowed between-minus-within-network correlation of one run ``[R, T]``, centred.

    Args:
        series: ROI time series ``[R, T]``.
        modules: Network of each ROI ``[R]``.
        window: Volumes per correlation window (windows start at every volume).
    """
    between = modules[:, None] != modules[None]
    within = ~between & ~np.eye(len(modules), dtype=bool)
    return edge_course(series, between, within, window)


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


def state_edges(modules: np.ndarray, dynamics: str) -> tuple[np.ndarray, np.ndarray]:
    """The edges ``[R, R]`` whose correlation a mechanism raises in state 0 and in state 1:
    between- and within-network edges for ``switching`` (state 0 integrated); for
    ``visible``, the between-network edges that share a fluctuation in that state only."""
    between = modules[:, None] != modules[None]
    if dynamics == "switching":
        return between, ~between & ~np.eye(len(modules), dtype=bool)
    if dynamics != "visible":
        raise ValueError(f"dynamics {dynamics!r} has no states; use 'switching' or 'visible'")
    groups = network_groups(int(modules.max()) + 1)[:, modules]  # [2, R]
    joined = groups[:, :, None] == groups[:, None, :]  # [2, R, R]
    return between & joined[0] & ~joined[1], between & joined[1] & ~joined[0]


def state_tracking(series: np.ndarray, edges: tuple[np.ndarray, np.ndarray], states: np.ndarray,
                   window: int = 10, lag: int = 2) -> float:
    """How well windowed FC tracks the true state: the Pearson r of :func:`edge_course` over
    the mechanism's ``edges`` (:func:`state_edges`) with the share of each window's volumes in
    state 0, ``lag`` volumes earlier (the BOLD shows a state about one HRF peak later). NaN for
    a run that never changes state.

    Args:
        series: ROI time series ``[R, T]``.
        edges: The edges that state 0 and state 1 raise, ``[R, R]`` bool each.
        states: True state (0 or 1) at each volume ``[T]``.
        window: Volumes per correlation window.
        lag: Volumes between a state and the windows that show it.
    """
    course = edge_course(series, *edges, window)
    in_first = np.convolve(states == 0, np.ones(window) / window, mode="valid")
    course, in_first = course[lag:], in_first[: len(in_first) - lag]
    if in_first.std() == 0:
        return float("nan")
    return float(np.corrcoef(course, in_first)[0, 1])

"""Conformal prediction intervals calibrated on out-of-fold predictions (optionally Mondrian on bins of the centre).

Evidence for the defaults: ``docs/research/conformal.md``.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from brainlit.errors import BrainlitConfigError, BrainlitDataError
from brainlit.sites.state import State, check_state, header

log = logging.getLogger(__name__)

Centre = Literal["unbiased", "prediction"]
MIN_SLOPE = 0.05  # below it (pred - intercept) / slope is unstable: the predictions barely follow y


class ConformalIntervals:
    """Intervals with a guaranteed marginal coverage that also holds at the ends of the target range.

    Fit on out-of-fold pairs ``(y_true, y_pred)``; at apply time only ``y_pred`` is needed.
    Brain-age predictions regress to the mean, so the error ``y - y_pred`` grows at both ends
    of the age range and an interval centred on ``y_pred`` under-covers the youngest and
    oldest. ``centre="unbiased"`` centres each interval on ``(y_pred - intercept) / slope``
    instead, with ``y_pred = slope * y + intercept`` fit on the calibration pairs: its error
    has the same spread at every true value when the model's noise does, so coverage holds
    in each true-age tertile, and under a shift of the new cohort's ages, at the price of
    wider intervals. ``"prediction"`` keeps ``y_pred`` as the centre (narrower, marginal
    coverage only). With ``n_bins > 1`` the scores ``|y - centre|`` are split into equal-count
    bins of the centre (Mondrian conformal: the width may follow noise that grows along the
    range); one bin is the default, since the unbiased centre's error has one spread and each
    bin's finite-sample rank widens the intervals. The sorted scores are stored, so any level
    can be asked at apply time. The calibration fit is cross-fitted (``folds``), so no score
    comes from a centre fit on its own subject.

    Written here, not with MAPIE or crepes: both wrap a fitted estimator and save by pickle,
    whereas this needs only the pairs and stores two numbers and the scores.

    Args:
        level: Default coverage of :meth:`interval` (0-1).
        n_bins: Equal-count bins of the centre, each calibrated on its own (1: plain split).
        centre: ``"unbiased"`` (calibrated, see above) or ``"prediction"``.
        min_per_bin: Fewest calibration pairs a bin may hold; :meth:`fit` refuses fewer.
        folds: Folds of the cross-fitted calibration line.
        seed: Seed of the fold assignment.
    """

    def __init__(self, level: float = 0.9, n_bins: int = 1, centre: Centre = "unbiased",
                 min_per_bin: int = 30, folds: int = 5, seed: int = 0) -> None:
        _check_level(level)
        if centre not in ("unbiased", "prediction"):
            raise BrainlitConfigError(f"ConformalIntervals: centre must be 'unbiased' or 'prediction', got {centre!r}.")
        if n_bins < 1 or folds < 2:
            raise BrainlitConfigError(f"ConformalIntervals: n_bins must be >= 1 and folds >= 2, got {n_bins}, {folds}.")
        self.level, self.n_bins, self.centre = level, n_bins, centre
        self.min_per_bin, self.folds, self.seed = min_per_bin, folds, seed

    def fit(self, y_true: ArrayLike, y_pred: ArrayLike) -> ConformalIntervals:
        """Calibrate on out-of-fold pairs ``y_true [N]``, ``y_pred [N]`` (in-sample ones are too narrow).

        Raises:
            BrainlitDataError: pairs not finite or of unequal length, predictions that do not
                rise with the target, or a bin with fewer than ``min_per_bin`` pairs.
        """
        y_true, y_pred = _pairs(y_true, y_pred)
        self.slope_, self.intercept_ = _line(y_true, y_pred, self.centre)
        centres = self._cross_fitted_centres(y_true, y_pred)
        self.edges_ = np.quantile(centres, np.linspace(0, 1, self.n_bins + 1)[1:-1])
        bins = self._bins(centres)
        counts = np.bincount(bins, minlength=self.n_bins)
        if counts.min() < self.min_per_bin:
            raise BrainlitDataError(
                f"ConformalIntervals: a calibration bin holds {counts.min()} pairs, fewer than "
                f"min_per_bin={self.min_per_bin} ({len(y_true)} pairs in {self.n_bins} bins): "
                "use fewer n_bins or calibrate on more out-of-fold predictions.")
        scores = np.abs(y_true - centres)
        self.scores_ = [np.sort(scores[bins == b]) for b in range(self.n_bins)]
        self.range_ = (float(y_true.min()), float(y_true.max()))
        return self

    def centre_of(self, y_pred: ArrayLike) -> np.ndarray:
        """Each interval's centre ``[N]``: ``(y_pred - intercept) / slope`` (or ``y_pred``)."""
        return (np.asarray(y_pred, dtype=np.float64) - self.intercept_) / self.slope_

    def interval(self, y_pred: ArrayLike, level: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(lower [N], upper [N])`` around :meth:`centre_of` ``y_pred`` at ``level`` (default: the fit's),
        kept within the calibration cohort's range of the target: no interval claims ages the
        model never saw (a subject outside that range is flagged by ``apply`` instead).

        A bin with too few scores for ``level`` gives an infinite half-width, with a warning.
        """
        level = self.level if level is None else level
        _check_level(level)
        centre = self.centre_of(y_pred)
        widths = np.array([_conformal_quantile(s, level, b) for b, s in enumerate(self.scores_)])
        half = widths[self._bins(centre)]
        low, high = self.range_
        return np.clip(centre - half, low, high), np.clip(centre + half, low, high)

    def _bins(self, centre: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.edges_, centre, side="right")

    def _cross_fitted_centres(self, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        """Each pair's centre from the calibration line fit on the other folds."""
        if self.centre == "prediction":
            return y_pred.copy()
        fold = np.random.default_rng(self.seed).permutation(len(y_true)) % self.folds
        centres = np.empty_like(y_pred)
        for k in range(self.folds):
            slope, intercept = _line(y_true[fold != k], y_pred[fold != k], self.centre)
            centres[fold == k] = (y_pred[fold == k] - intercept) / slope
        return centres

    def to_state(self) -> State:
        """JSON values and arrays (``edges``, ``scores`` of all bins in bin order, ``counts``)."""
        json_values = {**header("ConformalIntervals"), "level": self.level, "n_bins": self.n_bins,
                       "centre": self.centre, "min_per_bin": self.min_per_bin, "folds": self.folds,
                       "seed": self.seed, "slope": self.slope_, "intercept": self.intercept_,
                       "range": list(self.range_)}
        arrays = {"edges": self.edges_, "scores": np.concatenate(self.scores_),
                  "counts": np.array([len(s) for s in self.scores_], dtype=np.int64)}
        return json_values, arrays

    @classmethod
    def from_state(cls, json_values: dict, arrays: dict[str, np.ndarray]) -> ConformalIntervals:
        """The fitted intervals back from :meth:`to_state`'s output."""
        stored = check_state(json_values, arrays, "ConformalIntervals", ("edges", "scores", "counts"))
        keys = ("level", "n_bins", "centre", "min_per_bin", "folds", "seed")
        intervals = cls(**{key: json_values[key] for key in keys})
        intervals.slope_, intervals.intercept_ = float(json_values["slope"]), float(json_values["intercept"])
        intervals.range_ = tuple(float(v) for v in json_values["range"])
        intervals.edges_ = stored["edges"]
        starts = np.cumsum(stored["counts"].astype(int))[:-1]
        intervals.scores_ = np.split(stored["scores"], starts)
        return intervals


def _check_level(level: float) -> None:
    if not 0 < level < 1:
        raise BrainlitConfigError(f"ConformalIntervals: level must be between 0 and 1, got {level}.")


def _pairs(y_true: ArrayLike, y_pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 ``[N]`` arrays of calibration pairs."""
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    if y_true.shape != y_pred.shape:
        raise BrainlitDataError(f"ConformalIntervals.fit: {y_true.size} true values but {y_pred.size} predictions.")
    bad = int((~np.isfinite(y_true) | ~np.isfinite(y_pred)).sum())
    if bad:
        raise BrainlitDataError(f"ConformalIntervals.fit: {bad} calibration pairs are missing or not finite: "
                                "pass only subjects with both a true value and an out-of-fold prediction.")
    return y_true, y_pred


def _line(y_true: np.ndarray, y_pred: np.ndarray, centre: Centre) -> tuple[float, float]:
    """``(slope, intercept)`` of ``y_pred = slope * y_true + intercept`` ((1, 0) for ``"prediction"``)."""
    if centre == "prediction":
        return 1.0, 0.0
    slope, intercept = np.polyfit(y_true, y_pred, deg=1)
    if slope < MIN_SLOPE:
        raise BrainlitDataError(
            f"ConformalIntervals.fit: the predictions barely rise with the target (calibration slope "
            f"{slope:.3f} < {MIN_SLOPE}), so the unbiased centre is unbounded: use centre='prediction'.")
    return float(slope), float(intercept)


def _conformal_quantile(sorted_scores: np.ndarray, level: float, bin_index: int) -> float:
    """The ``ceil((n + 1) level)``-th smallest score: the split-conformal half-width of a bin."""
    n = len(sorted_scores)
    rank = int(np.ceil((n + 1) * level - 1e-9))  # 100 * 0.55 is 55.00000000000001
    if rank > n:
        log.warning("ConformalIntervals: bin %d has %d calibration scores, too few for level %.3g "
                    "(needs %d): its intervals are unbounded.", bin_index, n, level, rank)
        return float("inf")
    return float(sorted_scores[rank - 1])

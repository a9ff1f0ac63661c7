"""Scores of predictions, the same for brainlit and every baseline: MAE, r, age-partialled r."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

SCORE_COLUMNS = ["n_test", "mae", "pearson_r", "pearson_r_age_partial"]


def pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Pearson correlation; NaN when either side is constant (e.g. the mean predictor) or N < 2."""
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    if len(y_true) < 2 or np.ptp(y_true) == 0 or np.ptp(y_pred) == 0:
        return float("nan")
    return float(np.corrcoef(y_true, y_pred)[0, 1])


def partial_r(y_true: np.ndarray, y_pred: np.ndarray, covariate: np.ndarray) -> float:
    """Pearson r of ``y_true`` and ``y_pred`` with a covariate regressed out of both.

    The first-order partial correlation ``(r_tp - r_tc r_pc) / sqrt((1 - r_tc^2)(1 - r_pc^2))``
    computed as the correlation of least-squares residuals on ``[1, covariate]``; NaN when
    undefined (fewer than 4 subjects, or a side fully explained by the covariate).
    """
    y_true, y_pred, covariate = (np.asarray(v, dtype=float) for v in (y_true, y_pred, covariate))
    if len(y_true) < 4 or np.ptp(covariate) == 0:
        return float("nan")
    design = np.column_stack([np.ones_like(covariate), covariate])

    def residual(values: np.ndarray) -> np.ndarray:
        return values - design @ np.linalg.lstsq(design, values, rcond=None)[0]

    res_true, res_pred = residual(y_true), residual(y_pred)
    scale = np.abs(y_true).max() + np.abs(y_pred).max() + 1.0
    if np.abs(res_true).max() < 1e-9 * scale or np.abs(res_pred).max() < 1e-9 * scale:
        return float("nan")
    return pearson_r(res_true, res_pred)


def score(y_true: np.ndarray, y_pred: np.ndarray, age: np.ndarray | None = None) -> dict[str, float]:
    """``n_test``, ``mae``, ``pearson_r`` and, given the subjects' true ages, the age-partialled r."""
    y_true, y_pred = np.asarray(y_true, dtype=float), np.asarray(y_pred, dtype=float)
    return {
        "n_test": len(y_true),
        "mae": float(np.mean(np.abs(y_pred - y_true))) if len(y_true) else math.nan,
        "pearson_r": pearson_r(y_true, y_pred),
        "pearson_r_age_partial": math.nan if age is None else partial_r(y_true, y_pred, age),
    }


def score_predictions(predictions: pd.DataFrame) -> pd.DataFrame:
    """One row of scores per (model, target, repeat, fold) of a predictions table.

    Args:
        predictions: Columns model, target, repeat, fold, subject_id, y_true, y_pred and
            ``age`` (the subject's true age; the partialled r is left out for the age target).
    """
    keys = ["model", "target", "repeat", "fold"]
    rows = []
    for key, group in predictions.groupby(keys, sort=False):
        age = None if key[1] == "age" or "age" not in group else group["age"].to_numpy()
        if age is not None and not np.isfinite(age).all():
            age = None
        rows.append({**dict(zip(keys, key, strict=True)),
                     **score(group["y_true"].to_numpy(), group["y_pred"].to_numpy(), age)})
    return pd.DataFrame(rows, columns=keys + SCORE_COLUMNS)


def corrected_paired_interval(
    differences: np.ndarray, test_train_ratio: float, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean and CI of per-fold paired differences, with Nadeau & Bengio's (2003) correction.

    Cross-validation folds share training subjects, so their scores are correlated and the
    plain t-interval is too narrow. The corrected resampled t-test widens the variance of the
    mean from ``s^2 / J`` to ``s^2 (1 / J + n_test / n_train)``.

    Args:
        differences: One paired difference per (repeat, fold).
        test_train_ratio: ``n_test / n_train`` of a fold (``1 / (k - 1)`` for k-fold).
        level: Confidence level.

    Returns:
        ``(mean, low, high)``; ``low`` and ``high`` are NaN with fewer than two differences.
    """
    values = np.asarray(differences, dtype=float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return (math.nan,) * 3
    mean = float(values.mean())
    if len(values) < 2:
        return mean, math.nan, math.nan
    variance = values.var(ddof=1) * (1 / len(values) + test_train_ratio)
    half = stats.t.ppf(0.5 + level / 2, len(values) - 1) * math.sqrt(variance)
    return mean, mean - half, mean + half

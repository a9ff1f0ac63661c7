"""benchmarks/beyond_fc.py: what the time series hold beyond FC, in closed form."""

import sys

import numpy as np
from scipy.signal import lfilter

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import beyond_fc  # noqa: E402


def _ar1(phi: np.ndarray, n_rois: int, length: int, rng: np.random.Generator) -> np.ndarray:
    """Independent AR(1) ROIs, one coefficient per subject: ``[N, R, T]``."""
    noise = rng.standard_normal((len(phi), n_rois, length))
    return np.stack([lfilter([1.0], [1.0, -p], n, axis=-1) for p, n in zip(phi, noise, strict=True)])


def test_dynamics_features_are_each_rois_lag_autocorrelation():
    series = _ar1(np.array([0.8]), n_rois=3, length=20000, rng=np.random.default_rng(0))
    features = beyond_fc.dynamics_features(series, max_lag=2)  # [1, R * 2]: lag 1 then lag 2
    assert features.shape == (1, 6)
    np.testing.assert_allclose(features[0], [0.8] * 3 + [0.64] * 3, atol=0.03)


def test_a_target_carried_by_dynamics_alone_is_found_by_dynamics_and_missed_by_fc():
    rng = np.random.default_rng(1)
    age = rng.uniform(18, 88, 60)
    series = _ar1(0.2 + 0.6 * (age - 18) / 70, n_rois=6, length=150, rng=rng)  # no coupling at all
    rows = beyond_fc.evaluate(series, {"age": age}, folds=3, repeats=1, max_lag=2)
    mae = {row["model"]: row["mae"] for row in beyond_fc.summarize(rows, 3)}
    assert mae["ridge on dynamics"] < 0.5 * mae["ridge on fc"]
    assert mae["ridge on fc + dynamics"] < mae["ridge on fc"]
    assert mae[f"ridge on {beyond_fc.STACKED}"] < 0.5 * mae["ridge on fc"]  # the read-out's stacked fit finds it too
    by_fold = {(r["fold"], r["model"]): r["mae"] for r in rows}
    averaged = [by_fold[f, f"ridge on {beyond_fc.AVERAGE}"] for f in range(3)]
    parts = [by_fold[f, "ridge on fc + dynamics"] + by_fold[f, "ridge on tangent + dynamics"] for f in range(3)]
    assert all(a <= p / 2 + 1e-9 for a, p in zip(averaged, parts, strict=True))  # MAE is convex


def test_the_tangent_reference_never_sees_the_test_subjects():
    rng = np.random.default_rng(2)
    series = rng.standard_normal((12, 4, 80))
    train = np.arange(8)
    before = beyond_fc.tangent_features(series, train)
    series[8:] *= rng.uniform(2, 5, (4, 4, 1))  # a signal planted in the test subjects only
    after = beyond_fc.tangent_features(series, train)
    np.testing.assert_allclose(after[:8], before[:8])
    assert not np.allclose(after[8:], before[8:])

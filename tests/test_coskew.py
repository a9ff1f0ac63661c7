"""Co-skewness features and the ridge that reads them beside tangent FC."""

import sys

import numpy as np
import pytest

from brainlit.baselines import CoskewRidge, MeanPredictor, TangentRidge, coskewness_features
from brainlit.baselines.coskew_ridge import coskewness_matrix, coskewness_subspace
from tests.conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
from higher_order import skewed_cohort  # noqa: E402


def test_coskewness_of_a_known_signal_is_exact():
    a = np.array([-1.0, -1.0, 2.0] * 2)  # z = a / sqrt(2): skewness 2 / 2^1.5
    b = np.array([1.0, -1.0] * 3)  # symmetric: no skewness, and b^2 is constant
    s = 2 / 2**1.5
    expected = np.array([[s, -s, 0.0],  # row i, column j: E[z_i^2 z_j]
                         [s, -s, 0.0],
                         [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(coskewness_matrix(np.stack([a, -a, b])), expected, atol=1e-12)


def test_coskewness_of_a_skewed_source_and_its_mixture_matches_theory():
    rng = np.random.default_rng(0)
    e = rng.exponential(size=200_000) - 1.0  # skewness 2
    mixed = (e + rng.standard_normal(200_000)) / np.sqrt(2)
    m = coskewness_matrix(np.stack([e, mixed]))
    np.testing.assert_allclose(m, [[2.0, 2 / np.sqrt(2)],  # E[e^2 m] = E[e^3] / sqrt(2)
                                   [1.0, 2 / 2**1.5]], atol=0.15)  # E[m^2 e] = E[e^3] / 2


def test_features_have_one_value_per_ordered_roi_pair_or_subspace_pair():
    series, _ = skewed_cohort(n_subjects=6, n_rois=5, n_volumes=40, seed=0)
    assert coskewness_features(list(series)).shape == (6, 25)
    projection = coskewness_subspace(list(series), 2)
    np.testing.assert_allclose(projection.T @ projection, np.eye(2), atol=1e-10)
    assert coskewness_features(list(series), projection).shape == (6, 4)
    with pytest.raises(ValueError, match="n_components"):
        coskewness_subspace(list(series), 6)


def test_the_subspace_finds_the_direction_of_a_shared_skewed_source():
    series, _ = skewed_cohort(n_subjects=40, n_rois=8, n_volumes=400, seed=1)
    loadings = np.random.default_rng(1).uniform(0.3, 0.8, 8)  # the cohort's first draw
    direction = coskewness_subspace(list(series), 1)[:, 0]
    assert abs(direction @ loadings) / np.linalg.norm(loadings) > 0.95


def test_coskew_ridge_reads_a_target_that_only_coskewness_carries():
    series, y = skewed_cohort(n_subjects=90, n_rois=8, n_volumes=300, seed=2)
    train, test = slice(0, 70), slice(70, 90)

    def mae(model) -> float:
        return float(np.abs(model.fit(list(series[train]), y[train]).predict(list(series[test])) - y[test]).mean())

    floor = mae(MeanPredictor())
    assert mae(CoskewRidge()) < 0.7 * floor
    assert mae(TangentRidge()) > 0.85 * floor  # every subject has the same expected covariance

"""Conformal intervals: calibrate on out-of-fold (age, predicted age), cover a new cohort at every age."""

import json

import numpy as np
import pandas as pd
import pytest

from brainlit.errors import BrainlitConfigError, BrainlitDataError
from brainlit.experiment.final import interval_calibration
from brainlit.sites.conformal import ConformalIntervals


def shrunk_predictions(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Brain-age predictions that regress to the mean, as such models' do."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(18, 88, n)
    return age, 0.6 * age + 21 + rng.normal(0, 9, n)


def coverage_by_tertile(intervals: ConformalIntervals, age: np.ndarray, pred: np.ndarray,
                        level: float | None = None) -> tuple[float, list[float]]:
    lower, upper = intervals.interval(pred, level)
    covered = (lower <= age) & (age <= upper)
    tertile = np.searchsorted(np.quantile(age, [1 / 3, 2 / 3]), age)
    return covered.mean(), [covered[tertile == t].mean() for t in range(3)]


def test_intervals_cover_a_new_cohort_overall_and_in_each_age_tertile():
    intervals = ConformalIntervals(level=0.9, n_bins=3).fit(*shrunk_predictions(600, seed=0))
    overall, tertiles = coverage_by_tertile(intervals, *shrunk_predictions(6000, seed=1))
    assert 0.87 <= overall <= 0.93
    assert min(tertiles) >= 0.85, tertiles


def test_intervals_centred_on_the_prediction_miss_the_oldest_and_youngest():
    intervals = ConformalIntervals(centre="prediction", n_bins=1).fit(*shrunk_predictions(600, seed=0))
    overall, tertiles = coverage_by_tertile(intervals, *shrunk_predictions(6000, seed=1))
    assert 0.87 <= overall <= 0.93
    assert tertiles[1] > 0.94 and min(tertiles[0], tertiles[2]) < 0.88  # why the default is "unbiased"


def test_the_centre_undoes_the_shrinkage_towards_the_mean():
    intervals = ConformalIntervals().fit(*shrunk_predictions(2000, seed=0))
    assert intervals.slope_ == pytest.approx(0.6, abs=0.03)
    assert intervals.centre_of([0.6 * 30 + 21, 0.6 * 80 + 21]) == pytest.approx([30, 80], abs=2.0)


def test_other_levels_come_from_the_stored_scores_and_nest():
    intervals = ConformalIntervals(level=0.9).fit(*shrunk_predictions(600, seed=0))
    age, pred = shrunk_predictions(6000, seed=1)
    assert coverage_by_tertile(intervals, age, pred, level=0.5)[0] == pytest.approx(0.5, abs=0.04)
    narrow, wide = intervals.interval(pred, 0.5), intervals.interval(pred, 0.95)
    assert np.all(wide[0] <= narrow[0]) and np.all(narrow[1] <= wide[1])  # equal only where clipped to the ages seen
    assert np.mean(wide[0] < narrow[0]) > 0.5 and np.mean(narrow[1] < wide[1]) > 0.5


def test_state_is_json_and_arrays_and_gives_the_same_intervals_back():
    intervals = ConformalIntervals().fit(*shrunk_predictions(300, seed=0))
    json_values, arrays = intervals.to_state()
    json_values = json.loads(json.dumps(json_values))
    assert all(isinstance(a, np.ndarray) for a in arrays.values())
    loaded = ConformalIntervals.from_state(json_values, arrays)
    pred = np.array([30.0, 52.0, 75.0])
    for level in (0.8, 0.9, 0.95):
        np.testing.assert_allclose(loaded.interval(pred, level), intervals.interval(pred, level))


def test_too_few_calibration_pairs_per_bin_are_refused_with_the_fix():
    with pytest.raises(BrainlitDataError, match="min_per_bin=30.*fewer n_bins"):
        ConformalIntervals(n_bins=3).fit(*shrunk_predictions(60, seed=0))


def test_a_level_too_high_for_a_bin_gives_every_age_seen_and_a_warning(caplog):
    intervals = ConformalIntervals(n_bins=1, min_per_bin=10).fit(*shrunk_predictions(40, seed=0))
    lower, upper = intervals.interval([50.0], level=0.99)
    ages = shrunk_predictions(40, seed=0)[0]
    assert (lower[0], upper[0]) == (ages.min(), ages.max())  # every age the calibration saw
    assert "too few for level 0.99" in caplog.text


def test_bad_calibration_pairs_and_options_name_what_to_fix():
    with pytest.raises(BrainlitDataError, match="2 calibration pairs are missing"):
        ConformalIntervals(n_bins=1, min_per_bin=1).fit([20, np.nan, 40, 50], [30, 35, np.nan, 45])
    age, _ = shrunk_predictions(100, seed=0)
    with pytest.raises(BrainlitDataError, match="centre='prediction'"):
        ConformalIntervals(n_bins=1).fit(age, np.full(100, 53.0))  # a model that predicts the mean
    with pytest.raises(BrainlitConfigError, match="level must be between 0 and 1"):
        ConformalIntervals(level=90)


def test_a_final_model_whose_predictions_ignore_age_still_gets_intervals_centred_on_them():
    rng = np.random.default_rng(3)
    truth = pd.DataFrame({"age": rng.uniform(18, 88, 40)})
    flat = pd.DataFrame({"age": 50 + rng.normal(0, 1, 40)})  # a tiny cohort's model that learnt nothing
    intervals = interval_calibration(truth, flat)["age"]
    assert intervals.centre == "prediction"
    lower, upper = intervals.interval(flat["age"].to_numpy())
    assert np.all(lower <= flat["age"]) and np.all(flat["age"] <= upper)

"""Scores shared by brainlit and the baselines: MAE, r, age-partialled r, paired intervals."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from brainlit.metrics import corrected_paired_interval, partial_r, pearson_r, score_predictions


def test_partial_r_matches_the_first_order_formula():
    rng = np.random.default_rng(0)
    age = rng.uniform(18, 88, 300)
    truth = -0.6 * (age - 50) / 20 + rng.normal(size=300)
    pred = 0.8 * truth + 0.5 * (age - 50) / 20 + rng.normal(size=300)
    r_tp, r_ta, r_pa = (np.corrcoef(a, b)[0, 1] for a, b in ((truth, pred), (truth, age), (pred, age)))
    by_hand = (r_tp - r_ta * r_pa) / math.sqrt((1 - r_ta**2) * (1 - r_pa**2))
    assert partial_r(truth, pred, age) == pytest.approx(by_hand, abs=1e-10)
    assert abs(partial_r(truth, pred, age) - r_tp) > 0.05  # the covariate matters here


def test_an_age_predictor_scores_well_on_a_cognitive_score_but_not_once_age_is_partialled():
    rng = np.random.default_rng(1)
    age = rng.uniform(18, 88, 400)
    cognition = -0.7 * (age - age.mean()) / age.std() + 0.7 * rng.normal(size=400)
    pred_from_age_only = -(age - age.mean()) / age.std()  # knows age, nothing else
    assert pearson_r(cognition, pred_from_age_only) > 0.6
    assert math.isnan(partial_r(cognition, pred_from_age_only, age))  # fully explained by age
    noisy = pred_from_age_only + 0.01 * rng.normal(size=400)
    assert abs(partial_r(cognition, noisy, age)) < 0.15


def test_corrected_interval_is_wider_than_the_plain_t_interval():
    diffs = np.array([-0.5, -0.2, -0.4, 0.1, -0.3, -0.6])
    mean, low, high = corrected_paired_interval(diffs, test_train_ratio=0.5)
    sd = diffs.std(ddof=1)
    half = stats.t.ppf(0.975, 5) * sd * math.sqrt(1 / 6 + 0.5)
    assert mean == pytest.approx(diffs.mean())
    assert (low, high) == pytest.approx((mean - half, mean + half))
    plain = stats.t.ppf(0.975, 5) * sd / math.sqrt(6)
    assert high - low > 2 * plain
    assert all(math.isnan(v) for v in corrected_paired_interval(np.array([0.3]), 0.5)[1:])


def test_score_predictions_one_row_per_fold_with_partial_r_except_for_age():
    rng = np.random.default_rng(2)
    rows = []
    for target in ("age", "fluid_intelligence"):
        for fold in range(2):
            age = rng.uniform(18, 88, 10)
            truth = age if target == "age" else rng.normal(30, 6, 10)
            rows.append(pd.DataFrame({"model": "m", "target": target, "repeat": 0, "fold": fold,
                                      "subject_id": [f"s{i}" for i in range(10)], "y_true": truth,
                                      "y_pred": truth + rng.normal(size=10), "age": age}))
    scores = score_predictions(pd.concat(rows)).set_index(["target", "fold"])
    assert len(scores) == 4 and (scores["n_test"] == 10).all()
    assert scores.loc[("age", 0), "pearson_r_age_partial"] != scores.loc[("age", 0), "pearson_r_age_partial"]
    assert np.isfinite(scores.loc["fluid_intelligence", "pearson_r_age_partial"]).all()
    assert (scores["mae"] > 0).all()

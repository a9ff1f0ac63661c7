"""Tangent ridge, kernel ridge on FC, dynamic-FC ridge and the mean predictor, run on given folds."""

import numpy as np
import pandas as pd
import pytest

from brainlit.baselines import (
    BASELINES,
    PREDICTION_COLUMNS,
    FCKernelRidge,
    MeanPredictor,
    TangentRidge,
    fc_features,
    predict_baselines,
)
from brainlit.errors import BrainlitDataError
from brainlit.metrics import score_predictions


def _linear_fc_cohort(n_subjects=90, n_rois=4, n_volumes=200, seed=0):
    """ROI 0-1 correlation rises linearly with age; the rest is noise."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 80, n_subjects)
    series = {}
    for i, a in enumerate(age):
        rho = 0.9 * (a - 50) / 30  # in [-0.9, 0.9]
        z = rng.standard_normal((n_rois, n_volumes))
        z[1] = rho * z[0] + np.sqrt(1 - rho**2) * z[1]
        series[f"sub-{i:03d}"] = z
    return series, pd.Series(age, index=list(series), name="age")


def _folds(ids, n_folds=3):
    return {
        k: ([s for j, s in enumerate(ids) if j % n_folds != k], ids[k::n_folds])
        for k in range(n_folds)
    }


def test_fc_features_are_fisher_z_of_the_upper_triangle():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal(500), rng.standard_normal(500)
    series = np.stack([a, a + b, np.ones(500), a])  # ROI 2 is flat, ROI 3 copies ROI 0
    features = fc_features([series])
    assert features.shape == (1, 6)  # (0,1) (0,2) (0,3) (1,2) (1,3) (2,3)
    assert features[0, 0] == pytest.approx(np.arctanh(np.corrcoef(a, a + b)[0, 1]))
    assert features[0, 1] == 0.0 and features[0, 5] == 0.0  # flat ROI
    assert features[0, 2] == pytest.approx(np.arctanh(0.999))  # r = 1 clipped, finite


@pytest.mark.parametrize("kernel", ["rbf", "linear"])
def test_kernel_ridge_beats_the_mean_on_a_linear_fc_age_relation(kernel):
    series, age = _linear_fc_cohort()
    ids = list(series)
    train, test = ids[:60], ids[60:]
    model = FCKernelRidge(kernel=kernel).fit([series[s] for s in train], age[train])
    pred = model.predict([series[s] for s in test])
    mean_mae = np.abs(age[test] - age[train].mean()).mean()
    assert np.abs(pred - age[test]).mean() < 0.5 * mean_mae
    assert np.corrcoef(pred, age[test])[0, 1] > 0.8
    assert set(model.best_params_) >= {"ridge__alpha"}


def test_mean_predictor_predicts_the_training_mean():
    model = MeanPredictor().fit([np.zeros((2, 5))] * 3, [1.0, 2.0, 6.0])
    assert np.array_equal(model.predict([np.ones((2, 5))] * 4), np.full(4, 3.0))


def test_tangent_ridge_beats_the_mean_on_a_linear_fc_age_relation():
    series, age = _linear_fc_cohort()
    ids = list(series)
    train, test = ids[:60], ids[60:]
    model = TangentRidge().fit([series[s] for s in train], age[train])
    pred = model.predict([series[s] for s in test])
    mean_mae = np.abs(age[test] - age[train].mean()).mean()
    assert np.abs(pred - age[test]).mean() < 0.5 * mean_mae
    assert model.reference_.shape == (4, 4)


def test_tangent_reference_never_sees_test_subjects():
    """A strong coupling planted only in the test subjects leaves the fit untouched."""
    series, age = _linear_fc_cohort(n_subjects=40)
    ids = list(series)
    train, test = ids[:30], ids[30:]
    planted = dict(series)
    for s in test:  # ROIs 2 and 3 become near copies, in test subjects only
        planted[s] = series[s].copy()
        planted[s][3] = planted[s][2] + 0.05 * planted[s][3]
    runs = {}
    for name, cohort in (("clean", series), ("planted", planted)):
        frame = predict_baselines(cohort, age, {0: (train, test)}, models=["tangent_ridge"])
        model = TangentRidge().fit([cohort[s] for s in train], age[train])
        runs[name] = (frame, model)
    np.testing.assert_allclose(runs["clean"][1].reference_, runs["planted"][1].reference_)
    np.testing.assert_allclose(runs["clean"][1].ridge_.coef_, runs["planted"][1].ridge_.coef_)
    # the planted signal does reach the test predictions, so the check above can fail
    assert not np.allclose(runs["clean"][0]["y_pred"], runs["planted"][0]["y_pred"])


def test_predict_baselines_rows_columns_and_scores():
    series, age = _linear_fc_cohort(n_subjects=60)
    fluid = pd.Series(np.arange(60.0), index=list(series))
    fluid.iloc[0] = np.nan  # left out of its fold
    frame = predict_baselines(series, {"age": age, "fluid_intelligence": fluid}, _folds(list(series)))
    assert list(frame.columns) == PREDICTION_COLUMNS
    assert len(frame) == 5 * (60 + 59)  # models x (age subjects + fluid subjects with a score)
    assert set(frame["model"]) == {"tangent_ridge", "kernel_ridge_fc", "coskew_ridge", "dfc_ridge", "mean"}
    results = score_predictions(frame.assign(repeat=0))
    fold0 = results[(results.target == "fluid_intelligence") & (results.fold == 0)]
    assert (fold0["n_test"] == 19).all()  # 20 test subjects, one without a score
    assert results.loc[results.model == "mean", "pearson_r"].isna().all()
    age_rows = results[results.target == "age"].groupby("model")["mae"].mean()
    assert age_rows["kernel_ridge_fc"] < 0.6 * age_rows["mean"]
    assert age_rows["tangent_ridge"] < 0.6 * age_rows["mean"]


class _Spy(MeanPredictor):
    seen: list = []

    def fit(self, roi_timeseries, y):
        _Spy.seen.append(("fit", [id(x) for x in roi_timeseries]))
        return super().fit(roi_timeseries, y)

    def predict(self, roi_timeseries):
        _Spy.seen.append(("predict", [id(x) for x in roi_timeseries]))
        return super().predict(roi_timeseries)


def test_folds_are_respected(monkeypatch):
    series, age = _linear_fc_cohort(n_subjects=12, n_volumes=20)
    folds = _folds(list(series))
    monkeypatch.setitem(BASELINES, "spy", _Spy)
    _Spy.seen = []
    predict_baselines(series, age, folds, models=["spy"])
    assert len(_Spy.seen) == 2 * len(folds)
    for k, (train, test) in folds.items():
        (_, fitted), (_, predicted) = _Spy.seen[2 * k], _Spy.seen[2 * k + 1]
        assert fitted == [id(series[s]) for s in train]
        assert predicted == [id(series[s]) for s in test]
        assert not set(fitted) & {id(series[s]) for s in test}


def test_bad_folds_are_refused():
    series, age = _linear_fc_cohort(n_subjects=6, n_volumes=20)
    ids = list(series)
    with pytest.raises(ValueError, match="both train and test"):
        predict_baselines(series, age, {0: (ids[:4], ids[3:])}, models=["mean"])
    with pytest.raises(BrainlitDataError, match="sub-999"):
        predict_baselines(series, age, {0: (ids[:4], ids[4:] + ["sub-999"])}, models=["mean"])

"""brainlit's read-out: its features are nilearn's, it is fit on training runs alone, and it
travels as JSON and arrays."""

import numpy as np
import pandas as pd
import pytest
import torch
from nilearn.connectome import ConnectivityMeasure
from sklearn.covariance import LedoitWolf
from sklearn.linear_model import Ridge

from brainlit.baselines import ConnectivityRidge
from brainlit.baselines.features import autocorrelation, fisher_z_edges, ledoit_wolf, tangent_space


def cohort(n_subjects: int = 60, n_rois: int = 6, n_volumes: int = 80, seed: int = 0):
    """Runs whose first two ROIs couple more strongly with age; fluid falls with age."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 80, n_subjects)
    runs = []
    for a in age:
        x = rng.standard_normal((n_rois, n_volumes))
        x[1] = (a - 20) / 60 * x[0] + x[1]
        runs.append(x)
    y = pd.DataFrame({"age": age, "fluid": 40 - 0.2 * age + rng.normal(0, 3, n_subjects)})
    return runs, y


def test_autocorrelation_of_a_slow_and_a_white_series():
    slow = torch.sin(torch.arange(4000.0) * 2 * torch.pi / 50).expand(1, 8, -1)  # lag 1 ~ cos(2 pi / 50)
    white = torch.randn(1, 8, 4000, generator=torch.Generator().manual_seed(0))
    assert autocorrelation(slow, 2).shape == (1, 16)
    assert torch.allclose(autocorrelation(slow, 1), torch.tensor(0.992), atol=0.01)
    assert autocorrelation(white, 1).abs().max() < 0.1


def test_the_tangent_features_are_nilearns_tangent_space():
    rng = np.random.default_rng(0)
    runs = rng.standard_normal((5, 8, 40)).cumsum(-1) + rng.standard_normal((5, 8, 40))
    shrunk = ledoit_wolf(torch.from_numpy(runs))
    expected = np.stack([LedoitWolf(store_precision=False).fit(r.T).covariance_ for r in runs])
    np.testing.assert_allclose(shrunk.numpy(), expected, atol=1e-10)
    measure = ConnectivityMeasure(kind="tangent").fit([r.T for r in runs])
    tangent = tangent_space(shrunk, torch.from_numpy(measure.whitening_))
    np.testing.assert_allclose(tangent.numpy(), measure.transform([r.T for r in runs]), atol=1e-8)


def test_features_are_each_edge_set_then_the_autocorrelations():
    runs, y = cohort(n_subjects=12)
    readout = ConnectivityRidge("both", lags=2).fit(runs, y)
    features = readout.features(runs)
    assert features.shape == (12, 2 * 15 + 2 * 6)
    x = torch.from_numpy(np.stack(runs))
    np.testing.assert_allclose(features[:, :15], fisher_z_edges(x).numpy(), atol=1e-12)
    upper = np.triu_indices(6, 1)
    measure = ConnectivityMeasure(kind="tangent").fit([r.T for r in runs])
    np.testing.assert_allclose(features[:, 15:30], measure.transform([r.T for r in runs])[:, upper[0], upper[1]], atol=1e-8)
    np.testing.assert_allclose(features[:, 30:], autocorrelation(x, 2).numpy(), atol=1e-12)


def test_the_tangent_reference_is_the_training_runs_geometric_mean():
    runs, y = cohort()
    readout = ConnectivityRidge("tangent").fit(runs[:40], y.iloc[:40])
    expected = ConnectivityMeasure(kind="tangent").fit([r.T for r in runs[:40]]).whitening_
    everyone = ConnectivityMeasure(kind="tangent").fit([r.T for r in runs]).whitening_
    np.testing.assert_allclose(readout.whitening_, expected)
    assert not np.allclose(readout.whitening_, everyone)


def test_it_reads_age_from_fc_and_its_out_of_fold_predictions_are_leave_one_out():
    runs, y = cohort(n_subjects=120)
    readout = ConnectivityRidge("correlation", lags=0, combine="mean").fit(runs[:80], y["age"].iloc[:80])
    pred = readout.predict(runs[80:])[:, 0]
    assert np.abs(pred - y["age"].iloc[80:]).mean() < 0.7 * np.abs(y["age"].iloc[80:] - y["age"].iloc[:80].mean()).mean()
    features = readout.features(runs[:80])
    mean, scale = features.mean(0), features.std(0)
    keep = np.arange(80) != 5
    refit = Ridge(alpha=readout.alphas_[0][0]).fit((features[keep] - mean) / scale, y["age"].iloc[:80][keep])
    assert readout.oof_[5, 0] == pytest.approx(refit.predict(((features[5] - mean) / scale)[None])[0], rel=1e-5)


def test_an_anchor_chains_the_other_targets_and_is_ignored_when_it_is_not_a_target():
    runs, y = cohort(n_subjects=80)
    chained = ConnectivityRidge(anchor="age").fit(runs, y)
    plain = ConnectivityRidge().fit(runs, y)
    assert chained.targets_ == ["age", "fluid"]
    np.testing.assert_allclose(chained.weight_[0], plain.weight_[0], rtol=1e-4)  # the anchor is unchanged
    assert not np.allclose(chained.weight_[1], plain.weight_[1])
    alone = ConnectivityRidge(anchor="age").fit(runs, y[["fluid"]])
    np.testing.assert_allclose(alone.weight_, ConnectivityRidge().fit(runs, y[["fluid"]]).weight_, rtol=1e-4)


def test_the_fitted_readout_round_trips_as_json_values_and_arrays():
    import json

    runs, y = cohort(n_subjects=30)
    readout = ConnectivityRidge(anchor="age").fit(runs, y)
    config, arrays = readout.to_state()
    restored = ConnectivityRidge.from_state(json.loads(json.dumps(config)), arrays)
    np.testing.assert_array_equal(restored.predict(runs), readout.predict(runs))
    assert restored.targets_ == ["age", "fluid"] and restored.age_line_ == readout.age_line_


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="connectivity"):
        ConnectivityRidge("partial")
    with pytest.raises(ValueError, match="combine"):
        ConnectivityRidge(combine="median")


def test_a_noisier_scanner_is_adapted_at_the_predicted_age_and_a_training_site_is_left_as_it_was():
    """White noise at a new scanner scales the age effect on FC down: ComBat's scale, applied at
    the read-out's own de-biased age prediction, takes back more of it than the location alone
    (where the new site's age signal survives: near chance, the guess only adds noise)."""
    def strong(n_subjects: int, seed: int):
        runs, y = cohort(n_subjects=n_subjects, seed=seed)
        for run, age in zip(runs, y["age"], strict=True):
            run[2:4] += (age - 20) / 60 * run[0]  # age couples three edges here
        return runs, y

    runs, y = strong(200, seed=1)
    new_runs, new_y = strong(100, seed=2)
    rng = np.random.default_rng(3)
    noisy = [run + 0.8 * rng.standard_normal(run.shape) for run in new_runs]
    errors = {}
    for site_scale in (False, True):
        readout = ConnectivityRidge(anchor="age", site_scale=site_scale).fit(runs, y)
        readout.adapt_site(noisy[:20], "scanner-2", new_y["age"][:20])
        pred = readout.predict(noisy[20:], ["scanner-2"] * 80)[:, 0]
        errors[site_scale] = np.abs(pred - new_y["age"][20:]).mean()
        home = readout.predict(new_runs, None)  # the lone training site's effects are zero
        np.testing.assert_allclose(home, readout.from_design(readout.features(new_runs)))
    assert readout.age_line_ is not None and 0.05 < readout.age_line_[0] < 1.0
    assert errors[True] < errors[False]

"""The dynamic-FC pipeline (dfc_ridge) and the oracle row of positive-control cohorts."""

import numpy as np
import pandas as pd

from brainlit.baselines import READOUT, ConnectivityRidge, predict_baselines, readout_folds
from brainlit.baselines.dfc_ridge import DynamicFCRidge, state_summaries
from brainlit.baselines.oracle import ORACLE, SCAN_CEILING, LatentOracle, oracle_inputs
from brainlit.data.simulate import LATENTS
from brainlit.experiment import Experiment
from brainlit.experiment.classical import latents_of
from brainlit.report import oracle_gaps


def _switching_cohort(n_subjects=60, n_rois=6, n_volumes=240, seed=0):
    """ROIs 0-1 couple in alternating blocks; the block length (the dwell) rises with age."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 80, n_subjects)
    series = {}
    for i, a in enumerate(age):
        dwell = int(4 + 36 * (a - 20) / 60)
        on = (np.arange(n_volumes) // dwell) % 2 == 0
        z = rng.standard_normal((n_rois, n_volumes))
        z[1] = np.where(on, 0.9 * z[0] + 0.44 * z[1], z[1])
        series[f"sub-{i:03d}"] = z
    return series, pd.Series(age, index=list(series), name="age")


def test_state_summaries_count_occupancy_dwell_and_transitions():
    summary = state_summaries(np.array([0, 0, 0, 1, 1, 0, 2, 2, 2, 2]), n_states=3)
    np.testing.assert_allclose(summary[:3], [0.4, 0.2, 0.4])  # occupancy
    np.testing.assert_allclose(summary[3:6], [2.0, 2.0, 4.0])  # mean dwell in windows
    assert summary[6] == 3 / 9  # transitions per window step


def test_dfc_ridge_reads_the_switching_speed_that_static_fc_cannot():
    series, age = _switching_cohort()
    ids = list(series)
    train, test = ids[:40], ids[40:]
    model = DynamicFCRidge(window=8, step=2, n_states=2).fit([series[s] for s in train], age[train])
    pred = model.predict([series[s] for s in test])
    assert np.corrcoef(pred, age[test])[0, 1] > 0.6
    assert np.abs(pred - age[test]).mean() < 0.7 * np.abs(age[test] - age[train].mean()).mean()


def test_dfc_ridge_states_never_see_test_subjects():
    """A signal planted in one test subject changes neither the states nor another test
    subject's prediction: k-means and the ridge are fit on the training subjects alone."""
    series, age = _switching_cohort(n_subjects=30)
    ids = list(series)
    folds = {0: (ids[:20], ids[20:])}
    before = predict_baselines(series, age, folds, models=("dfc_ridge",))
    planted = dict(series)
    planted[ids[29]] = series[ids[29]] * 0 + np.sin(np.arange(240) / 3.0)  # every ROI one wave
    after = predict_baselines(planted, age, folds, models=("dfc_ridge",))
    unchanged = before["subject_id"] != ids[29]
    np.testing.assert_array_equal(before.loc[unchanged, "y_pred"], after.loc[unchanged, "y_pred"])
    assert not np.isclose(before["y_pred"].iloc[-1], after["y_pred"].iloc[-1])


def test_the_oracle_adds_the_true_latents_to_static_fc():
    series, age = _switching_cohort()
    ids = list(series)
    latent = pd.DataFrame({"dynamics_dwell": (age - 20) / 60 + 0.05 * np.random.default_rng(1).standard_normal(len(age))},
                          index=ids)
    folds = {0: (ids[:40], ids[40:])}
    rows, oof = readout_folds(series, age.to_frame(), folds, ConnectivityRidge(), latent)
    mae = rows.assign(ae=(rows.y_pred - rows.y_true).abs()).groupby("model")["ae"].mean()
    assert set(mae.index) == {READOUT, ORACLE}
    assert mae[ORACLE] < 0.5 * mae[READOUT]
    assert set(oof["subject_id"]) == set(ids[:40])  # the oracle is fit on the read-out's leave-one-out predictions
    oracle = LatentOracle().fit(oof["y_pred"].to_numpy(), latent.loc[ids[:40]].to_numpy(), age[ids[:40]].to_numpy())
    assert abs(oracle.stack_.coef_[1]) > 30  # the latent carries the slope of 60 years per unit


def test_the_scan_ceiling_reads_the_state_changes_that_happened_in_the_scan():
    """Each oracle row reads its own latents: the generative parameters, or the log count of
    the scan's state changes; integrity-like columns go to neither."""
    series, age = _switching_cohort()
    ids = list(series)
    switches = np.round(np.exp((age - 20) / 30)).astype(int)  # the scan's count follows age
    latents = pd.DataFrame({"integrity": age, "dynamics_dwell": np.zeros(len(ids)), "state_switches": switches}, index=ids)
    inputs = oracle_inputs(latents)
    assert list(inputs) == [ORACLE, SCAN_CEILING]
    assert list(inputs[ORACLE].columns) == ["dynamics_dwell"]  # integrity is what fluid intelligence is made of
    np.testing.assert_allclose(inputs[SCAN_CEILING]["state_switches"], np.log1p(switches))
    assert list(oracle_inputs(latents[["state_switches"]])) == [SCAN_CEILING]
    rows, _ = readout_folds(series, age.to_frame(), {0: (ids[:40], ids[40:])}, ConnectivityRidge(), latents)
    mae = rows.assign(ae=(rows.y_pred - rows.y_true).abs()).groupby("model")["ae"].mean()
    assert mae[SCAN_CEILING] < 0.5 * mae[ORACLE]  # the parameter column is uninformative here


def test_the_report_says_how_far_each_model_is_from_the_oracle():
    results = pd.DataFrame({
        "model": ["brainlit", "brainlit read-out", "tangent_ridge", ORACLE] * 2,
        "target": "age", "fold": [0] * 4 + [1] * 4, "repeat": 0,
        "mae": [10.0, 11.0, 11.5, 8.0, 10.0, 11.0, 11.5, 8.0],
    })
    (line,) = oracle_gaps(results, "age")
    assert "MAE 8.00" in line and "brainlit +2.00" in line and "brainlit read-out +3.00" in line
    assert "tangent_ridge +3.50" in line and "brainlit closes 33%" in line
    assert oracle_gaps(results[results.model != ORACLE], "age") == []
    ceiling = results[results.model == ORACLE].assign(model=SCAN_CEILING, mae=9.0)
    lines = oracle_gaps(pd.concat([results, ceiling]), "age")
    assert len(lines) == 2 and lines[1].startswith(f"distance to the {SCAN_CEILING} (MAE 9.00)")
    assert "brainlit closes 50%" in lines[1]
    variant = results[results.model == "brainlit"].assign(model="brainlit (no pretraining)")
    (line,) = oracle_gaps(pd.concat([results, variant]), "age")
    assert line.count("brainlit read-out +3.00") == 1  # one read-out for every pretraining variant


def test_an_experiment_hands_a_simulated_cohorts_latents_to_the_oracles_and_nothing_elsewhere(tmp_path):
    root = tmp_path / "cohort"
    (root / LATENTS).parent.mkdir(parents=True)
    pd.DataFrame({"participant_id": ["sub-1", "sub-2"], "integrity": [0.1, -0.2],
                  "dynamics_log_mean_dwell": [3.0, 3.5], "state_switches": [20, 11]}).to_csv(root / LATENTS, sep="\t", index=False)
    experiment = Experiment(str(root), str(tmp_path / "out"))
    latents = latents_of(experiment, ["sub-2"])
    assert latents.loc["sub-2", "state_switches"] == 11
    assert list(oracle_inputs(latents)) == [ORACLE, SCAN_CEILING]
    assert latents_of(experiment, ["sub-3"]) is None  # a subject the simulation never made
    assert latents_of(Experiment(str(tmp_path), str(tmp_path / "out2")), ["sub-1"]) is None  # not simulated

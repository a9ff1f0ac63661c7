"""The dynamic-FC positive control: switching speed carries the phenotype, static FC does not."""

import numpy as np
import pandas as pd
import pytest

from brainlit.data.simulate import (
    LATENTS,
    GenerativeModel,
    simulate_cohort,
    simulate_roi_timeseries,
)
from brainlit.data.simulate.cli import main
from brainlit.data.simulate.probe import switching_probe

SWITCHING = GenerativeModel(dynamics="switching")


def _fisher_fc(series: np.ndarray) -> np.ndarray:
    return np.arctanh(np.corrcoef(series)[np.triu_indices(len(series), 1)])


def test_no_dynamics_is_the_default_and_writes_no_dynamic_latents():
    cohort = simulate_roi_timeseries(n_subjects=3, n_rois=8, n_volumes=40, seed=2)
    assert GenerativeModel().dynamics == "none"
    assert list(cohort.latents.columns) == ["participant_id", "integrity"]


def test_switching_speed_leaves_static_fc_unchanged_over_long_runs():
    """The same subjects (same noise) switching every 12 s or every 90 s on average: their
    whole-run FC differs by less than the FC of one run's two halves does."""
    kwargs = dict(n_subjects=4, n_rois=8, n_volumes=3000, seed=5, model=SWITCHING)
    fast = simulate_roi_timeseries(dwell=np.full(4, 12.0), **kwargs).roi_timeseries
    slow = simulate_roi_timeseries(dwell=np.full(4, 90.0), **kwargs).roi_timeseries
    speed_effect = np.mean([np.abs(_fisher_fc(f) - _fisher_fc(s)).mean() for f, s in zip(fast, slow, strict=True)])
    sampling = np.mean([np.abs(_fisher_fc(s[:, :1500]) - _fisher_fc(s[:, 1500:])).mean() for s in slow])
    assert speed_effect < sampling


def test_switching_speed_is_recoverable_from_the_bold_by_a_simple_probe():
    n = 40
    log_dwell = np.linspace(np.log(8.0), np.log(120.0), n)
    cohort = simulate_roi_timeseries(n_subjects=n, n_rois=32, n_volumes=600, seed=11, model=SWITCHING,
                                     dwell=np.exp(log_dwell))
    probe = [switching_probe(s.astype(float), cohort.modules) for s in cohort.roi_timeseries]
    assert pd.Series(probe).corr(pd.Series(log_dwell), method="spearman") > 0.3


def test_dwell_times_slow_with_age_and_quicken_with_integrity():
    cohort = simulate_roi_timeseries(n_subjects=120, n_rois=8, n_volumes=150, seed=4, model=SWITCHING)
    log_dwell = cohort.latents["dynamics_log_mean_dwell"]
    assert log_dwell.corr(cohort.phenotypes["age"]) > 0.4
    assert log_dwell.corr(cohort.latents["integrity"]) < -0.2
    low, high = np.exp(log_dwell).quantile([0.05, 0.95])
    assert 5.0 < low < 15.0 and 60.0 < high < 150.0  # slower than the HRF, faster than the run
    assert (cohort.latents["state_switches"] > 0).mean() > 0.9


def test_the_cohort_keeps_latents_beside_it_and_the_cli_takes_the_dynamics(tmp_path, capsys):
    main([str(tmp_path / "dyn"), "--n-subjects", "3", "--n-jobs", "1", "--dynamics", "switching",
          "--dwell-s", "20"])
    latents = pd.read_csv(tmp_path / "dyn" / LATENTS, sep="\t")
    participants = pd.read_csv(tmp_path / "dyn" / "participants.tsv", sep="\t")
    assert list(latents["participant_id"]) == list(participants["participant_id"])
    assert "dynamics_log_mean_dwell" in latents and "dynamics_log_mean_dwell" not in participants
    assert np.exp(latents["dynamics_log_mean_dwell"]).median() < 40


def test_a_cohort_of_other_dynamics_is_not_taken_for_the_stationary_one(tmp_path):
    simulate_cohort(tmp_path / "c", n_subjects=2, n_rois=8, n_volumes=20)
    with pytest.raises(Exception, match="other parameters"):
        simulate_cohort(tmp_path / "c", n_subjects=2, n_rois=8, n_volumes=20, model=SWITCHING)

"""The `visible` FC dynamics: states a scan shows, whose speed carries age and integrity."""

import numpy as np
import pytest

from brainlit.data.simulate import GenerativeModel, simulate_roi_timeseries
from brainlit.data.simulate.probe import state_edges, state_tracking
from brainlit.data.simulate.visible import network_groups, shared_fluctuation

VISIBLE = GenerativeModel(dynamics="visible")


def test_each_state_joins_its_own_network_pairs_and_as_many_as_the_other():
    groups = network_groups(4)
    assert groups.tolist() == [[0, 0, 1, 1], [0, 1, 1, 0]]  # (0, 1), (2, 3) | (1, 2), (3, 0)
    for n in (3, 5, 6):
        joined = [sum(len(set(np.flatnonzero(g == k))) - 1 for k in set(g)) for g in network_groups(n)]
        assert joined[0] == joined[1]
    with pytest.raises(ValueError, match="at least 3 networks"):
        network_groups(2)


def test_the_shared_fluctuation_joins_the_states_networks_and_keeps_each_region_stationary():
    modules = np.repeat(np.arange(4), 2)  # [R = 8]
    sequence = np.repeat(np.tile([0, 1], 20), 1500)  # 150-s dwells at dt 0.1 s
    bold = shared_fluctuation(np.random.default_rng(0), sequence, modules, 0.1, slice(0, None, 20))
    state = sequence[::20]  # at each volume (TR 2 s)
    changed = np.r_[False, np.diff(state) != 0]
    settling = np.convolve(changed, np.ones(8))[: len(state)] > 0  # the HRF's 16 s after a change
    fc = {s: np.corrcoef(bold[:, (state == s) & ~settling]) for s in (0, 1)}
    assert fc[0][0, 1] > 0.99 and fc[1][0, 1] > 0.99  # one network: always one drive
    assert fc[0][1, 2] > 0.99 and abs(fc[1][1, 2]) < 0.3  # networks 0, 1: joined in state 0 only
    assert fc[1][3, 4] > 0.99 and abs(fc[0][3, 4]) < 0.3  # networks 1, 2: joined in state 1 only
    for s in (0, 1):
        np.testing.assert_allclose(bold[:, state == s].std(1), 1.0, rtol=0.2)


def test_visible_latents_are_those_of_switching_and_follow_age_and_integrity():
    cohort = simulate_roi_timeseries(120, 8, 150, seed=4, model=VISIBLE)
    switching = simulate_roi_timeseries(120, 8, 150, seed=4, model=GenerativeModel(dynamics="switching"))
    latents = cohort.latents
    assert list(latents.columns) == ["participant_id", "integrity", "dynamics_log_mean_dwell", "state_switches"]
    assert latents.equals(switching.latents)  # the same dwell times and state sequences
    assert latents["dynamics_log_mean_dwell"].corr(cohort.phenotypes["age"]) > 0.4
    assert latents["dynamics_log_mean_dwell"].corr(latents["integrity"]) < -0.2
    assert 0.45 < cohort.states.mean() < 0.55  # both states visited equally often
    changes = (np.diff(cohort.states, axis=1) != 0).sum(1)
    assert np.corrcoef(changes, latents["state_switches"])[0, 1] > 0.95


def test_windowed_fc_tracks_the_visible_state_far_better_than_the_switching_one():
    tracking = {}
    for dynamics in ("switching", "visible"):
        cohort = simulate_roi_timeseries(16, 32, 300, seed=5, model=GenerativeModel(dynamics=dynamics))
        edges = state_edges(cohort.modules, dynamics)
        tracking[dynamics] = np.nanmean([state_tracking(s.astype(float), edges, states)
                                         for s, states in zip(cohort.roi_timeseries, cohort.states, strict=True)])
    assert tracking["visible"] > 0.55 and tracking["visible"] > tracking["switching"] + 0.15


def test_visible_dynamics_change_only_the_bold_they_add():
    """Same subjects, same noise: without the added fluctuation the series are the stationary
    cohort's, so the mechanism touches nothing else."""
    quiet = GenerativeModel(dynamics="visible", visible_amplitude=0.0)
    np.testing.assert_array_equal(simulate_roi_timeseries(3, 8, 40, seed=2, model=quiet).roi_timeseries,
                                  simulate_roi_timeseries(3, 8, 40, seed=2).roi_timeseries)

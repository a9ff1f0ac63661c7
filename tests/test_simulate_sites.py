"""Multi-site cohorts: each scanner's gain, noise, shared signal, head motion and TR."""

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainlit.data.simulate import (
    LATENTS,
    ScanPlan,
    SiteSpec,
    simulate_cohort,
    simulate_scans,
    simulate_subjects,
)
from brainlit.data.simulate.cli import main
from brainlit.data.simulate.sites import SiteEffects, head_motion, scan_at_site
from brainlit.errors import BrainlitConfigError

PLAN = ScanPlan(n_rois=16, n_volumes=100, seed=3)


def _mean_fc(series: np.ndarray) -> float:
    return float(np.corrcoef(series)[np.triu_indices(len(series), 1)].mean())


def test_subjects_are_spread_evenly_over_the_sites_and_keep_their_biology():
    spec = SiteSpec(3)
    sites = spec.assign(np.arange(301), seed=3)
    assert np.bincount(sites).tolist() in ([101, 100, 100], [100, 101, 100], [100, 100, 101])
    np.testing.assert_array_equal(spec.assign(np.arange(40, 50), seed=3), sites[40:50])  # nests
    scans = simulate_scans(np.arange(12), ScanPlan(16, 100, seed=3, sites=spec))
    plain = simulate_scans(np.arange(12), PLAN)
    assert scans.participants["site"].isin(["site-0", "site-1", "site-2"]).all()
    pd.testing.assert_frame_equal(scans.participants.drop(columns="site"), plain.participants)
    assert scans.latents["integrity"].equals(plain.latents["integrity"])


def test_a_sites_gain_shows_in_the_roi_sd():
    spec = SiteSpec(2, site_seed=11)
    scans = simulate_scans(np.arange(40), ScanPlan(16, 100, seed=3, sites=spec))
    plain = simulate_scans(np.arange(40), PLAN)
    log_ratio = np.log(scans.roi_timeseries.std(2) / plain.roi_timeseries.std(2))  # [N, R]
    site_of = scans.latents["site"].str[-1].astype(int).to_numpy()
    for site in spec.effects(16, seed=3, t_r=2.0):
        shift = log_ratio[site_of == site.index].mean(0)  # [R]
        assert np.corrcoef(shift, np.log(site.roi_gain))[0, 1] > 0.8
        assert shift.mean() == pytest.approx(np.log(site.roi_gain).mean(), abs=0.2)


def test_scanner_effects_one_by_one():
    bold = simulate_subjects([0], 16, 200, seed=1).roi_timeseries[0].astype(float)  # [R, T]
    quiet = SiteEffects(0, np.full(16, 1.5), roi_noise_pct=np.zeros(16), global_pct=0.0, motion_mm=0.0, t_r=2.0)
    scanned, mean_fd = scan_at_site(bold, quiet, np.random.default_rng(0))
    np.testing.assert_allclose(scanned, 1.5 * bold, rtol=1e-5)
    assert mean_fd == 0.0
    shared = SiteEffects(0, np.ones(16), roi_noise_pct=np.zeros(16), global_pct=0.5, motion_mm=0.0, t_r=2.0)
    assert _mean_fc(scan_at_site(bold, shared, np.random.default_rng(0))[0]) > _mean_fc(bold) + 0.05
    noisy = SiteEffects(0, np.ones(16), roi_noise_pct=np.full(16, 0.5), global_pct=0.0, motion_mm=0.0, t_r=2.0)
    assert _mean_fc(scan_at_site(bold, noisy, np.random.default_rng(0))[0]) < _mean_fc(bold) - 0.05
    moving = SiteEffects(0, np.ones(16), roi_noise_pct=np.zeros(16), global_pct=0.0, motion_mm=0.3, t_r=2.0)
    scanned, mean_fd = scan_at_site(bold, moving, np.random.default_rng(0))
    assert mean_fd > 0.05 and not np.allclose(scanned, bold, atol=0.01)


def test_head_motion_has_the_asked_mean_framewise_displacement():
    rng = np.random.default_rng(0)
    mean_fd = [np.abs(np.diff(head_motion(rng, 0.2, 150), axis=1)).sum(0).mean() for _ in range(400)]
    assert np.mean(mean_fd) == pytest.approx(0.2, rel=0.1)


def test_a_sites_effects_depend_on_the_site_seed_and_its_number_only():
    two, five = SiteSpec(2).effects(16, seed=3, t_r=2.0), SiteSpec(5).effects(16, seed=3, t_r=2.0)
    np.testing.assert_array_equal(two[1].roi_gain, five[1].roi_gain)
    assert two[1].latents() == five[1].latents()
    new_scanner = SiteSpec(2, site_seed=99).effects(16, seed=3, t_r=2.0)
    assert new_scanner[1].latents()["site_noise_pct"] != two[1].latents()["site_noise_pct"]
    with pytest.raises(BrainlitConfigError, match="--only-site 2"):
        SiteSpec(2, only_site=2)


def test_a_multi_site_arrays_cohort_records_sites_motion_and_trs(tmp_path):
    spec = SiteSpec(2, t_rs=(2.0, 2.5))
    simulate_cohort(tmp_path, n_subjects=8, n_rois=8, n_volumes=30, seed=2, layout="arrays", sites=spec)
    participants = pd.read_csv(tmp_path / "participants.tsv", sep="\t")
    latents = pd.read_csv(tmp_path / LATENTS, sep="\t")
    assert list(participants.columns) == ["participant_id", "age", "sex", "fluid_intelligence", "site"]
    assert sorted(participants["site"].value_counts().tolist()) == [4, 4]
    assert {"site", "site_gain", "site_noise_pct", "site_global_pct", "site_motion_mm", "site_t_r",
            "mean_fd"} <= set(latents.columns)
    assert (latents["mean_fd"] > 0).all()
    for sid, site in zip(participants["participant_id"], participants["site"], strict=True):
        expected = {"site-0": 2.0, "site-1": 2.5}[site]
        assert json.loads((tmp_path / f"{sid}.json").read_text())["RepetitionTime"] == expected
    sites = pd.read_csv(tmp_path / "simulation" / "sites.tsv", sep="\t")
    assert list(sites["site"]) == ["site-0", "site-1"] and "gain_8" in sites


def test_a_cohort_of_two_trs_keeps_one_site_or_both_resampled_to_the_configured_tr(tmp_path):
    from brainlit.data.datamodule import FMRIDataModule

    simulate_cohort(tmp_path, n_subjects=8, n_rois=8, n_volumes=40, seed=2, layout="arrays",
                    sites=SiteSpec(2, t_rs=(2.0, 2.5)))
    site = pd.read_csv(tmp_path / "participants.tsv", sep="\t").set_index("participant_id")["site"]
    options = dict(root=str(tmp_path), layout="arrays", t_r=2.0, min_timepoints=20, targets=["age"])
    kept = FMRIDataModule(**options, cache_path=str(tmp_path / "one.h5"))
    kept.prepare_data()
    assert sorted(kept.reader.subject_ids) == sorted(site.index[site == "site-0"])
    both = FMRIDataModule(**options, resample_tr=True, cache_path=str(tmp_path / "both.h5"))
    both.prepare_data()
    assert sorted(both.reader.subject_ids) == sorted(site.index)
    lengths = {both.reader.n_timepoints(s) for s in site.index[site == "site-1"]}
    assert lengths == {50} and both.repetition_time == 2.0  # 40 volumes at 2.5 s: 100 s, 50 at 2 s


def test_one_chosen_site_with_new_subjects_and_a_new_scanner_from_the_cli(tmp_path):
    main([str(tmp_path / "train"), "--n-subjects", "4", "--n-volumes", "20", "--sites", "3",
          "--site-trs", "2.0", "2.5", "2.0", "--n-jobs", "1"])
    main([str(tmp_path / "new"), "--n-subjects", "2", "--n-volumes", "20", "--sites", "3", "--only-site", "1",
          "--site-trs", "2.0", "2.5", "2.0", "--seed", "8", "--site-seed", "0", "--n-jobs", "1"])
    train = pd.read_csv(tmp_path / "train" / LATENTS, sep="\t").set_index("site")
    new = pd.read_csv(tmp_path / "new" / LATENTS, sep="\t")
    assert (new["site"] == "site-1").all()
    assert new["site_noise_pct"].iloc[0] == train.loc["site-1", "site_noise_pct"].iloc[0]
    image = nib.load(tmp_path / "new" / "sub-0001" / "func" / "sub-0001_task-rest_bold.nii.gz")
    assert image.header.get_zooms()[3] == pytest.approx(2.5)
    sidecar = tmp_path / "new" / "sub-0001" / "func" / "sub-0001_task-rest_bold.json"
    assert json.loads(sidecar.read_text()) == {"RepetitionTime": 2.5}
    assert "RepetitionTime" not in json.loads((tmp_path / "new" / "task-rest_bold.json").read_text())

"""Parcellation values and the bad inputs that must never reach the cache."""

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

from brainlit.data.cache import CacheReader, build_cache
from brainlit.data.parcellate import Parcellator
from brainlit.data.sources import SubjectRecord
from brainlit.errors import BrainlitDataError
from tests.data.conftest import AFFINE, SHAPE, labels_atlas, write_bold


def record(path, sid="sub-01"):
    return SubjectRecord(sid, bold_path=path)


def test_roi_series_is_the_mean_of_its_voxels(bids):
    data = write_bold(bids / "sub-01/func/sub-01_task-rest_bold.nii.gz", seed=1)
    raw = Parcellator(str(bids / "atlas.nii.gz"), detrend=False, standardize=False, min_timepoints=10)
    series, t_r = raw.transform(record(bids / "sub-01/func/sub-01_task-rest_bold.nii.gz"))
    labels = labels_atlas()
    expected = np.stack([data[labels == r].mean(axis=0) for r in range(1, 7)])
    assert t_r == pytest.approx(2.0)
    assert series.dtype == np.float32 and series.shape == (6, 60)
    np.testing.assert_allclose(series, expected, rtol=1e-4)

    zscored = Parcellator(str(bids / "atlas.nii.gz"), detrend=False, standardize=True, min_timepoints=10)
    series_z, _ = zscored.transform(record(bids / "sub-01/func/sub-01_task-rest_bold.nii.gz"))
    manual = (expected - expected.mean(1, keepdims=True)) / expected.std(1, ddof=1, keepdims=True)
    np.testing.assert_allclose(series_z, manual, atol=1e-4)


def test_coordinate_atlas_defaults_to_bundled_power264():
    parcellator = Parcellator()
    assert parcellator.atlas_kind == "coords"
    assert parcellator.coordinates().shape == (264, 3)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"not a nifti at all"), "cannot read NIfTI"),
        (lambda p: nib.save(nib.Nifti1Image(np.ones((12, 12, 10), np.float32), AFFINE), p), "3-D"),
        (lambda p: write_bold(p, data=np.full((12, 12, 10, 60), np.nan)), "NaN/Inf"),
        (lambda p: write_bold(p, n_volumes=20), "run too short: 20 volumes"),
        (lambda p: write_bold(p, t_r=3.0), "TR 3.000 s differs from the cohort's 2.000 s"),
    ],
    ids=["corrupt", "3d", "nan", "short", "tr"],
)
def test_bad_runs_name_subject_file_and_what_to_do(tmp_path, bids, make, message):
    path = tmp_path / "sub-bad_task-rest_bold.nii.gz"
    make(path)
    parcellator = Parcellator(str(bids / "atlas.nii.gz"), t_r=2.0, min_timepoints=50)
    with pytest.raises(BrainlitDataError) as error:
        parcellator.transform(record(path, "sub-bad"))
    text = str(error.value)
    assert message in text and "sub-bad" in text and str(path) in text
    assert "; " in text  # followed by what to do


def slow_run(path, t_r, seconds=240.0):
    """A run whose six regions carry slow sinusoids (0.01-0.035 Hz), sampled every ``t_r`` s."""
    times = np.arange(0, seconds, t_r)
    region_signal = np.stack([np.sin(2 * np.pi * (0.005 + 0.005 * r) * times + r) for r in range(7)])
    noise = np.random.default_rng(0).standard_normal((*SHAPE, len(times)))
    return write_bold(path, t_r=t_r, data=100 + 5 * region_signal[labels_atlas()] + 0.01 * noise)


def test_a_run_at_another_tr_is_resampled_to_the_cohort_s_when_asked(tmp_path, bids):
    # the same slow signals scanned at TR 2 s (the cohort's) and at TR 0.8 s
    slow_run(tmp_path / "sub-a_bold.nii.gz", 2.0)
    slow_run(tmp_path / "sub-b_bold.nii.gz", 0.8)
    options = dict(atlas=str(bids / "atlas.nii.gz"), t_r=2.0, min_timepoints=50, detrend=False)
    at_cohort_tr, _ = Parcellator(**options).transform(record(tmp_path / "sub-a_bold.nii.gz", "sub-a"))
    with pytest.raises(BrainlitDataError, match="TR 0.800 s differs.*set data.resample_tr true"):
        Parcellator(**options).transform(record(tmp_path / "sub-b_bold.nii.gz", "sub-b"))
    resampled, t_r = Parcellator(**options, resample_tr=True).transform(record(tmp_path / "sub-b_bold.nii.gz", "sub-b"))
    assert t_r == 2.0 and resampled.shape == at_cohort_tr.shape == (6, 120)
    np.testing.assert_allclose(resampled.mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(resampled.std(1, ddof=1), 1, atol=1e-4)
    inner = slice(5, -5)  # the ends are padded
    assert np.abs(resampled[:, inner] - at_cohort_tr[:, inner]).max() < 0.01


def test_a_resampled_run_must_still_be_long_enough_at_the_cohort_s_tr(tmp_path, bids):
    slow_run(tmp_path / "sub-b_bold.nii.gz", 1.0, seconds=80.0)  # 80 volumes at 1 s: 40 at 2 s
    parcellator = Parcellator(str(bids / "atlas.nii.gz"), t_r=2.0, min_timepoints=50, resample_tr=True)
    with pytest.raises(BrainlitDataError, match=r"sub-b .*run too short: 80 volumes \(40 at the cohort's TR 2.000 s\)"):
        parcellator.transform(record(tmp_path / "sub-b_bold.nii.gz", "sub-b"))


def test_fingerprint_changes_with_atlas_bytes_and_parameters(bids, tmp_path):
    atlas = bids / "atlas.nii.gz"
    base = Parcellator(str(atlas)).fingerprint()
    assert Parcellator(str(atlas)).fingerprint() == base
    assert Parcellator(str(atlas), low_pass=0.1).fingerprint() != base
    assert Parcellator(str(atlas), resample_tr=True).fingerprint() != base
    nib.save(nib.Nifti1Image(labels_atlas(3), AFFINE), atlas)
    assert Parcellator(str(atlas)).fingerprint() != base


def test_atlas_outside_the_runs_field_of_view_names_the_atlas_and_the_fix(tmp_path):
    path = tmp_path / "sub-01_task-rest_bold.nii.gz"
    write_bold(path)  # a small grid near the origin: Power-264's spheres mostly miss it
    with pytest.raises(BrainlitDataError, match=r"sub-01 .*atlas power264 does not fit this run.*runs' space"):
        Parcellator(min_timepoints=10).transform(record(path))


def test_roi_centres_are_those_of_the_labels_the_masker_extracts_without_background(tmp_path):
    x, y, _ = np.indices(SHAPE)
    labels = (1 + x // 3 + 4 * (y // 3)).astype(np.int16)  # 16 labels, every voxel labelled: no 0
    nib.save(nib.Nifti1Image(labels, AFFINE), tmp_path / "atlas.nii.gz")
    write_bold(tmp_path / "sub-01_task-rest_bold.nii.gz", data=np.random.default_rng(0).standard_normal((*SHAPE, 60)))
    parcellator = Parcellator(str(tmp_path / "atlas.nii.gz"), min_timepoints=10)
    rec = record(tmp_path / "sub-01_task-rest_bold.nii.gz")
    report = build_cache([rec], parcellator, tmp_path / "cache.h5", pd.DataFrame(index=pd.Index(["sub-01"], name="subject_id")))

    reader = CacheReader(tmp_path / "cache.h5")
    assert report.built == 1 and reader.n_rois == 16
    centres = reader.roi_coordinates
    assert centres.shape == (16, 3)
    world = nib.affines.apply_affine(AFFINE, np.argwhere(labels == 6))  # label 6, the 6th ROI
    np.testing.assert_allclose(centres[5], world.mean(axis=0))

"""The simulated demo cohort and the Cam-CAN-shaped tree: files, determinism, realism."""

import io
import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import KFold

from brainlit.baselines import predict_baselines
from brainlit.data.simulate import (
    MARKER,
    simulate_cohort,
    simulate_phenotypes,
    simulate_roi_timeseries,
)
from brainlit.data.simulate.camcan import CAMCAN_BAD_SCORES, write_camcan_tree
from brainlit.data.simulate.cli import main
from brainlit.errors import BrainlitDataError
from brainlit.metrics import score_predictions

SMALL = dict(n_subjects=4, n_rois=8, n_volumes=40, seed=1)


def _bold(root, subject_id):
    return nib.load(root / subject_id / "func" / f"{subject_id}_task-rest_bold.nii.gz")


@pytest.fixture(scope="module")
def cohort_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "cohort"
    simulate_cohort(out, **SMALL)
    return out


def test_roi_core_is_deterministic_by_seed_and_nests():
    a = simulate_roi_timeseries(n_subjects=5, n_rois=8, n_volumes=50, seed=3)
    b = simulate_roi_timeseries(n_subjects=5, n_rois=8, n_volumes=50, seed=3)
    c = simulate_roi_timeseries(n_subjects=5, n_rois=8, n_volumes=50, seed=4)
    prefix = simulate_roi_timeseries(n_subjects=3, n_rois=8, n_volumes=50, seed=3)
    assert a.roi_timeseries.shape == (5, 8, 50)
    assert np.array_equal(a.roi_timeseries, b.roi_timeseries)
    pd.testing.assert_frame_equal(a.phenotypes, b.phenotypes)
    assert not np.allclose(a.roi_timeseries, c.roi_timeseries)
    assert not a.phenotypes["age"].equals(c.phenotypes["age"])
    assert np.array_equal(prefix.roi_timeseries, a.roi_timeseries[:3])


def test_phenotypes_look_like_cam_can():
    phenotypes, _ = simulate_phenotypes(3000, seed=0)
    fluid = phenotypes["fluid_intelligence"]
    assert phenotypes["age"].between(18, 88).all() and set(phenotypes["sex"]) == {"M", "F"}
    assert fluid.between(0, 46).all() and (fluid == fluid.round()).all()
    assert 30 < fluid.mean() < 34
    assert -0.72 < np.corrcoef(phenotypes["age"], fluid)[0, 1] < -0.58


def test_cohort_files_shapes_and_header(cohort_dir):
    participants = pd.read_csv(cohort_dir / "participants.tsv", sep="\t")
    assert list(participants.columns) == ["participant_id", "age", "sex", "fluid_intelligence"]
    assert list(participants["participant_id"]) == ["sub-0001", "sub-0002", "sub-0003", "sub-0004"]
    atlas = nib.load(cohort_dir / "atlas.nii.gz")
    labels = np.asarray(atlas.dataobj)
    image = _bold(cohort_dir, "sub-0002")
    assert image.shape == labels.shape + (40,)
    assert image.header.get_zooms()[3] == pytest.approx(2.0)
    assert image.header.get_xyzt_units() == ("mm", "sec")
    assert np.allclose(image.affine, atlas.affine)
    data = np.asarray(image.dataobj)
    assert set(np.unique(labels)) == set(range(9))  # background + regions 1..8
    assert np.array_equal(labels > 0, data.mean(axis=3) > 0)  # the atlas covers the brain exactly
    assert len(pd.read_csv(cohort_dir / "atlas_labels.tsv", sep="\t")) == 8
    assert json.loads((cohort_dir / MARKER).read_text())["n_subjects"] == 4


def test_same_seed_same_files_other_seed_other_files(cohort_dir, tmp_path):
    again = simulate_cohort(tmp_path / "again", **SMALL)
    other = simulate_cohort(tmp_path / "other", **{**SMALL, "seed": 2})
    assert again.generated and other.generated
    tsv = (cohort_dir / "participants.tsv").read_bytes()
    assert (again.out_dir / "participants.tsv").read_bytes() == tsv
    assert (other.out_dir / "participants.tsv").read_bytes() != tsv
    first = np.asarray(_bold(cohort_dir, "sub-0003").dataobj)
    assert np.array_equal(np.asarray(_bold(again.out_dir, "sub-0003").dataobj), first)
    assert not np.array_equal(np.asarray(_bold(other.out_dir, "sub-0003").dataobj), first)


def test_rerun_is_a_noop_and_half_written_cohort_is_regenerated(tmp_path):
    out = tmp_path / "cohort"
    simulate_cohort(out, **SMALL)
    files = sorted(p for p in out.rglob("*") if p.is_file())
    mtimes = [p.stat().st_mtime_ns for p in files]
    assert not simulate_cohort(out, **SMALL).generated
    assert [p.stat().st_mtime_ns for p in files] == mtimes
    bold = out / "sub-0004" / "func" / "sub-0004_task-rest_bold.nii.gz"
    expected = np.asarray(nib.load(bold).dataobj)
    (out / MARKER).unlink()  # as if killed while writing
    bold.unlink()
    summary = simulate_cohort(out, **SMALL)
    assert summary.generated and (out / MARKER).exists()
    assert np.array_equal(np.asarray(nib.load(bold).dataobj), expected)


def test_refuses_to_overwrite_other_data_without_permission(tmp_path):
    out = tmp_path / "cohort"
    simulate_cohort(out, **SMALL)
    with pytest.raises(BrainlitDataError, match="overwrite"):
        simulate_cohort(out, **{**SMALL, "n_subjects": 3})
    summary = simulate_cohort(out, **{**SMALL, "n_subjects": 3}, overwrite=True)
    assert summary.generated and not (out / "sub-0004").exists()
    foreign = tmp_path / "my_bids"
    foreign.mkdir()
    (foreign / "participants.tsv").write_text("participant_id\n")
    with pytest.raises(BrainlitDataError, match="not a brainlit simulated cohort"):
        simulate_cohort(foreign, **SMALL)


@pytest.fixture(scope="module")
def roi_cohort():
    return simulate_roi_timeseries(n_subjects=120, n_rois=16, n_volumes=150, seed=5)


def test_age_is_recoverable_from_fc_but_not_trivially(roi_cohort):
    ids = list(roi_cohort.phenotypes["participant_id"])
    series = dict(zip(ids, roi_cohort.roi_timeseries, strict=True))
    age = roi_cohort.phenotypes.set_index("participant_id")["age"]
    splits = KFold(5, shuffle=True, random_state=0).split(ids)
    folds = {k: ([ids[i] for i in tr], [ids[i] for i in te]) for k, (tr, te) in enumerate(splits)}
    predictions = predict_baselines(series, age, folds, models=["kernel_ridge_fc", "mean"])
    results = score_predictions(predictions.assign(repeat=0)).groupby("model")[["mae", "pearson_r"]].mean()
    assert results.loc["kernel_ridge_fc", "mae"] < 0.85 * results.loc["mean", "mae"]
    assert 0.4 < results.loc["kernel_ridge_fc", "pearson_r"] < 0.95


def test_no_single_roi_variance_gives_age_away(roi_cohort):
    variance = roi_cohort.roi_timeseries.var(axis=2)  # [N, R]
    age = roi_cohort.phenotypes["age"].to_numpy()
    correlations = [abs(np.corrcoef(variance[:, r], age)[0, 1]) for r in range(variance.shape[1])]
    assert max(correlations) < 0.5


@pytest.fixture(scope="module")
def camcan(tmp_path_factory):
    root = tmp_path_factory.mktemp("camcan")
    return write_camcan_tree(root, n_subjects=7, seed=0, corrupt_subjects=2, n_rois=8, n_volumes=30)


def _preproc(root, ccid):
    func = root / "derivatives" / "fmriprep" / f"sub-{ccid}" / "func"
    return func / f"sub-{ccid}_task-Rest_space-MNI152NLin2009cAsym_desc-preproc_bold.nii.gz"


def test_camcan_cattell_summary_is_messy(camcan):
    path = camcan / "cc700-scored" / "Cattell" / "release001" / "summary" / "Cattell_summary.txt"
    lines = path.read_text().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("CCID\t"))
    assert header == 8 and "TotalScore" in lines[header].split("\t")
    assert "\t" not in lines[-1] and not lines[-1].startswith("CC")  # footer after the records
    records = io.StringIO("\n".join(lines[header:-1]))
    table = pd.read_csv(records, sep="\t", dtype=str, keep_default_na=False)
    assert len(table) == 7
    assert list(table["TotalScore"][1:4]) == list(CAMCAN_BAD_SCORES)
    scores = pd.to_numeric(table["TotalScore"], errors="coerce")
    assert scores.notna().sum() == 4 and scores.dropna().between(0, 46).all()


def test_camcan_images_confounds_and_demographics(camcan):
    standard = pd.read_csv(camcan / "standard_data.csv")
    assert {"CCID", "Age", "Sex"} <= set(standard.columns) and len(standard) == 7
    assert set(standard["Sex"]) <= {"MALE", "FEMALE"}
    image = nib.load(_preproc(camcan, "CC110001"))
    assert image.shape[3] == 30 and image.header.get_zooms()[3] == pytest.approx(1.97)
    assert np.asarray(image.dataobj).any()
    for ccid in ("CC110006", "CC110007"):  # the two corrupt subjects, the last ones
        with pytest.raises(Exception):  # noqa: B017 - whatever nibabel raises for a broken file
            np.asarray(nib.load(_preproc(camcan, ccid)).dataobj)
    bold = str(_preproc(camcan, "CC110002"))
    confounds = pd.read_csv(
        bold.replace("preproc_bold.nii.gz", "confounds_timeseries.tsv"), sep="\t"
    )
    motion = ["trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z"]
    expected = motion + [f"{m}_derivative1" for m in motion]
    expected += ["white_matter", "csf", "global_signal", "framewise_displacement"]
    assert list(confounds.columns) == expected and len(confounds) == 30
    displacement = confounds["framewise_displacement"]
    assert np.isnan(displacement[0]) and (displacement[1:] > 0).all()
    assert (camcan / "atlas.nii.gz").exists()


def test_cli_writes_a_cohort(tmp_path, capsys):
    main([str(tmp_path / "cli"), "--n-subjects", "2", "--seed", "3", "--n-jobs", "1"])
    assert "2 subjects, 32 regions, 150 volumes" in capsys.readouterr().out
    assert _bold(tmp_path / "cli", "sub-0002").shape[3] == 150


def test_cli_explains_a_parameter_clash(tmp_path, capsys):
    main([str(tmp_path / "cli"), "--n-subjects", "1", "--n-jobs", "1"])
    with pytest.raises(SystemExit):
        main([str(tmp_path / "cli"), "--n-subjects", "2", "--n-jobs", "1"])
    assert "--overwrite" in capsys.readouterr().err

"""Pre-extracted ROI series as people have them: .npy, .mat, HDF5, sidecar TRs, either orientation."""

import json
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import scipy.io
import scipy.signal

from brainlit.data.cache import CacheReader
from brainlit.data.datamodule import FMRIDataModule
from brainlit.data.parcellate import Parcellator
from brainlit.data.sources import SubjectRecord, discover_subjects
from brainlit.errors import BrainlitConfigError, BrainlitDataError
from tests.data.conftest import AFFINE, labels_atlas, write_bold

RAW = dict(detrend=False, standardize=False, min_timepoints=50)


def roi_series(n_t: int, n_r: int, seed: int = 0) -> np.ndarray:
    """``[T, R]`` random walks, different per ROI."""
    return np.random.default_rng(seed).standard_normal((n_t, n_r)).cumsum(axis=0)


def write_matlab_v73(path: Path, name: str, matrix: np.ndarray) -> None:
    """What MATLAB's ``save -v7.3`` writes: HDF5 behind a 512-byte MAT header, column-major."""
    with h5py.File(path, "w", userblock_size=512) as h5:
        h5[name] = matrix.T
    header = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, HDF5 schema 1.00 ."
    with open(path, "r+b") as file:
        file.write(header.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02" + b"IM")


def transform(root: Path, sid: str, **options) -> tuple[np.ndarray, float]:
    records = {r.subject_id: r for r in discover_subjects(root, layout="arrays", **{
        k: v for k, v in options.items() if k in ("array_key", "array_layout")})}
    return Parcellator(**options).transform(records[sid])


def test_mat_and_hdf5_files_give_their_only_matrix_or_the_named_one(tmp_path):
    series = {i: roi_series(120, 6, seed=i) for i in range(1, 5)}
    scipy.io.savemat(tmp_path / "sub-01.mat", {"ts": series[1], "TR": 2.0, "labels": np.arange(6)})
    with h5py.File(tmp_path / "sub-02.h5", "w") as h5:
        h5["derivatives/roi_ts"] = series[2]
        h5["tr"] = 2.0
    write_matlab_v73(tmp_path / "sub-03.mat", "ts", series[3])
    with h5py.File(tmp_path / "sub-04.hdf5", "w") as h5:
        h5["bold"], h5["motion"] = series[4], np.ones((120, 6))

    for i in (1, 2, 3):
        extracted, _ = transform(tmp_path, f"sub-0{i}", **RAW)
        assert extracted.shape == (6, 120)
        np.testing.assert_allclose(extracted, series[i].T, rtol=1e-5)
    with pytest.raises(BrainlitDataError, match=r"sub-04 .*2 numeric matrices \(bold \[120, 6\], motion \[120, 6\]\).*set data.array_key"):
        transform(tmp_path, "sub-04", **RAW)
    extracted, _ = transform(tmp_path, "sub-04", array_key="bold", **RAW)
    np.testing.assert_allclose(extracted, series[4].T, rtol=1e-5)
    with pytest.raises(BrainlitDataError, match=r"sub-01 .*has no array 'bold' \(it holds ts \[120, 6\], TR \[1, 1\], labels \[1, 6\]\)"):
        transform(tmp_path, "sub-01", array_key="bold", **RAW)


def test_sidecar_tr_is_the_runs_tr_and_a_mismatch_names_the_sidecar(tmp_path):
    for i, t_r in enumerate((0.72, 0.72, 2.0), start=1):
        np.save(tmp_path / f"sub-0{i}.npy", roi_series(120, 6, seed=i))
        (tmp_path / f"sub-0{i}.json").write_text(json.dumps({"RepetitionTime": t_r, "TaskName": "rest"}))
    data = FMRIDataModule(str(tmp_path), layout="arrays", targets=[], min_timepoints=50)
    report = data.prepare_data()

    assert report.built == 2 and [s for s, _, _ in report.skipped] == ["sub-03"]
    reason = report.skipped[0][2]
    assert "TR 2.000 s (RepetitionTime in" in reason and "sub-03.json" in reason
    assert "differs from the cohort's 0.720 s" in reason
    with h5py.File(data.cache_path) as h5:
        assert h5["subjects/sub-01"].attrs["t_r"] == pytest.approx(0.72)
    assert data.roi_coordinates is None  # the default atlas's centres are not these 6 ROIs'


def test_an_array_stored_the_other_way_round_is_named_with_the_option_to_set(tmp_path):
    for i in range(1, 4):
        np.save(tmp_path / f"sub-0{i}.npy", roi_series(150 + i, 10, seed=i))  # [T, R]
    np.save(tmp_path / "sub-04.npy", roi_series(160, 10, seed=4).T)  # [R, T]
    report = FMRIDataModule(str(tmp_path), layout="arrays", targets=[], t_r=2.0).prepare_data()

    assert report.built == 3 and [s for s, _, _ in report.skipped] == ["sub-04"]
    reason = report.skipped[0][2]
    assert "looks transposed: read as [T, R] (data.array_layout TR) it has 10 time points and 160 ROIs" in reason
    assert "its 10 rows match the 10 ROIs of the cohort's other arrays" in reason
    assert reason.endswith("set data.array_layout: RT.")


@pytest.mark.parametrize(("shape", "sign"), [
    ((94, 1200), "94 time points is under data.min_timepoints 100, 1200 is not"),
    ((120, 960), "960 ROIs is at least 8 times its 120 time points"),
])
def test_a_lone_transposed_array_is_recognised_by_its_shape(tmp_path, shape, sign):
    np.save(tmp_path / "sub-01.npy", np.zeros(shape))
    with pytest.raises(BrainlitDataError, match="looks transposed") as error:
        transform(tmp_path, "sub-01", t_r=2.0)
    assert sign in str(error.value) and "data.array_layout: RT" in str(error.value)


def test_a_whole_cohort_stored_roi_by_time_stops_at_once_and_rt_reads_it(tmp_path):
    stored = {i: roi_series(140 + 10 * i, 8, seed=i).T for i in range(1, 4)}  # [R, T], T varies
    for i, matrix in stored.items():
        np.save(tmp_path / f"sub-0{i}.npy", matrix)
    with pytest.raises(BrainlitConfigError, match=r"look transposed.*every one has 8 time points.*set data.array_layout: RT"):
        discover_subjects(tmp_path, layout="arrays")

    for i, matrix in stored.items():
        extracted, _ = transform(tmp_path, f"sub-0{i}", array_layout="RT", **RAW)
        np.testing.assert_allclose(extracted, matrix, rtol=1e-5)


def test_raw_scanner_units_are_detrended_and_zscored_as_a_nifti_run_is(tmp_path):
    n_t = 120
    drift = 4.0 * np.arange(n_t)[:, None]
    raw = 12000 + 300 * roi_series(n_t, 6, seed=3) + drift  # scanner units: big offset, scale, trend
    np.save(tmp_path / "sub-01.npy", raw)
    from_array, _ = transform(tmp_path, "sub-01", t_r=2.0, min_timepoints=50)

    expected = scipy.signal.detrend(raw, axis=0)
    expected /= expected.std(axis=0, ddof=1)
    np.testing.assert_allclose(from_array, expected.T, atol=1e-4)
    assert np.abs(from_array.mean(axis=1)).max() < 1e-5

    labels = labels_atlas(6)
    voxels = np.zeros((*labels.shape, n_t))
    voxels[labels > 0] = raw[:, labels[labels > 0] - 1].T  # every voxel of ROI r carries raw[:, r]
    write_bold(tmp_path / "nifti/sub-01_task-rest_bold.nii.gz", data=voxels)
    nib.save(nib.Nifti1Image(labels, AFFINE), tmp_path / "atlas.nii.gz")
    record = SubjectRecord("sub-01", bold_path=tmp_path / "nifti/sub-01_task-rest_bold.nii.gz")
    from_nifti, _ = Parcellator(str(tmp_path / "atlas.nii.gz"), min_timepoints=50).transform(record)
    np.testing.assert_allclose(from_array, from_nifti, atol=1e-3)


def test_array_options_key_the_cache_and_brainlit_files_are_not_subjects(tmp_path):
    base = Parcellator().fingerprint()
    assert Parcellator(array_key="ts").fingerprint() != base
    assert Parcellator(array_layout="RT").fingerprint() != base

    for i in range(1, 4):
        np.save(tmp_path / f"sub-0{i}.npy", roi_series(120, 6, seed=i))
    data = FMRIDataModule(str(tmp_path), layout="arrays", targets=[], t_r=2.0, min_timepoints=50)
    data.prepare_data()  # writes brainlit_cache.h5 and its skip report into the same folder
    assert (tmp_path / "brainlit_cache.h5").is_file() and (tmp_path / "brainlit_cache.h5.skipped.tsv").is_file()
    assert [r.subject_id for r in discover_subjects(tmp_path, layout="arrays")] == ["sub-01", "sub-02", "sub-03"]
    assert CacheReader(data.cache_path).n_rois == 6

"""The HDF5 cache: content keys, resumption after a crash, skip reports, lazy readers."""

import os
import pickle

import h5py
import nibabel as nib
import numpy as np
import pandas as pd
import pytest

import brainlit.data.cache as cache_module
from brainlit.data.cache import CacheReader, build_cache
from brainlit.data.parcellate import Parcellator
from brainlit.data.sources import discover_subjects, load_phenotypes
from brainlit.errors import BrainlitDataError
from tests.data.conftest import AFFINE, labels_atlas


def build(root, cache, atlas=None, **kwargs):
    parcellator = Parcellator(str(atlas or root / "atlas.nii.gz"), min_timepoints=50)
    return build_cache(discover_subjects(root), parcellator, cache, load_phenotypes(root), **kwargs)


def test_second_build_does_no_work_and_reads_back(bids, tmp_path):
    cache = tmp_path / "c.h5"
    first = build(bids, cache)
    assert (first.built, first.reused, first.skipped) == (5, 0, [])
    second = build(bids, cache)
    assert (second.built, second.reused) == (0, 5)
    reader = CacheReader(cache)
    assert reader.subject_ids == [f"sub-{i:02d}" for i in range(1, 6)]
    assert reader.timeseries("sub-01").shape == (6, 60) and reader.n_rois == 6
    assert reader.phenotypes.loc["sub-04", "age"] == 70 and np.isnan(reader.phenotypes.loc["sub-03", "age"])
    assert reader.roi_coordinates.shape == (6, 3)


def test_changed_atlas_rebuilds_all_and_touched_file_rebuilds_one(bids, tmp_path):
    cache = tmp_path / "c.h5"
    build(bids, cache)
    run = bids / "sub-02/func/sub-02_task-rest_bold.nii.gz"
    os.utime(run, ns=(run.stat().st_atime_ns, run.stat().st_mtime_ns + 10**9))
    touched = build(bids, cache)
    assert (touched.built, touched.reused) == (1, 4)
    nib.save(nib.Nifti1Image(labels_atlas(3), AFFINE), bids / "atlas.nii.gz")
    rebuilt = build(bids, cache)
    assert (rebuilt.built, rebuilt.reused) == (5, 0)
    assert CacheReader(cache).n_rois == 3


def test_build_killed_midway_resumes_with_nothing_corrupt(bids, tmp_path, monkeypatch):
    cache = tmp_path / "c.h5"
    real_write = cache_module._write
    calls = {"n": 0}

    def dies_on_third(h5, record, series, t_r):
        calls["n"] += 1
        if calls["n"] == 3:  # the group exists under its temporary name, then the process dies
            h5.create_group(f"tmp-{record.subject_id}").create_dataset("timeseries", data=series[:, :5])
            raise KeyboardInterrupt
        real_write(h5, record, series, t_r)

    monkeypatch.setattr(cache_module, "_write", dies_on_third)
    with pytest.raises(KeyboardInterrupt):
        build(bids, cache)
    assert len(CacheReader(cache).subject_ids) == 2  # only complete subjects read as valid
    monkeypatch.setattr(cache_module, "_write", real_write)
    resumed = build(bids, cache)
    assert (resumed.built, resumed.reused) == (3, 2)
    with h5py.File(cache) as h5:
        assert not [name for name in h5 if name.startswith("tmp-")]
        assert all(h5["subjects"][s]["timeseries"].shape == (6, 60) for s in h5["subjects"])


def test_unreadable_cache_file_is_moved_aside_and_rebuilt(bids, tmp_path):
    cache = tmp_path / "c.h5"
    build(bids, cache)
    cache.write_bytes(cache.read_bytes()[:2000])  # truncated by a crash or a full disk
    report = build(bids, cache)
    assert report.built == 5
    assert list(tmp_path.glob("c.h5.corrupt-*"))


def test_bad_subjects_are_skipped_reported_and_not_retried(bids, tmp_path):
    bad = bids / "sub-03/func/sub-03_task-rest_bold.nii.gz"
    bad.write_bytes(b"garbage")
    cache = tmp_path / "c.h5"
    report = build(bids, cache)
    assert report.built == 4 and [s for s, _, _ in report.skipped] == ["sub-03"]
    table = pd.read_csv(f"{cache}.skipped.tsv", sep="\t")
    assert table.loc[0, "subject_id"] == "sub-03" and str(bad) in table.loc[0, "file"]
    assert "sub-03" not in CacheReader(cache).subject_ids
    again = build(bids, cache)
    assert (again.built, again.reused, len(again.skipped)) == (0, 4, 1)
    with pytest.raises(BrainlitDataError, match="sub-03"):
        build(bids, tmp_path / "fresh.h5", on_error="raise")


def test_two_workers_give_the_same_cache(bids, tmp_path):
    build(bids, tmp_path / "one.h5")
    build(bids, tmp_path / "two.h5", n_jobs=2)
    one, two = CacheReader(tmp_path / "one.h5"), CacheReader(tmp_path / "two.h5")
    for sid in one.subject_ids:
        np.testing.assert_array_equal(one.timeseries(sid), two.timeseries(sid))


def test_reader_pickles_without_its_handle(bids, tmp_path):
    build(bids, tmp_path / "c.h5")
    reader = CacheReader(tmp_path / "c.h5")
    reader.timeseries("sub-01")
    clone = pickle.loads(pickle.dumps(reader))
    assert clone._h5 is None
    np.testing.assert_array_equal(clone.timeseries("sub-01"), reader.timeseries("sub-01"))

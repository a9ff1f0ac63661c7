"""The cache built on a Dask cluster equals the one built by local processes."""

import h5py
import numpy as np
import pandas as pd
import pytest

from brainlit.data.cache import CacheReader, build_cache
from brainlit.data.datamodule import FMRIDataModule
from brainlit.data.parcellate import Parcellator
from brainlit.data.sources import discover_subjects, load_phenotypes
from brainlit.errors import BrainlitDataError

distributed = pytest.importorskip("distributed")


def build(root, cache, **kwargs):
    parcellator = Parcellator(str(root / "atlas.nii.gz"), min_timepoints=50)
    return build_cache(discover_subjects(root), parcellator, cache, load_phenotypes(root), **kwargs)


def contents(cache):
    reader = CacheReader(cache)
    series = {sid: reader.timeseries(sid) for sid in reader.subject_ids}
    with h5py.File(cache) as h5:
        meta = {k: v for k, v in h5["meta"].attrs.items()}
    return series, reader.phenotypes, meta


def test_dask_cluster_of_two_workers_builds_the_same_cache_as_loky(bids, tmp_path):
    loky = build(bids, tmp_path / "loky.h5", n_jobs=2)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        report = build(
            bids, tmp_path / "dask.h5", backend="dask", scheduler=cluster.scheduler_address
        )
        assert len(cluster.scheduler.workers) == 2
        # the workers ran the parcellation: each task left its key in the scheduler's log
        assert any("_extract" in str(event[0]) for event in cluster.scheduler.transition_log)
    assert (report.built, report.reused, len(report.skipped)) == (loky.built, 0, 0) == (5, 0, 0)
    loky_series, loky_phenotypes, loky_meta = contents(tmp_path / "loky.h5")
    dask_series, dask_phenotypes, dask_meta = contents(tmp_path / "dask.h5")
    assert list(dask_series) == list(loky_series) == [f"sub-{i:02d}" for i in range(1, 6)]
    for sid, series in loky_series.items():
        np.testing.assert_array_equal(dask_series[sid], series)
    pd.testing.assert_frame_equal(dask_phenotypes, loky_phenotypes)
    assert dask_meta["fingerprint"] == loky_meta["fingerprint"]


def test_datamodule_passes_backend_and_scheduler_to_the_cache(bids, tmp_path):
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
    ) as cluster:
        data = FMRIDataModule(
            str(bids),
            cache_path=str(tmp_path / "c.h5"),
            atlas=str(bids / "atlas.nii.gz"),
            min_timepoints=50,
            backend="dask",
            scheduler=cluster.scheduler_address,
        )
        report = data.prepare_data()
    assert report.built == 5 and data.n_rois == 6


def test_unreachable_scheduler_is_a_clear_error(bids, tmp_path):
    import dask

    with (
        dask.config.set({"distributed.comm.timeouts.connect": "1s"}),
        pytest.raises(
            BrainlitDataError, match="data.scheduler tcp://127.0.0.1:9.*no Dask scheduler"
        ),
    ):
        build(bids, tmp_path / "c.h5", backend="dask", scheduler="tcp://127.0.0.1:9")


@pytest.mark.slow
def test_without_a_scheduler_a_local_cluster_of_n_jobs_processes_builds_it(bids, tmp_path):
    report = build(bids, tmp_path / "c.h5", backend="dask", n_jobs=2)
    assert (report.built, len(report.skipped)) == (5, 0)
    assert CacheReader(tmp_path / "c.h5").timeseries("sub-03").shape == (6, 60)

"""The cache under faults: killed builds, concurrent builders, busy, read-only and full disks."""

import errno
import fcntl
import hashlib
import logging
import subprocess
import sys
import threading
import time

import h5py
import numpy as np
import pytest

import brainlit.data.cache as cache_module
from brainlit.data.cache import CacheReader
from brainlit.errors import BrainlitOutputError
from tests.reliability.conftest import (
    brainlit,
    data_args,
    datamodule,
    kill_when,
    make_read_only,
    read_only_prefix,
)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_same_cache(cache, reference) -> None:
    """Every subject of ``reference`` is in ``cache``, complete, with the same series."""
    got, want = CacheReader(cache), CacheReader(reference)
    assert got.subject_ids == want.subject_ids
    for subject in want.subject_ids:
        np.testing.assert_array_equal(got.timeseries(subject), want.timeseries(subject))
    with h5py.File(cache, "r") as h5:
        assert not [name for name in h5 if name.startswith("tmp-")]


@pytest.fixture
def reference(cohort, tmp_path_factory):
    """The cache of ``cohort`` built without interruption."""
    path = tmp_path_factory.mktemp("reference") / "cache.h5"
    datamodule(cohort, path).prepare_data()
    return path


def test_build_killed_as_it_starts_resumes_without_a_corrupt_file(cohort, tmp_path, reference):
    cache = tmp_path / "cache.h5"
    kill_when(["cache", *data_args(cohort, cache)], tmp_path, "cache.h5")
    report = datamodule(cohort, cache).prepare_data()
    assert report.built + report.reused == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.h5", "cache.h5.lock", "cache.h5.skipped.tsv"]
    assert_same_cache(cache, reference)


def test_second_builder_says_it_waits_then_reuses_the_first_ones_work(cohort, tmp_path, caplog):
    cache = tmp_path / "cache.h5"
    datamodule(cohort, cache).prepare_data()
    lock = open(f"{cache}.lock", "w")  # another builder holds the lock for a second
    fcntl.flock(lock, fcntl.LOCK_EX)
    threading.Timer(1.0, lock.close).start()
    start = time.monotonic()
    with caplog.at_level(logging.INFO, logger="brainlit.data.cache"):
        report = datamodule(cohort, cache).prepare_data()
    assert time.monotonic() - start >= 1.0
    assert f"Another process is building {cache}: waiting for it" in caplog.text
    assert (report.built, report.reused) == (0, 8)


@pytest.mark.slow  # two processes importing torch and Lightning on two cores: about 20 s
def test_two_cache_commands_at_once_build_each_subject_once(cohort, tmp_path, reference):
    cache = tmp_path / "cache.h5"
    cmd = [sys.executable, "-m", "brainlit", "cache", *data_args(cohort, cache)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    summaries = sorted(out.splitlines()[0] for out, _ in outputs)
    assert summaries == [f"Cache {cache}: 8 subjects (0 built, 8 reused), 0 skipped",
                         f"Cache {cache}: 8 subjects (8 built, 0 reused), 0 skipped"]
    assert_same_cache(cache, reference)


def test_cache_open_in_another_process_is_not_mistaken_for_corrupt(cohort, tmp_path):
    cache = tmp_path / "cache.h5"
    datamodule(cohort, cache).prepare_data()
    before = digest(cache)
    code = f"import h5py, time; f = h5py.File({str(cache)!r}, 'r'); print('open', flush=True); time.sleep(60)"
    reader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert reader.stdout.readline().strip() == "open"
        with pytest.raises(BrainlitOutputError, match=f"cache {cache} is open elsewhere"):
            datamodule(cohort, cache, detrend=False).prepare_data()  # new settings: needs a rebuild
    finally:
        reader.kill()
        reader.wait()
    assert digest(cache) == before
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_full_disk_names_the_cache_and_keeps_the_subjects_written(cohort, tmp_path, monkeypatch, reference):
    cache = tmp_path / "cache.h5"
    real_create = h5py.Group.create_dataset
    written = []

    def fills_up_after_three(group, name, *args, **kwargs):
        if group.name.startswith("/tmp-"):  # a subject's series, written before it is committed
            if len(written) == 3:
                raise OSError(errno.ENOSPC, "No space left on device")
            written.append(group.name)
        return real_create(group, name, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", fills_up_after_three)
    with pytest.raises(BrainlitOutputError, match=f"cannot write the cache {cache} .*No space left on device"):
        datamodule(cohort, cache).prepare_data()
    assert len(CacheReader(cache).subject_ids) == 3
    monkeypatch.undo()
    report = datamodule(cohort, cache).prepare_data()
    assert (report.built, report.reused) == (5, 3)
    assert_same_cache(cache, reference)


def test_unwritable_cache_file_is_reported_not_moved_aside(cohort, tmp_path, monkeypatch):
    cache = tmp_path / "cache.h5"
    datamodule(cohort, cache).prepare_data()
    before = digest(cache)
    real_file = h5py.File

    def read_only(name, mode="r", *args, **kwargs):
        if mode != "r":
            raise PermissionError(errno.EACCES, "Permission denied", str(name))
        return real_file(name, mode, *args, **kwargs)

    monkeypatch.setattr(cache_module.h5py, "File", read_only)
    with pytest.raises(BrainlitOutputError, match=f"cannot write the cache {cache} .*Permission denied"):
        datamodule(cohort, cache, detrend=False).prepare_data()
    assert digest(cache) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache.h5", "cache.h5.lock", "cache.h5.skipped.tsv"]


@pytest.fixture
def read_only_cache(cohort, tmp_path):
    """A cache built in ``shared/``, then the folder and its files made read-only."""
    folder = tmp_path / "shared"
    datamodule(cohort, folder / "cache.h5").prepare_data()
    make_read_only(folder)
    yield folder / "cache.h5"
    folder.chmod(0o755)


def test_read_only_folder_names_the_cache_when_it_needs_a_write(cohort, read_only_cache):
    cache, prefix = read_only_cache, read_only_prefix()
    before = digest(cache)
    stale = brainlit("cache", *data_args(cohort, cache, "--data.detrend", "false"), prefix=prefix)
    assert stale.returncode == 2
    assert stale.stderr.splitlines()[-1].startswith(f"error: cannot write the cache {cache} (")
    assert "Traceback" not in stale.stderr
    assert digest(cache) == before
    assert sorted(p.name for p in cache.parent.iterdir()) == ["cache.h5", "cache.h5.lock", "cache.h5.skipped.tsv"]


@pytest.mark.slow  # a second subprocess: about 10 s
def test_read_only_folder_still_serves_an_up_to_date_cache(cohort, read_only_cache):
    current = brainlit("cache", *data_args(cohort, read_only_cache), prefix=read_only_prefix())
    assert current.returncode == 0, current.stderr[-2000:]
    assert current.stdout.startswith(f"Cache {read_only_cache}: 8 subjects (0 built, 8 reused)")

"""A corpus larger than memory: training windows are read from the HDF5 file alone, and under
DDP each rank reads its own shard of the subjects."""

import numpy as np
import pytest
import torch
from torch.utils.data import DistributedSampler

from brainlit.data.cache import CacheReader
from brainlit.data.datamodule import FMRIDataModule, SubjectDataset


@pytest.fixture(scope="module")
def built_cache(tiny_bids, tmp_path_factory):
    """The tiny BIDS cohort's cache (20 subjects, 16 regions, 80 volumes)."""
    cache = tmp_path_factory.mktemp("stream") / "cache.h5"
    FMRIDataModule(str(tiny_bids), cache_path=str(cache), atlas=str(tiny_bids / "atlas.nii.gz"),
                   min_timepoints=50).prepare_data()
    return cache


class CountingReader:
    """A CacheReader that counts what each read asked for."""

    def __init__(self, path):
        self.reader, self.reads = CacheReader(path), []

    def window(self, subject_id, start, length):
        self.reads.append((subject_id, length))
        return self.reader.window(subject_id, start, length)

    def n_timepoints(self, subject_id):
        return self.reader.n_timepoints(subject_id)

    def timeseries(self, subject_id):
        raise AssertionError("a training item read a whole run")


def test_training_items_read_one_window_and_match_the_run(built_cache):
    reader = CountingReader(built_cache)
    ids = reader.reader.subject_ids
    torch.manual_seed(0)
    dataset = SubjectDataset(reader, ids, np.zeros((len(ids), 0), np.float32), n_timepoints=40, crop_len=16)
    item = dataset[3]
    assert item["x"].shape == (reader.reader.n_rois, 16) and reader.reads == [(ids[3], 16)]
    run = reader.reader.timeseries(ids[3])
    starts = [s for s in range(run.shape[1] - 15) if np.array_equal(run[:, s : s + 16], item["x"].numpy())]
    assert len(starts) == 1  # a real window of that subject's run


def test_under_ddp_each_rank_reads_its_own_shard_of_subjects(built_cache):
    ids = CacheReader(built_cache).subject_ids
    shards = []
    for rank in (0, 1):
        reader = CountingReader(built_cache)
        dataset = SubjectDataset(reader, ids, np.zeros((len(ids), 0), np.float32), n_timepoints=40, crop_len=16)
        for index in DistributedSampler(dataset, num_replicas=2, rank=rank, shuffle=True, seed=0):
            dataset[index]
        shards.append({sid for sid, _ in reader.reads})
    assert not shards[0] & shards[1] and shards[0] | shards[1] == set(ids)

"""Two windows of a subject per training item, for the contrastive pretext."""

import pytest
import torch

from brainlit.data.datamodule import FMRIDataModule, SubjectDataset


def test_two_views_are_two_windows_of_the_same_run_and_evaluation_stays_whole(tiny_bids, tmp_path):
    torch.manual_seed(0)
    dm = FMRIDataModule(str(tiny_bids), atlas=str(tiny_bids / "atlas.nii.gz"), cache_path=str(tmp_path / "c.h5"),
                        min_timepoints=50, targets=[], n_folds=1, crop_len=24, batch_size=4, views=2)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == batch["x2"].shape == (4, 16, 24)
    assert not torch.equal(batch["x"], batch["x2"])  # independent windows
    for x, x2, subject_id in zip(batch["x"], batch["x2"], batch["subject_id"], strict=True):
        run = torch.from_numpy(dm.reader.timeseries(subject_id))  # [R, T]
        for window in (x, x2):
            starts = [s for s in range(run.shape[1] - 23) if torch.equal(run[:, s : s + 24], window)]
            assert len(starts) == 1  # each view is a window of this subject's own run
    val = next(iter(dm.val_dataloader()))
    assert "x2" not in val and val["x"].shape[-1] == dm.n_timepoints


def test_only_one_or_two_views():
    with pytest.raises(ValueError, match="data.views"):
        SubjectDataset(reader=None, subject_ids=[], targets=None, n_timepoints=10, views=3)

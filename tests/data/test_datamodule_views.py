"""Two windows of a subject per training item, for the contrastive pretext."""

import pytest
import torch

from brainlit.data.datamodule import FMRIDataModule, SubjectDataset


def window_starts(dm: FMRIDataModule, crop_len: int) -> list[tuple[int, int]]:
    """Where the two views of each item of a training batch start in their subject's run."""
    batch = next(iter(dm.train_dataloader()))
    assert batch["x"].shape == batch["x2"].shape == (4, 16, crop_len)
    pairs = []
    for x, x2, subject_id in zip(batch["x"], batch["x2"], batch["subject_id"], strict=True):
        run = torch.from_numpy(dm.reader.timeseries(subject_id))  # [R, T]
        starts = [[s for s in range(run.shape[1] - crop_len + 1) if torch.equal(run[:, s : s + crop_len], w)]
                  for w in (x, x2)]
        assert [len(s) for s in starts] == [1, 1]  # each view is a window of this subject's own run
        pairs.append((starts[0][0], starts[1][0]))
    return pairs


def datamodule(root, tmp_path, crop_len: int) -> FMRIDataModule:
    dm = FMRIDataModule(str(root), atlas=str(root / "atlas.nii.gz"), cache_path=str(tmp_path / "c.h5"),
                        min_timepoints=50, targets=[], n_folds=1, crop_len=crop_len, batch_size=4, views=2)
    dm.setup("fit")
    return dm


def test_two_views_are_disjoint_windows_of_the_same_run_and_evaluation_stays_whole(tiny_bids, tmp_path):
    torch.manual_seed(0)
    dm = datamodule(tiny_bids, tmp_path, crop_len=24)  # 80-volume runs hold two windows
    pairs = window_starts(dm, 24)
    assert all(abs(a - b) >= 24 for a, b in pairs)  # no shared time point
    assert any(a > b for a, b in pairs) and any(a < b for a, b in pairs)  # either may come first
    val = next(iter(dm.val_dataloader()))
    assert "x2" not in val and val["x"].shape[-1] == dm.n_timepoints


def test_views_of_a_run_too_short_for_two_windows_are_drawn_independently(tiny_bids, tmp_path):
    torch.manual_seed(0)
    pairs = window_starts(datamodule(tiny_bids, tmp_path, crop_len=48), 48)
    assert any(abs(a - b) < 48 for a, b in pairs)


def test_only_one_or_two_views():
    with pytest.raises(ValueError, match="data.views"):
        SubjectDataset(reader=None, subject_ids=[], targets=None, n_timepoints=10, views=3)

"""FMRIDataModule: folds, target scaling, batches, workers."""

import numpy as np
import pandas as pd
import pytest
import torch

from brainlit.data.datamodule import FMRIDataModule
from brainlit.data.simulate import simulate_cohort
from brainlit.errors import BrainlitDataError


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort")
    simulate_cohort(root, n_subjects=24, n_rois=8, n_volumes=60, seed=3)
    return root


def datamodule(root, **kwargs):
    args = dict(atlas=str(root / "atlas.nii.gz"), cache_path=str(root / "cache.h5"), min_timepoints=40,
                crop_len=24, batch_size=4, n_folds=4)
    return FMRIDataModule(str(root), **{**args, **kwargs})


def test_folds_are_subject_disjoint_cover_everyone_and_are_seeded(cohort):
    tests = []
    for fold in range(4):
        dm = datamodule(cohort, fold=fold)
        dm.setup("fit")
        train, val, test = (set(dm.fold_subject_ids(s)) for s in ("train", "val", "test"))
        assert not (train & val) and not (train & test) and not (val & test)
        assert len(train | val | test) == 24
        tests.append(test)
    assert len(set().union(*tests)) == 24
    assert sum(len(t) for t in tests) == 24
    again = datamodule(cohort, fold=2)
    again.setup("fit")
    assert set(again.fold_subject_ids("test")) == tests[2]
    other_seed = datamodule(cohort, fold=2, seed=7)
    other_seed.setup("fit")
    assert set(other_seed.fold_subject_ids("test")) != tests[2]


def test_targets_are_scaled_with_training_subjects_only(cohort):
    dm = datamodule(cohort, targets=["age", "fluid_intelligence"])
    dm.setup("fit")
    phenotypes = pd.read_csv(cohort / "participants.tsv", sep="\t").set_index("participant_id")
    train = phenotypes.loc[dm.fold_subject_ids("train"), ["age", "fluid_intelligence"]]
    np.testing.assert_allclose(dm.target_mean, train.mean().to_numpy(), rtol=1e-5)
    batch = next(iter(dm.test_dataloader()))
    restored = dm.inverse_transform_targets(batch["y"])
    expected = phenotypes.loc[batch["subject_id"], ["age", "fluid_intelligence"]].to_numpy()
    np.testing.assert_allclose(restored.numpy(), expected, rtol=1e-4)


def test_batches_crop_for_training_and_cover_whole_runs_for_evaluation(cohort):
    dm = datamodule(cohort)
    assert dm.n_rois == 8 and dm.target_names == ["age"]
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    assert train["x"].shape == (4, 8, 24) and train["x"].dtype == torch.float32
    assert train["y"].shape == (4, 1) and len(train["subject_id"]) == 4
    evaluation = next(iter(dm.val_dataloader()))
    assert evaluation["x"].shape[1:] == (8, dm.n_timepoints) and dm.n_timepoints == 60


def test_two_loader_workers_read_the_cache(cohort):
    dm = datamodule(cohort, num_workers=2)
    dm.setup("fit")
    ids = [sid for batch in dm.test_dataloader() for sid in batch["subject_id"]]
    assert sorted(ids) == dm.fold_subject_ids("test")


def test_subjects_missing_a_target_are_dropped_and_named(cohort, caplog, tmp_path):
    table = pd.read_csv(cohort / "participants.tsv", sep="\t")
    table.loc[0, "fluid_intelligence"] = np.nan
    path = tmp_path / "phenotypes.tsv"
    table.to_csv(path, sep="\t", index=False)
    dm = datamodule(cohort, targets=["fluid_intelligence"], phenotypes_path=str(path),
                    cache_path=str(tmp_path / "c.h5"))
    dm.setup("fit")
    first = table.loc[0, "participant_id"]
    assert first in caplog.text and "Dropping from training and evaluation (predict still predicts them) 1 subject" in caplog.text and "phenotypes.tsv" in caplog.text
    assert first not in dm.split_table()["subject_id"].tolist()
    strict = datamodule(cohort, targets=["fluid_intelligence"], phenotypes_path=str(path),
                        cache_path=str(tmp_path / "c.h5"), on_error="raise")
    with pytest.raises(BrainlitDataError, match=f"{first}.*on_error: skip"):
        strict.setup("fit")
    pretrain = datamodule(cohort, targets=[], n_folds=1, phenotypes_path=str(path),
                          cache_path=str(tmp_path / "c.h5"))
    pretrain.setup("fit")
    assert len(pretrain.split_table()) == 24  # imaging only: nobody dropped, no test set

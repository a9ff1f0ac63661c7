"""DDP with more ranks than training batches trains on every rank, never on nothing."""

import subprocess
import sys
from types import SimpleNamespace
from unittest.mock import patch

import pandas as pd
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, DistributedSampler

from brainlit.data.datamodule import FMRIDataModule
from brainlit.tasks import EncoderSpec, MoESpec, RegressionTask, SSMSpec
from tests.conftest import REPO
from tests.test_cli import CONFIGS, data_args, small_model

SMALL = {"encoder": EncoderSpec(d_model=16, depth=1, n_heads=2),
         "moe": MoESpec(n_experts=4, expert_hidden=16, graph_topk=4), "ssm": SSMSpec(layers=1, d_state=4)}


def split_file(root, path, n_train: int):
    """``subject_id, split``: the first ``n_train`` subjects train, the rest validate."""
    subjects = sorted(p.name for p in root.glob("sub-*"))
    table = pd.DataFrame({"subject_id": subjects, "split": ["train"] * n_train + ["val"] * (len(subjects) - n_train)})
    table.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("crops_per_subject", [1, 3])
def test_every_rank_gets_a_batch_and_one_process_still_drops_the_partial_one(tiny_bids, tmp_path, crops_per_subject):
    splits = split_file(tiny_bids, tmp_path / "splits.csv", n_train=17)
    datamodule = FMRIDataModule(str(tiny_bids), str(tmp_path / "c.h5"), atlas=str(tiny_bids / "atlas.nii.gz"),
                                min_timepoints=50, split_file=str(splits), batch_size=16,
                                crops_per_subject=crops_per_subject)
    n = 17 * crops_per_subject
    for world_size in (1, 2, 3, 8, 64):
        datamodule.trainer = SimpleNamespace(world_size=world_size)
        loader = datamodule.train_dataloader()
        for rank in range(world_size):  # as Lightning re-wraps it: one padded shard per rank
            sampler = DistributedSampler(loader.dataset, world_size, rank, shuffle=True)
            shard = DataLoader(loader.dataset, loader.batch_size, sampler=sampler, drop_last=loader.drop_last)
            assert len(shard) >= 1, (world_size, rank)
        if world_size == 1:
            assert len(loader) == n // 16  # the partial last batch is still dropped


def test_every_trainable_parameter_of_the_regressor_gets_a_gradient():
    """DDP stops at the first step when a trainable parameter takes no part in the loss."""
    task = RegressionTask(n_rois=8, target_names=["age"], crop_len=32, **SMALL)
    batch = {"x": torch.randn(3, 8, 32), "y": torch.randn(3, 1)}
    with patch.object(task, "log"):
        task.training_step(batch, 0).backward()
    unused = [name for name, p in task.named_parameters() if p.requires_grad and p.grad is None]
    assert unused == []


@pytest.mark.slow  # two processes, each importing torch and Lightning: about 25 s
def test_two_process_ddp_on_17_training_subjects_with_batch_16_trains(tiny_bids, tmp_path):
    splits = split_file(tiny_bids, tmp_path / "splits.csv", n_train=17)
    cmd = [sys.executable, "-m", "brainlit", "fit", "--config", str(CONFIGS / "finetune_age.yaml"),
           *data_args(tiny_bids, tmp_path / "cache.h5"), *small_model("finetune"),
           "--data.split_file", str(splits), "--data.batch_size", "16",
           "--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp",
           "--trainer.precision", "32-true", "--trainer.max_epochs", "2", "--trainer.log_every_n_steps", "1",
           "--trainer.logger.init_args.save_dir", str(tmp_path / "runs"), "--trainer.default_root_dir", str(tmp_path)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "No training batches" not in done.stderr
    [events_dir] = {p.parent for p in (tmp_path / "runs").rglob("events.out.tfevents*")}
    events = EventAccumulator(str(events_dir))
    events.Reload()
    train_epochs = {int(e.value) for e in events.Scalars("epoch")}
    assert len(events.Scalars("train/loss")) == 2  # one step per epoch: 9 subjects per rank, batch 16
    assert len(events.Scalars("val/age/mae")) == 2
    assert train_epochs == {0, 1}

"""Pretraining pretexts: contrastive and masked + contrastive runs, diagnostics, encoder transfer."""

import lightning as L
import pytest
import torch

from brainlit.data.datamodule import FMRIDataModule
from brainlit.errors import BrainlitConfigError
from brainlit.tasks import EncoderSpec, LMAEPretrainer, RegressionTask
from brainlit.tasks.checkpoints import load_encoder

TINY = EncoderSpec(patch_len=4, d_model=16, depth=1, n_heads=2)


def pretrain(root, tmp_path, pretext: str, views: int) -> tuple[LMAEPretrainer, torch.Tensor]:
    """Two optimiser steps and one validation pass on the 20-subject BIDS cohort; the task and
    its encoder's patch projection before training."""
    torch.manual_seed(0)
    dm = FMRIDataModule(str(root), atlas=str(root / "atlas.nii.gz"), cache_path=str(tmp_path / "c.h5"),
                        min_timepoints=50, targets=[], n_folds=1, val_fraction=0.25, crop_len=32,
                        batch_size=4, views=views)
    task = LMAEPretrainer(n_rois=16, encoder=TINY, pretext=pretext)
    before = task.model.encoder.patch_proj.weight.detach().clone()
    trainer = L.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=2, num_sanity_val_steps=0, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(task, datamodule=dm)
    return task, before


def test_contrastive_pretraining_trains_the_encoder_and_reports_reidentification(tiny_bids, tmp_path, one_thread):
    task, before = pretrain(tiny_bids, tmp_path, "contrastive", views=2)
    values = task.diagnostics["val"]
    assert values["reid_chance"] == pytest.approx(1 / 5)  # 5 held-out subjects
    assert 0.0 <= values["reid_encoder_mean"] <= 1.0 and 0.0 <= values["reid_encoder_fc"] <= 1.0
    assert values["reid_fc"] > values["reid_chance"]  # two halves of a run share its FC fingerprint
    assert "lmae" not in values  # no decoder: nothing reconstructed
    assert not hasattr(task.model, "decoder_pred")
    assert not torch.equal(task.model.encoder.patch_proj.weight, before)  # the encoder was trained


def test_both_pretexts_together_log_reconstruction_and_reidentification(tiny_bids, tmp_path, one_thread):
    values = pretrain(tiny_bids, tmp_path, "both", views=2)[0].diagnostics["val"]
    assert {"lmae", "zero", "reid_encoder_mean", "reid_encoder_fc", "reid_fc"} <= set(values)
    assert values["zero"] == pytest.approx(1.0, abs=0.15)  # z-scored series: zeros score about 1


def test_a_contrastive_pretext_without_two_views_says_which_option_to_set(tiny_bids, tmp_path):
    with pytest.raises(BrainlitConfigError, match="data.views: 2"):
        pretrain(tiny_bids, tmp_path, "contrastive", views=1)


def test_masked_and_contrastive_loss_are_weighted():
    task = LMAEPretrainer(n_rois=4, encoder=TINY, pretext="both", contrastive_weight=0.25)
    total = task.total_loss({"masked": torch.tensor(1.0), "contrastive": torch.tensor(2.0)})
    assert float(total) == pytest.approx(1.5)
    alone = LMAEPretrainer(n_rois=4, encoder=TINY, pretext="contrastive", contrastive_weight=0.25)
    assert float(alone.total_loss({"contrastive": torch.tensor(2.0)})) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="model.pretext"):
        LMAEPretrainer(n_rois=4, encoder=TINY, pretext="jigsaw")


@pytest.mark.parametrize("pretext", ["contrastive", "both"])
def test_fine_tuning_loads_the_encoder_of_any_pretext(tmp_path, pretext):
    pretrainer = LMAEPretrainer(n_rois=6, encoder=EncoderSpec(d_model=24, depth=2, n_heads=2), pretext=pretext)
    path = tmp_path / "pretext.ckpt"
    torch.save({"state_dict": pretrainer.state_dict(), "hyper_parameters": dict(pretrainer.hparams)}, path)
    spec, weights = load_encoder(path)
    assert set(weights) == {f"encoder.{k}" for k in pretrainer.model.encoder.state_dict()}
    task = RegressionTask(n_rois=6, target_names=["age"], crop_len=32, pretrained=str(path))
    for name, value in pretrainer.model.encoder.state_dict().items():
        assert torch.equal(task.model.encoder.state_dict()[name], value), name

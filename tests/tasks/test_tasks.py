"""The LightningModules: encoder transfer, frozen encoder, layer-wise LR, original units."""

import pytest
import torch

from brainlit.cli import BrainlitCLI
from brainlit.errors import BrainlitCheckpointError
from brainlit.tasks import EncoderSpec, LMAEPretrainer, RegressionTask

SMALL = EncoderSpec(d_model=16, depth=1, n_heads=2)


@pytest.fixture
def lmae_checkpoint(tmp_path):
    """A checkpoint laid out as Lightning saves it: hyper_parameters + model.* state dict."""
    task = LMAEPretrainer(n_rois=6, encoder=EncoderSpec(d_model=24, depth=2, n_heads=2))
    path = tmp_path / "lmae.ckpt"
    torch.save({"state_dict": task.state_dict(), "hyper_parameters": dict(task.hparams)}, path)
    return path, task


def test_regression_takes_encoder_architecture_and_weights_from_lmae(lmae_checkpoint):
    path, pretrainer = lmae_checkpoint
    task = RegressionTask(n_rois=6, target_names=["age"], crop_len=32, encoder=SMALL, pretrained=str(path))
    assert task.hparams.encoder["d_model"] == 24  # the checkpoint's, not the config's 16
    for name, value in pretrainer.model.encoder.state_dict().items():
        assert torch.equal(task.model.encoder.state_dict()[name], value), name


def test_missing_checkpoint_says_what_to_do(tmp_path):
    with pytest.raises(BrainlitCheckpointError, match="pretrain.yaml"):
        RegressionTask(n_rois=6, target_names=["age"], pretrained=str(tmp_path / "nope.ckpt"))


def test_frozen_encoder_and_layerwise_learning_rate(lmae_checkpoint):
    path, _ = lmae_checkpoint
    task = RegressionTask(n_rois=6, target_names=["age", "fluid_intelligence"], pretrained=str(path),
                          encoder_lr_scale=0.0, lr=1e-3)
    assert not any(p.requires_grad for p in task.model.encoder.parameters())
    groups = task.param_groups()
    trainable = {id(p) for g in groups for p in g["params"]}
    assert not trainable & {id(p) for p in task.model.encoder.parameters()}
    task = RegressionTask(n_rois=6, target_names=["age"], encoder=SMALL, lr=1e-3, encoder_lr_scale=0.1)
    encoder_ids = {id(p) for p in task.model.encoder.parameters()}
    for group in task.param_groups():
        expected = 1e-4 if id(group["params"][0]) in encoder_ids else 1e-3
        assert group["lr"] == pytest.approx(expected)


def test_every_trainable_parameter_is_optimised_exactly_once():
    task = RegressionTask(n_rois=6, target_names=["age"], encoder=SMALL, encoder_lr_scale=0.5)
    grouped = [id(p) for group in task.param_groups() for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in task.parameters() if p.requires_grad)


def test_predictions_come_back_in_original_units():
    task = RegressionTask(n_rois=6, target_names=["age"], crop_len=16, encoder=SMALL)
    task.target_mean.fill_(50.0)
    task.target_std.fill_(10.0)
    batch = {"x": torch.randn(3, 6, 40), "y": torch.tensor([[-1.0], [0.0], [1.0]]),
             "subject_id": ["sub-a", "sub-b", "sub-c"]}
    out = task.predict_step(batch, 0)
    assert out["subject_id"] == ["sub-a", "sub-b", "sub-c"]
    assert torch.allclose(out["true"][:, 0], torch.tensor([40.0, 50.0, 60.0]))
    assert out["pred"].shape == (3, 1)


def test_regression_needs_a_target():
    with pytest.raises(ValueError, match="data.targets"):
        RegressionTask(n_rois=6, target_names=[])
    with pytest.raises(ValueError, match="encoder_lr_scale"):
        RegressionTask(n_rois=6, target_names=["age"], encoder_lr_scale=-1.0)


def test_patch_seconds_sets_patch_len_from_the_cohort_tr():
    spec = EncoderSpec(d_model=16, depth=1, n_heads=2, patch_seconds=16.0)
    fast = LMAEPretrainer(n_rois=6, encoder=spec, t_r=0.72)
    assert fast.hparams.encoder["patch_len"] == 22 and fast.model.encoder.patch_len == 22
    slow = RegressionTask(n_rois=6, target_names=["age"], encoder=spec, t_r=2.0)
    assert slow.model.encoder.patch_len == 8
    with pytest.raises(ValueError, match="data.t_r"):
        LMAEPretrainer(n_rois=6, encoder=spec, t_r=None)


def test_evaluation_in_window_chunks_predicts_what_all_windows_at_once_do():
    torch.manual_seed(0)
    task = RegressionTask(n_rois=6, target_names=["age", "fluid"], crop_len=16, encoder=SMALL).eval()
    x = torch.randn(3, 6, 70)  # 8 windows of 16 per run: 24 windows, in chunks of 5
    task.hparams.eval_windows = None
    whole = task.predict_runs(x)
    task.hparams.eval_windows = 5
    chunked = task.predict_runs(x)
    assert whole.keys() == chunked.keys() == {"pred", "experts"}
    for name in whole:
        torch.testing.assert_close(chunked[name], whole[name], msg=name)


def test_activation_checkpointing_comes_from_the_finetuning_config_not_the_checkpoint(lmae_checkpoint):
    path, _ = lmae_checkpoint
    task = RegressionTask(n_rois=6, target_names=["age"], encoder=EncoderSpec(checkpoint=True), pretrained=str(path))
    assert task.model.encoder.transformer.checkpoint
    assert task.hparams.encoder["d_model"] == 24


def test_lmae_is_validated_on_windows_as_long_as_its_training_crops():
    """A model trained on 96-volume crops is scored on 96-volume windows, not on whole runs,
    whose longer attention context it never saw (and which made the best checkpoint an early one)."""
    x = torch.randn(2, 6, 150)
    task = LMAEPretrainer(n_rois=6, encoder=EncoderSpec(d_model=24, depth=2, n_heads=2), crop_len=96)
    assert task.eval_windows(x).shape == (2 * 3, 6, 96)  # starts 0, 48 and 54 (aligned to the end)
    assert torch.equal(task.eval_windows(x)[2], x[0, :, 54:])
    whole = LMAEPretrainer(n_rois=6, encoder=EncoderSpec(d_model=24, depth=2, n_heads=2))
    assert whole.eval_windows(x) is x


def test_the_cli_links_the_crop_length_into_the_pretrainer(tiny_bids, tmp_path):
    cli = BrainlitCLI(args=["--config", "configs/demo/pretrain.yaml", "--data.root", str(tiny_bids),
                            "--data.atlas", str(tiny_bids / "atlas.nii.gz"), "--data.min_timepoints", "50",
                            "--data.cache_path", str(tmp_path / "c.h5"), "--data.crop_len", "32",
                            "--trainer.logger", "false", "--trainer.callbacks", "[]"], run=False)
    assert cli.model.hparams.crop_len == 32

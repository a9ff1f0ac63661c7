"""The LightningModules: encoder transfer, frozen encoder, layer-wise LR, original units."""

import pytest
import torch

from brainlit.errors import BrainlitCheckpointError
from brainlit.models.rwmoe import correlation
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
                          freeze_encoder=True, lr=1e-3)
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


def test_a_zero_head_model_starts_as_its_readout_and_then_learns():
    torch.manual_seed(0)
    task = RegressionTask(n_rois=6, target_names=["age"], crop_len=16, encoder=SMALL,
                          fc_readout="ridge", readout_lags=2, zero_head=True)
    readout = task.model.fc_readout
    readout.set_weights(torch.randn_like(readout.linear.weight), torch.tensor([0.3]))
    x = torch.randn(4, 6, 16)
    pred, _ = task.model(x)
    torch.testing.assert_close(pred, readout(x, correlation(x)))  # the SSM path adds exactly 0
    loss = (pred - 1.0).pow(2).mean()
    loss.backward()
    assert task.model.head.weight.grad.abs().sum() > 0  # and the head is free to move


def test_readout_lags_without_a_readout_is_an_error_not_ignored():
    with pytest.raises(ValueError, match="fc_readout"):
        RegressionTask(n_rois=6, target_names=["age"], readout_lags=3)


def test_patch_seconds_sets_patch_len_from_the_cohort_tr():
    spec = EncoderSpec(d_model=16, depth=1, n_heads=2, patch_seconds=16.0)
    fast = LMAEPretrainer(n_rois=6, encoder=spec, t_r=0.72)
    assert fast.hparams.encoder["patch_len"] == 22 and fast.model.encoder.patch_len == 22
    slow = RegressionTask(n_rois=6, target_names=["age"], encoder=spec, t_r=2.0)
    assert slow.model.encoder.patch_len == 8
    with pytest.raises(ValueError, match="data.t_r"):
        LMAEPretrainer(n_rois=6, encoder=spec, t_r=None)


def test_ema_weights_follow_training_and_serve_evaluation():
    torch.manual_seed(0)
    task = RegressionTask(n_rois=6, target_names=["age"], crop_len=16, encoder=SMALL, ema_decay=0.5)
    assert not any(p.requires_grad for p in task.ema.parameters())
    before = [p.clone() for p in task.eval_model.parameters()]
    with torch.no_grad():
        for p in task.model.parameters():
            p.add_(1.0)
    task.on_train_batch_end(None, {}, 0)  # the first update copies the weights
    task.on_train_batch_end(None, {}, 1)
    moved = [(p - b).abs().max() for p, b in zip(task.eval_model.parameters(), before, strict=True)]
    assert all(m == pytest.approx(1.0) for m in moved)
    assert task.eval_model is not task.model
    assert RegressionTask(n_rois=6, target_names=["age"], encoder=SMALL).eval_model is not None

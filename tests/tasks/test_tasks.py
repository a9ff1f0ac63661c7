"""The LightningModules: encoder transfer, frozen encoder, layer-wise LR, original units."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from nilearn.connectome import ConnectivityMeasure

from brainlit.data.datamodule import FMRIDataModule
from brainlit.data.simulate import simulate_cohort
from brainlit.errors import BrainlitCheckpointError
from brainlit.models.rwmoe import correlation
from brainlit.tasks import EncoderSpec, LMAEPretrainer, RegressionTask
from brainlit.tasks.closed_form import network_share_weights

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
    assert out["pred"].shape == (3, 1) and "readout" not in out  # no closed-form read-out to report


def test_a_stacked_model_also_predicts_what_its_readout_alone_predicts():
    torch.manual_seed(0)
    task = RegressionTask(n_rois=6, target_names=["age"], crop_len=16, encoder=SMALL, fc_readout="ridge")
    task.target_mean.fill_(50.0)
    task.target_std.fill_(10.0)
    readout = task.model.fc_readout
    readout.set_weights(torch.randn_like(readout.linear.weight), torch.tensor([0.3]))
    x = torch.randn(3, 6, 40)  # the network reads 4 windows of 16, the read-out the whole run
    out = task.eval().predict_step({"x": x, "y": torch.zeros(3, 1), "subject_id": ["a", "b", "c"]}, 0)
    torch.testing.assert_close(out["readout"], readout(x, correlation(x)) * 10.0 + 50.0)
    assert not torch.allclose(out["pred"], out["readout"])  # the network's share is in pred only


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
    with pytest.raises(ValueError, match="fc_readout"):
        RegressionTask(n_rois=6, target_names=["age"], readout_connectivity="tangent")
    with pytest.raises(ValueError, match="readout_anchor"):
        RegressionTask(n_rois=6, target_names=["age", "fluid_intelligence"], readout_anchor="age")
    with pytest.raises(ValueError, match="readout_anchor"):
        RegressionTask(n_rois=6, target_names=["fluid_intelligence"], fc_readout="ridge", readout_anchor="age")
    with pytest.raises(ValueError, match="readout_combine"):
        RegressionTask(n_rois=6, target_names=["age"], fc_readout="learned", readout_combine="stack")
    with pytest.raises(ValueError, match="readout_combine"):
        RegressionTask(n_rois=6, target_names=["age"], fc_readout="ridge", readout_combine="median")


@pytest.mark.parametrize(("connectivity", "targets", "anchor", "combine"),
                         [("tangent", ["age"], None, "mean"), ("both", ["fluid_intelligence", "age"], "age", "mean"),
                          ("both", ["age"], None, "stack")])
def test_the_closed_form_tangent_readout_is_fit_on_training_and_validation_runs_only(
        tmp_path, connectivity, targets, anchor, combine):
    simulate_cohort(tmp_path, n_subjects=24, n_rois=8, n_volumes=60, seed=3)
    dm = FMRIDataModule(str(tmp_path), atlas=str(tmp_path / "atlas.nii.gz"), cache_path=str(tmp_path / "c.h5"),
                        min_timepoints=40, crop_len=24, n_folds=4, targets=targets)
    dm.prepare_data()
    dm.setup("fit")
    task = RegressionTask(n_rois=8, target_names=targets, crop_len=24, encoder=SMALL, fc_readout="ridge",
                          readout_connectivity=connectivity, readout_anchor=anchor, readout_combine=combine,
                          ema_decay=0.9)
    task.trainer = SimpleNamespace(datamodule=dm)
    task.on_fit_start()
    seen = dm.split_runs("train")[0] + dm.split_runs("val")[0]
    everyone = seen + dm.split_runs("test")[0]
    expected = ConnectivityMeasure(kind="tangent").fit([r.T for r in seen]).whitening_
    with_test = ConnectivityMeasure(kind="tangent").fit([r.T for r in everyone]).whitening_
    for readout in (task.model.fc_readout, task.ema.module.fc_readout):
        np.testing.assert_allclose(readout.whitening.numpy(), expected)
        assert not np.allclose(readout.whitening.numpy(), with_test)
        # a ridge was fit on each edge set (a stack may weigh one at zero)
        fitted = [readout.linear.weight[:, block].abs().sum() > 0 for block in readout.blocks()]
        assert all(fitted) if combine == "mean" else any(fitted)
    assert set(task.stacked_offsets) == set(dm.fold_subject_ids("train") + dm.fold_subject_ids("val"))
    restored = RegressionTask(**{k: v for k, v in task.hparams.items() if k not in ("encoder", "moe", "ssm")},
                              encoder=SMALL)
    restored.load_state_dict(task.state_dict())  # the reference travels with the checkpoint
    np.testing.assert_allclose(restored.model.fc_readout.whitening.numpy(), expected)


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


def test_the_direct_head_supervises_the_network_without_changing_its_prediction():
    """direct_weight adds a read-out-free head whose loss trains the encoder, RWMOE and SSM on
    the whole target; the prediction is still read-out plus the (zero) residual head."""
    torch.manual_seed(0)
    kwargs = dict(n_rois=6, target_names=["age"], crop_len=16, encoder=SMALL, fc_readout="ridge",
                  zero_head=True)
    plain, supervised = RegressionTask(**kwargs), RegressionTask(**kwargs, direct_weight=1.0)
    assert plain.model.direct_head is None and supervised.model.direct_head is not None
    readout = supervised.model.fc_readout
    readout.set_weights(torch.randn_like(readout.linear.weight), torch.tensor([0.3]))
    batch = {"x": torch.randn(4, 6, 16), "y": torch.randn(4, 1), "subject_id": list("abcd")}
    pred, aux = supervised.model(batch["x"])
    torch.testing.assert_close(pred, readout(batch["x"], correlation(batch["x"])))
    assert aux["direct"].shape == (4, 1) and not torch.allclose(aux["direct"], pred)
    supervised.log = lambda *args, **kw: None
    supervised.training_step(batch, 0).backward()
    ssm_grad = supervised.model.ssm[0].in_proj.weight.grad
    assert ssm_grad is not None and ssm_grad.abs().sum() > 0  # the zero head alone would give 0 here


def test_evaluation_in_window_chunks_predicts_what_all_windows_at_once_do():
    torch.manual_seed(0)
    task = RegressionTask(n_rois=6, target_names=["age", "fluid"], crop_len=16, encoder=SMALL,
                          fc_readout="learned").eval()
    x = torch.randn(3, 6, 70)  # 8 windows of 16 per run: 24 windows, in chunks of 5
    task.hparams.eval_windows = None
    whole = task.predict_windows(x)
    task.hparams.eval_windows = 5
    chunked = task.predict_windows(x)
    assert whole.keys() == chunked.keys() == {"pred", "experts", "readout"}
    for name in whole:
        torch.testing.assert_close(chunked[name], whole[name], msg=name)


def test_activation_checkpointing_comes_from_the_finetuning_config_not_the_checkpoint(lmae_checkpoint):
    path, _ = lmae_checkpoint
    task = RegressionTask(n_rois=6, target_names=["age"], encoder=EncoderSpec(checkpoint=True), pretrained=str(path))
    assert task.model.encoder.transformer.checkpoint
    assert task.hparams.encoder["d_model"] == 24


def test_the_network_share_weight_is_fit_by_least_squares_and_clipped():
    readout = torch.zeros(50, 3)
    true = torch.randn(50, 3)
    pred = torch.stack([true[:, 0], 2.0 * true[:, 1], -true[:, 2]], 1)  # exact, twice too large, wrong sign
    weights = network_share_weights(pred, true, readout)
    torch.testing.assert_close(weights, torch.tensor([1.0, 0.5, 0.0]))
    assert network_share_weights(readout, true, readout).tolist() == [1.0, 1.0, 1.0]  # no share: nothing to weigh


def test_a_shrunk_share_weight_drops_a_share_no_clearer_than_its_noise_and_keeps_a_clear_one():
    torch.manual_seed(0)
    readout, true = torch.zeros(20, 2), torch.randn(20, 2)
    noise = torch.randn(20, 2)
    pred = torch.stack([true[:, 0] + 0.3 * noise[:, 0], noise[:, 1]], 1)  # a clear share, a spurious one
    plain, shrunk = network_share_weights(pred, true, readout), network_share_weights(pred, true, readout, shrink=True)
    assert plain[1] > 0 and shrunk[1] == 0.0
    assert 0.9 * plain[0] < shrunk[0] <= plain[0]


def test_a_target_the_network_does_not_help_on_validation_subjects_falls_back_to_the_readout(monkeypatch):
    torch.manual_seed(0)
    kwargs = dict(n_rois=6, target_names=["age", "fluid"], crop_len=16, encoder=SMALL, fc_readout="ridge")
    with pytest.raises(ValueError, match="fc_readout: ridge"):
        RegressionTask(**{**kwargs, "fc_readout": "learned"}, network_share="validation")
    assert "share" not in RegressionTask(**kwargs).state_dict()  # model folders without it still load
    task = RegressionTask(**kwargs, network_share="validation").eval()
    readout = task.model.fc_readout
    readout.set_weights(0.1 * torch.randn_like(readout.linear.weight), torch.tensor([0.3, -0.2]))
    task.target_mean.fill_(50.0)
    task.target_std.fill_(10.0)
    # a validation epoch: the network's share explains the age residual and is noise for fluid
    true, readout_pred = torch.randn(40, 2), torch.randn(40, 2)
    pred = torch.stack([true[:, 0], readout_pred[:, 1] - (true[:, 1] - readout_pred[:, 1])], 1)
    task.val_metrics.update(pred, true, torch.ones(40, 6, 2), readout_pred)
    task.trainer = SimpleNamespace(sanity_checking=False, is_global_zero=False)
    logged = {}
    monkeypatch.setattr(task, "log", lambda name, value, **kw: logged.__setitem__(name, value))
    task._log_epoch("val")
    assert task.share.tolist() == [1.0, 0.0] and logged["val/fluid/share"] == 0.0
    x = torch.randn(3, 6, 40)
    out = task.predict_step({"x": x, "y": torch.zeros(3, 2), "subject_id": ["a", "b", "c"]}, 0)
    whole = task.to_original_units(task.predict_windows(x, task.run_readout(x))["pred"])
    torch.testing.assert_close(out["pred"][:, 0], whole[:, 0])  # age keeps the network's share
    torch.testing.assert_close(out["pred"][:, 1], out["readout"][:, 1])  # fluid is the read-out's
    assert not torch.allclose(whole[:, 1], out["readout"][:, 1])
    restored = RegressionTask(**kwargs, network_share="validation")
    restored.load_state_dict(task.state_dict())  # the weights travel with the checkpoint
    assert restored.share.tolist() == [1.0, 0.0]


def test_a_readout_only_target_is_its_readout_and_the_others_keep_their_weight(monkeypatch):
    torch.manual_seed(0)
    kwargs = dict(n_rois=6, target_names=["age", "fluid"], crop_len=16, encoder=SMALL, fc_readout="ridge")
    with pytest.raises(ValueError, match="readout_only"):
        RegressionTask(**kwargs, readout_only=["iq"])
    task = RegressionTask(**kwargs, network_share="validation", readout_only=["fluid"]).eval()
    readout = task.model.fc_readout
    readout.set_weights(0.1 * torch.randn_like(readout.linear.weight), torch.tensor([0.3, -0.2]))
    true = torch.randn(40, 2)
    task.val_metrics.update(true, true, torch.ones(40, 6, 2), torch.zeros(40, 2))  # the network is exact on both
    task.trainer = SimpleNamespace(sanity_checking=False, is_global_zero=False)
    monkeypatch.setattr(task, "log", lambda *args, **kw: None)
    task._log_epoch("val")
    assert task.share.tolist() == [1.0, 0.0]
    x = torch.randn(3, 6, 40)
    out = task.predict_step({"x": x, "y": torch.zeros(3, 2), "subject_id": ["a", "b", "c"]}, 0)
    torch.testing.assert_close(out["pred"][:, 1], out["readout"][:, 1])
    assert not torch.allclose(out["pred"][:, 0], out["readout"][:, 0])

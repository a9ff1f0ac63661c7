"""BrainRegressor: shapes, gradients, overfitting 8 subjects, pretrained-encoder loading."""

import pytest
import torch

from brainlit.models.encoder import PatchEncoder
from brainlit.models.lmae import LocalMaskedAutoencoder
from brainlit.models.predictor import BrainRegressor
from brainlit.tasks.specs import EncoderSpec, MoESpec, SSMSpec, encoder_args

TINY = {"n_experts": 4, "top_k": 2, "graph_topk": 3, "expert_hidden": 32, "ssm_layers": 1, "d_state": 8}


def tiny_encoder(d_model: int = 32) -> PatchEncoder:
    return PatchEncoder(8, patch_len=8, d_model=d_model, depth=1, n_heads=2)


def tiny_regressor(n_targets: int = 1, **kwargs) -> BrainRegressor:
    return BrainRegressor(tiny_encoder(), n_targets, **{**TINY, **kwargs})


@pytest.mark.parametrize("sequence", ["patch", "roi_major"])
def test_shapes_aux_and_finite_gradients(sequence):
    torch.manual_seed(0)
    model = tiny_regressor(n_targets=2, sequence=sequence)
    pred, aux = model(torch.randn(4, 8, 40))
    assert pred.shape == (4, 2) and aux["roi_expert_weights"].shape == (4, 8, 4)
    (pred.sum() + aux["balance_loss"]).backward()
    for name, param in model.named_parameters():
        if name == "encoder.mask_embed":  # LMAE's hidden-patch embedding: unused without masks
            continue
        assert param.grad is not None and torch.isfinite(param.grad).all(), name


def test_overfits_eight_subjects():
    torch.manual_seed(0)
    model = tiny_regressor(head_dropout=0.0)
    x = torch.randn(8, 8, 32)
    y = torch.randn(8, 1)
    y = (y - y.mean()) / y.std()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / 200)
    for _ in range(200):
        pred, aux = model(x)
        loss = torch.nn.functional.l1_loss(pred, y)
        optimizer.zero_grad()
        (loss + 0.01 * aux["balance_loss"]).backward()
        optimizer.step()
        schedule.step()
    assert loss.item() < 0.05


def test_loads_lmae_encoder_from_a_lightning_style_state_dict():
    lmae = LocalMaskedAutoencoder(tiny_encoder(), decoder_dim=16)
    checkpoint = {f"model.{k}": v for k, v in lmae.state_dict().items()}
    model = tiny_regressor()
    model.load_pretrained_encoder(checkpoint)
    x = torch.randn(2, 8, 32)
    torch.testing.assert_close(model.encoder.eval()(x), lmae.eval().encode(x))


def test_encoder_shape_mismatch_is_a_clear_error():
    lmae = LocalMaskedAutoencoder(tiny_encoder(d_model=16), decoder_dim=16)
    with pytest.raises(ValueError, match="shape mismatch=.*patch_proj.weight"):
        tiny_regressor().load_pretrained_encoder(lmae.state_dict())
    with pytest.raises(ValueError, match="missing="):
        tiny_regressor().load_pretrained_encoder({"head.weight": torch.zeros(1, 32)})


def test_parameter_split_covers_every_parameter_once():
    model = tiny_regressor()
    encoder = {p for _, p in model.encoder_parameters()}
    head = {p for _, p in model.head_parameters()}
    assert not encoder & head
    assert encoder | head == set(model.parameters())
    assert set(model.encoder.parameters()) == encoder


def test_from_specs_maps_the_config_blocks():
    model = BrainRegressor.from_specs(
        8, 2, encoder_args(EncoderSpec(d_model=32, depth=1, n_heads=2)), MoESpec(n_experts=3, dropout=0.2),
        SSMSpec(layers=3, backend="torch", sequence="roi_major", head_dropout=0.3),
    )  # fmt: skip
    assert len(model.ssm) == 3 and model.sequence == "roi_major" and model.head_dropout.p == 0.3
    assert model.moe.experts.w_in.shape[0] == 3 and model.moe.dropout.p == 0.2
    assert model.ssm[0].backend == "torch" and model.head.out_features == 2


def test_linear_roi_pool_keeps_which_roi_carried_a_signal():
    model = tiny_regressor(roi_pool="linear").eval()
    tokens = torch.zeros(1, 8, 3, 32)
    first, last = tokens.clone(), tokens.clone()
    first[:, 0], last[:, -1] = 1.0, 1.0  # the same signal on another ROI
    assert not torch.allclose(model.to_sequence(first), model.to_sequence(last))
    pooled = tiny_regressor(roi_pool="mean")
    torch.testing.assert_close(pooled.to_sequence(first), pooled.to_sequence(last))


def test_statistics_pooling_sees_how_much_a_feature_moves_over_the_scan():
    steady = torch.zeros(1, 6, 32)
    moving = steady.clone()
    moving[:, ::2], moving[:, 1::2] = 1.0, -1.0  # same mean over time, larger swings
    mean_pool, stats_pool = tiny_regressor(pool="mean"), tiny_regressor(pool="stats")
    torch.testing.assert_close(mean_pool.pool_time(steady), mean_pool.pool_time(moving))
    assert stats_pool.pool_time(moving).shape == (1, 64)
    assert torch.allclose(stats_pool.pool_time(moving)[:, 32:], torch.ones(1, 32), atol=1e-5)
    pred, _ = stats_pool(torch.randn(2, 8, 40))
    assert pred.shape == (2, 1)
    with pytest.raises(ValueError, match="pool"):
        tiny_regressor(pool="max")

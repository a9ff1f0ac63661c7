"""The simple reconstructions LMAE is held against, on signals whose answer is known."""

import math

import pytest
import torch

from brainlit.baselines.fillers import SpatialRidgeFiller, interpolate_fill, zero_fill
from brainlit.tasks import EncoderSpec, LMAEPretrainer


def masked_mse(pred: torch.Tensor, patches: torch.Tensor, mask: torch.Tensor) -> float:
    return float((pred - patches).pow(2).mean(-1)[mask].mean())


def test_spatial_ridge_is_exact_for_a_roi_copied_from_another():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(64, 4, 40, generator=generator)
    x[:, 3] = x[:, 1]  # ROI 3 is a copy of ROI 1
    filler = SpatialRidgeFiller(4, ridge=1e-6)
    filler.update(x[:48])
    patches = x[48:].unflatten(-1, (10, 4))  # [16, 4, 10, 4]
    mask = torch.zeros(16, 4, 10, dtype=torch.bool)
    mask[:, 3, ::2] = True  # ROI 3 hidden every other patch, ROI 1 always visible
    mask[:, 0, 1::3] = True  # ROI 0 hidden too: independent of the rest, so unrecoverable
    filled = filler(patches, mask)
    torch.testing.assert_close(filled[:, 3][mask[:, 3]], patches[:, 3][mask[:, 3]], atol=1e-3, rtol=0)
    assert torch.equal(filled[~mask], patches[~mask])  # visible patches are passed through
    assert masked_mse(filled[:, :1], patches[:, :1], mask[:, :1]) > 0.5


def test_interpolation_is_near_exact_on_a_slow_sine_and_zeros_are_not():
    time = torch.arange(120, dtype=torch.float32)
    x = torch.sin(2 * math.pi * time / 60)[None, None].repeat(2, 3, 1)  # 60-sample period
    patches = x.unflatten(-1, (30, 4))  # [2, 3, 30, 4]
    mask = torch.zeros(2, 3, 30, dtype=torch.bool)
    mask[:, :, 5:7] = True  # 8 hidden samples between visible neighbours
    mask[:, 1, 28:] = True  # trailing gap: held at the last visible value
    interpolated = interpolate_fill(patches, mask)
    zeros = masked_mse(zero_fill(patches, mask), patches, mask)
    assert masked_mse(interpolated[:, [0, 2]], patches[:, [0, 2]], mask[:, [0, 2]]) < 0.01 * zeros
    last_seen = patches[:, 1, 27, -1]
    torch.testing.assert_close(interpolated[:, 1, 28:].flatten(1), last_seen[:, None].expand(-1, 8))


def test_interpolation_of_a_linear_ramp_is_exact():
    x = torch.linspace(-1, 1, 48)[None, None].repeat(1, 2, 1)
    patches = x.unflatten(-1, (12, 4))
    mask = torch.zeros(1, 2, 12, dtype=torch.bool)
    mask[:, 0, 3:6] = True
    torch.testing.assert_close(interpolate_fill(patches, mask), patches)


def test_unfitted_spatial_filler_says_what_to_do():
    with pytest.raises(RuntimeError, match="update"):
        SpatialRidgeFiller(3)(torch.zeros(1, 3, 2, 4), torch.zeros(1, 3, 2, dtype=torch.bool))


def test_pretrainer_scores_lmae_and_every_filler_on_the_same_masks():
    """A copied ROI: the spatial filler beats zeros, and the ratio is LMAE over the best."""
    torch.manual_seed(0)
    task = LMAEPretrainer(n_rois=4, encoder=EncoderSpec(patch_len=4, d_model=16, depth=1, n_heads=2))
    x = torch.randn(8, 4, 40)
    x[:, 2] = x[:, 0]
    task.filler.update(x)
    patches = task.model.encoder.patchify(x)
    mask = task.model.make_mask(8, 4, 10, generator=torch.Generator().manual_seed(0))
    fills = task.simple_fills(patches, mask)
    assert set(fills) == {"zero", "interp", "spatial_ridge"}
    for name, pred in fills.items():
        task.val_metrics.update(name, pred, patches, mask)
    task.val_metrics.update("lmae", task.model(x, mask)["pred"].detach(), patches, mask)
    values = task.val_metrics.compute()
    assert values["zero"] == pytest.approx(masked_mse(torch.zeros_like(patches), patches, mask), rel=1e-5)
    assert values["spatial_ridge"] < values["zero"]
    best = min(values[n] for n in ("zero", "interp", "spatial_ridge"))
    assert values["lmae_vs_best_simple"] == pytest.approx(values["lmae"] / best)

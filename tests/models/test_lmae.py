"""LMAE: patch encoder, exact local/random masks, masked-only loss, learning on smooth signals."""

import math

import pytest
import torch

from brainlit.models.lmae import LocalMaskedAutoencoder, PatchEncoder

TINY = {"decoder_dim": 16, "decoder_depth": 1}


def tiny_lmae(n_rois: int = 6, **kwargs) -> LocalMaskedAutoencoder:
    encoder = PatchEncoder(n_rois, patch_len=4, d_model=32, depth=1, n_heads=2)
    return LocalMaskedAutoencoder(encoder, **{**TINY, **kwargs})


def time_runs(row: torch.Tensor) -> list[tuple[int, int]]:
    """(start, length) of the maximal runs of True in a 1-D bool tensor."""
    runs, start = [], None
    for t, value in enumerate(row.tolist() + [False]):
        if value and start is None:
            start = t
        elif not value and start is not None:
            runs.append((start, t - start))
            start = None
    return runs


def short_interior_runs(mask: torch.Tensor, block_len: int) -> int:
    """Runs shorter than block_len that touch neither end of the window, over all ROIs."""
    n_patches = mask.shape[-1]
    return sum(
        1
        for row in mask
        for start, length in time_runs(row)
        if length < block_len and start > 0 and start + length < n_patches
    )


def test_patch_encoder_shapes_and_truncation():
    encoder = PatchEncoder(5, patch_len=4, d_model=16, depth=1, n_heads=2)
    x = torch.randn(2, 5, 23)
    assert encoder.patchify(x).shape == (2, 5, 5, 4)
    assert torch.equal(encoder.patchify(x)[0, 1, 2], x[0, 1, 8:12])
    assert encoder(x).shape == (2, 5, 5, 16)
    with pytest.raises(ValueError, match="max_patches"):
        PatchEncoder(5, patch_len=4, d_model=16, depth=1, n_heads=2, max_patches=4).embed(x)


@pytest.mark.parametrize("attention", ["joint", "factorized"])
def test_hidden_patches_do_not_leak_into_the_encoding(attention):
    torch.manual_seed(0)
    encoder = PatchEncoder(4, patch_len=4, d_model=16, depth=2, n_heads=2, attention=attention).eval()
    x = torch.randn(2, 4, 24)
    mask = torch.rand(2, 4, 6) > 0.5
    out = encoder(x, mask)
    assert out.shape == (2, 4, 6, 16)
    hidden_noise = (torch.randn(2, 4, 6, 4) * mask[..., None]).flatten(2)
    torch.testing.assert_close(encoder(x + hidden_noise, mask), out, atol=1e-5, rtol=1e-5)
    visible_noise = (torch.randn(2, 4, 6, 4) * (~mask)[..., None]).flatten(2)
    assert not torch.allclose(encoder(x + visible_noise, mask), out, atol=1e-3)


def test_factorized_attention_mixes_rois_within_a_patch_and_patches_within_a_roi():
    torch.manual_seed(0)
    encoder = PatchEncoder(3, patch_len=2, d_model=8, depth=1, n_heads=2).eval()
    block = encoder.transformer.blocks[0]
    tokens = torch.randn(1, 3, 4, 8)
    changed = tokens.clone()
    changed[0, 2, 3] += torch.randn(8)  # ROI 2, patch 3
    across_rois = block.attn_space(block.norm_space(tokens).transpose(1, 2).reshape(4, 3, 8))
    across_rois_changed = block.attn_space(block.norm_space(changed).transpose(1, 2).reshape(4, 3, 8))
    differs = (across_rois - across_rois_changed).abs().sum(-1) > 1e-6  # [P, R]
    assert differs[3].all() and not differs[:3].any()  # only patch 3, every ROI of it


@pytest.mark.parametrize(
    "strategy,block_len,block_rois", [("local", 2, 1), ("local", 3, 2), ("random", 1, 1)]
)
@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.75])
def test_masks_hide_exactly_the_configured_ratio(strategy, block_len, block_rois, ratio):
    model = tiny_lmae(
        mask_ratio=ratio, mask_strategy=strategy, block_len=block_len, block_rois=block_rois
    )
    mask = model.make_mask(8, 7, 11)
    assert mask.dtype == torch.bool and mask.shape == (8, 7, 11)
    assert mask.sum((1, 2)).tolist() == [round(ratio * 77)] * 8


def test_local_mask_is_made_of_time_blocks():
    torch.manual_seed(0)
    local = tiny_lmae(n_rois=10, mask_ratio=0.5, block_len=3).make_mask(16, 10, 20)
    random = tiny_lmae(n_rois=10, mask_ratio=0.5, mask_strategy="random").make_mask(16, 10, 20)
    # only the one trimmed block may leave a run shorter than block_len inside the window
    assert max(short_interior_runs(sample, 3) for sample in local) <= 1
    assert sum(short_interior_runs(sample, 3) for sample in random) > 16 * 10
    assert not torch.equal(local, random)


def test_block_rois_masks_the_same_time_blocks_on_adjacent_rois():
    torch.manual_seed(0)

    def rows_matching_a_neighbour(mask: torch.Tensor) -> int:
        same = (mask[1:] == mask[:-1]).all(-1)  # [R - 1]
        return int(
            (torch.cat([same, same.new_zeros(1)]) | torch.cat([same.new_zeros(1), same])).sum()
        )

    paired = tiny_lmae(n_rois=12, block_len=2, block_rois=2).make_mask(8, 12, 16)
    single = tiny_lmae(n_rois=12, block_len=2, block_rois=1).make_mask(8, 12, 16)
    # all but the edge ROI groups and the trimmed block come in identical pairs
    assert min(rows_matching_a_neighbour(m) for m in paired) >= 12 - 4
    assert max(rows_matching_a_neighbour(m) for m in single) < 6


def test_masks_change_between_calls_unless_a_generator_fixes_them():
    model = tiny_lmae()
    assert not torch.equal(model.make_mask(4, 6, 8), model.make_mask(4, 6, 8))
    fixed = [model.make_mask(4, 6, 8, generator=torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(*fixed)


@pytest.mark.parametrize("decoder_depth", [0, 1])
@pytest.mark.parametrize("norm_pix_loss", [False, True])
def test_loss_is_the_mse_over_masked_patches_only(norm_pix_loss, decoder_depth):
    torch.manual_seed(0)
    model = tiny_lmae(norm_pix_loss=norm_pix_loss, decoder_depth=decoder_depth)
    x = torch.randn(3, 6, 26)
    out = model(x)
    target = model.encoder.patchify(x)
    if norm_pix_loss:
        target = (target - target.mean(-1, keepdim=True)) / (
            target.var(-1, keepdim=True) + 1e-6
        ).sqrt()
    manual = (out["pred"] - target).pow(2).mean(-1)[out["mask"]].mean()
    torch.testing.assert_close(out["loss"], manual)
    assert out["pred"].shape == (3, 6, 6, 4)
    assert torch.equal(out["target"], target if not norm_pix_loss else model.encoder.patchify(x))


def test_gradients_reach_every_parameter_and_are_finite():
    torch.manual_seed(0)
    model = tiny_lmae()
    model(torch.randn(2, 6, 32))["loss"].backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all() and param.grad.abs().sum() > 0, name


def test_encoder_weights_live_under_encoder_prefix():
    model = tiny_lmae()
    keys = [k for k in model.state_dict() if k.startswith("encoder.")]
    weights = {k.removeprefix("encoder."): model.state_dict()[k] for k in keys}
    encoder = PatchEncoder(6, patch_len=4, d_model=32, depth=1, n_heads=2)
    encoder.load_state_dict(weights)  # strict: the encoder's keys are exactly these
    x = torch.randn(1, 6, 16)
    torch.testing.assert_close(encoder.eval()(x), model.eval().encode(x))


def ar1_signals(n: int, n_rois: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """Unit-variance AR(1) series with coefficient 0.9 (BOLD-like smoothness), ``[n, R, T]``."""
    noise = torch.randn(n, n_rois, length, generator=generator)
    series = [noise[..., 0]]
    for t in range(1, length):
        series.append(0.9 * series[-1] + math.sqrt(1 - 0.81) * noise[..., t])
    return torch.stack(series, -1)


@pytest.mark.parametrize("seed", [0, 1])
def test_lmae_learns_temporal_structure(seed):
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = tiny_lmae(n_rois=4, mask_ratio=0.5, block_len=1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    pool, held_out = ar1_signals(512, 4, 48, generator), ar1_signals(32, 4, 48, generator)

    def held_out_loss() -> float:
        with torch.no_grad():
            return sum(model(held_out)["loss"].item() for _ in range(4)) / 4

    initial = held_out_loss()
    for _ in range(300):
        batch = pool[torch.randint(len(pool), (16,), generator=generator)]
        loss = model(batch)["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert held_out_loss() < 0.6 * initial


def test_lmae_learns_to_fill_a_roi_from_its_copy():
    """ROI 1 is ROI 0 exactly: a hidden patch of either is visible in the other, same time."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = tiny_lmae(n_rois=4, mask_ratio=0.5, block_len=2, mask_strategy="local")

    def cohort(n: int) -> torch.Tensor:
        series = ar1_signals(n, 4, 48, generator)
        series[:, 1] = series[:, 0]
        return series

    pool, held_out = cohort(512), cohort(32)
    mask = model.make_mask(32, 4, 12, generator=torch.Generator().manual_seed(1))
    pair_hidden_once = mask[:, :2].sum(1) == 1  # [B, P]: one of the pair hidden, the other seen
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss = model(pool[torch.randint(len(pool), (16,), generator=generator)])["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        out = model.eval()(held_out, mask)
    error = (out["pred"] - out["target"]).pow(2).mean(-1)[:, :2]  # [B, 2, P]
    on_pair = error.transpose(1, 2)[pair_hidden_once & True][mask[:, :2].transpose(1, 2)[pair_hidden_once]]
    assert on_pair.mean() < 0.25  # zeros score about 1

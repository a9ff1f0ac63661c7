"""The subject-contrastive pretext: NT-Xent, its projection head, re-identification accuracy."""

import math

import pytest
import torch

from brainlit.models.contrastive import (
    SubjectContrastiveHead,
    nt_xent,
    pool_tokens,
    reidentification_accuracy,
    token_connectivity,
)
from brainlit.models.encoder import PatchEncoder
from brainlit.models.rwmoe import correlation


def test_nt_xent_is_low_for_identical_views_and_chance_for_shuffled_ones():
    torch.manual_seed(0)
    z = torch.randn(16, 32)
    identical = nt_xent(z, z, temperature=0.1)
    shuffled = nt_xent(z, z[torch.randperm(16)], temperature=0.1)
    assert identical < 0.05
    assert shuffled > 2.0  # chance is log(2B - 1) = log(31) = 3.4 nats
    unrelated = torch.stack([nt_xent(torch.randn(16, 32), torch.randn(16, 32), 100.0) for _ in range(5)])
    assert unrelated.mean() == pytest.approx(math.log(31), abs=0.05)  # a flat softmax is chance


def test_nt_xent_needs_negatives():
    with pytest.raises(ValueError, match="no negatives"):
        nt_xent(torch.randn(1, 8), torch.randn(1, 8), 0.1)


@pytest.mark.parametrize("pooling", ["connectivity", "mean"])
def test_head_gradients_reach_the_encoder_and_the_loss_falls(one_thread, pooling):
    torch.manual_seed(0)
    encoder = PatchEncoder(n_rois=6, patch_len=4, d_model=16, depth=1, n_heads=2)
    head = SubjectContrastiveHead(d_model=16, n_rois=6, pooling=pooling, hidden_dim=32, proj_dim=8)
    x = torch.randn(8, 6, 32)
    first, second = x[..., :16], x[..., 16:]  # two windows of each "subject"
    loss = head(encoder(first), encoder(second))
    loss.backward()
    assert encoder.patch_proj.weight.grad.abs().sum() > 0
    assert head.projection[0].weight.grad.abs().sum() > 0
    assert encoder.mask_embed.grad is None  # unmasked views never touch the mask token
    optimiser = torch.optim.Adam([*encoder.parameters(), *head.parameters()], lr=3e-3)
    for _ in range(20):
        optimiser.zero_grad()
        step = head(encoder(first), encoder(second))
        step.backward()
        optimiser.step()
    assert step < 0.5 * loss  # the pairs are learnable (the windows are fixed)


def test_mean_pooling_averages_rois_and_patches():
    tokens = torch.arange(2 * 3 * 4 * 5, dtype=torch.float32).view(2, 3, 4, 5)
    torch.testing.assert_close(pool_tokens(tokens), tokens.flatten(1, 2).mean(1))


def test_token_connectivity_of_one_feature_is_the_correlation_of_its_series():
    torch.manual_seed(0)
    series = torch.randn(2, 5, 12)  # [B, R, P]: one feature per token
    rows, cols = torch.triu_indices(5, 5, offset=1)
    expected = correlation(series)[:, rows, cols]
    torch.testing.assert_close(token_connectivity(series[..., None]), expected)
    two_features = torch.stack([series, 3 * series + 1], dim=-1)  # the same correlations twice
    torch.testing.assert_close(token_connectivity(two_features), expected)


def test_reidentification_is_perfect_for_a_noisy_copy_and_near_chance_for_noise():
    torch.manual_seed(0)
    fingerprint = torch.randn(50, 20)
    assert reidentification_accuracy(fingerprint, fingerprint + 0.1 * torch.randn(50, 20)) == 1.0
    noise = [reidentification_accuracy(torch.randn(50, 20), torch.randn(50, 20)) for _ in range(10)]
    assert sum(noise) / 10 < 0.08  # chance is 1/50
    shared = torch.randn(20) * 100  # a component every subject has does not decide
    assert reidentification_accuracy(fingerprint + shared, fingerprint + shared + 0.1 * torch.randn(50, 20)) == 1.0

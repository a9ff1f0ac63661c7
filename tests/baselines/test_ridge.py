"""Closed-form ridge fits: leave-one-out predictions, combined and stacked feature sets, the regressor chain."""

import numpy as np
import pytest
import torch

from brainlit.baselines.ridge import (
    fit_anchored_ridge,
    fit_ridge,
    fit_ridge_combination,
    loo_ridge_predictions,
    stacking_weights,
)


def test_leave_one_out_ridge_matches_refitting_without_each_subject():
    from sklearn.linear_model import Ridge

    rng = np.random.default_rng(0)
    x = torch.tensor(rng.normal(size=(30, 12)) * rng.uniform(0.5, 3, 12))
    y = torch.tensor(rng.normal(size=(30, 2)))
    y[:, 0] += 2 * x[:, 0]
    weight, bias, alphas = fit_ridge(x, y)
    torch.testing.assert_close(x.float() @ weight.T + bias, _ridge_fit(x, y, alphas), atol=1e-4, rtol=1e-4)
    loo = loo_ridge_predictions(x, y, alphas)
    mean, scale = x.numpy().mean(0), x.numpy().std(0)  # scaling is unsupervised: kept from all
    for i in (0, 7, 29):
        keep = np.arange(30) != i
        for t, alpha in enumerate(alphas):
            refit = Ridge(alpha=alpha).fit((x.numpy()[keep] - mean) / scale, y.numpy()[keep, t])
            expected = refit.predict(((x.numpy()[i] - mean) / scale)[None])[0]
            assert float(loo[i, t]) == pytest.approx(expected, abs=1e-5)


def _ridge_fit(x: torch.Tensor, y: torch.Tensor, alphas: list[float]) -> torch.Tensor:
    from sklearn.linear_model import Ridge

    mean, scale = x.numpy().mean(0), x.numpy().std(0)
    columns = [Ridge(alpha=a).fit((x.numpy() - mean) / scale, y.numpy()[:, t]).predict((x.numpy() - mean) / scale)
               for t, a in enumerate(alphas)]
    return torch.tensor(np.stack(columns, 1)).float()


def test_averaged_ridge_is_the_mean_of_one_ridge_per_feature_set():
    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=(40, 10)))
    y = torch.tensor(rng.normal(size=(40, 2)))
    y[:, 0] += x[:, 0] - x[:, 6]
    blocks = [torch.tensor([0, 1, 2, 8, 9]), torch.tensor([3, 4, 5, 6, 7, 8, 9])]  # columns 8, 9 shared
    weight, bias, loo, alphas, block_weights = fit_ridge_combination(x, y, blocks)
    separate = [fit_ridge(x[:, cols], y) for cols in blocks]
    expected = sum(x[:, cols].float() @ w.T + b for cols, (w, b, _) in zip(blocks, separate, strict=True)) / 2
    torch.testing.assert_close(x.float() @ weight.T + bias, expected, atol=1e-5, rtol=1e-5)
    assert alphas == [a for _, _, a in separate]
    torch.testing.assert_close(block_weights, torch.full((2, 2), 0.5))
    expected_loo = sum(loo_ridge_predictions(x[:, cols], y, a) for cols, (_, _, a) in zip(blocks, separate, strict=True)) / 2
    torch.testing.assert_close(loo, expected_loo)
    single = fit_ridge_combination(x, y, [torch.arange(10)])
    torch.testing.assert_close(single[0], fit_ridge(x, y)[0])


def test_stacking_weights_are_non_negative_least_squares_on_the_held_out_predictions():
    rng = np.random.default_rng(3)
    good, other = torch.tensor(rng.normal(size=(2, 200)))
    y = torch.stack([5.0 + 1.3 * good, 2.0 - other], 1)  # target 0: 1.3 x model 0; target 1: anti-correlated with model 1
    loo = torch.stack([torch.stack([good, good], 1), torch.stack([other, other], 1)])  # [K=2, N, T=2]
    weights, intercept = stacking_weights(loo, y)
    torch.testing.assert_close(weights[:, 0], torch.tensor([1.3, 0.0]), atol=1e-5, rtol=0)  # more than one: unshrinks
    assert (weights[:, 1] >= 0).all() and weights[1, 1] == 0  # never a negative weight
    torch.testing.assert_close(intercept[0], torch.tensor(5.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(intercept[1], y[:, 1].float().mean() - weights[0, 1] * good.float().mean(), atol=1e-5, rtol=0)


def test_stacked_ridge_weighs_the_feature_set_that_predicts_and_is_one_linear_layer():
    rng = np.random.default_rng(4)
    x = torch.tensor(rng.normal(size=(300, 40)))
    y = (x[:, :10].sum(1) + 2.0 * torch.tensor(rng.normal(size=300)))[:, None]
    blocks = [torch.arange(20), torch.arange(20, 40)]  # the signal is in the first set only
    train, test = slice(0, 150), slice(150, None)
    weight, bias, loo, alphas, stacked = fit_ridge_combination(x[train], y[train], blocks, "stack")
    mean = fit_ridge_combination(x[train], y[train], blocks, "mean")
    loos = torch.stack([loo_ridge_predictions(x[train][:, cols], y[train], a) for cols, a in zip(blocks, alphas, strict=True)])
    block_weights, intercept = stacking_weights(loos, y[train])
    assert block_weights[0, 0] > 0.8 and block_weights[1, 0] < 0.2
    torch.testing.assert_close(stacked, block_weights)
    torch.testing.assert_close(loo, intercept + (block_weights[:, None, :] * loos).sum(0))
    assert alphas == mean[3]  # the same ridges, weighed differently
    stacked_mae = (x[test].float() @ weight.T + bias - y[test]).abs().mean()
    averaged_mae = (x[test].float() @ mean[0].T + mean[1] - y[test]).abs().mean()
    assert stacked_mae < averaged_mae


def test_anchored_ridge_chains_the_other_targets_to_the_anchors_cross_fitted_read_out():
    rng = np.random.default_rng(2)
    x = torch.tensor(rng.normal(size=(240, 30)))
    age = x[:, :10].sum(1) + rng.normal(size=240)  # carried by the features, measured exactly
    fluid = -age + 3.0 * torch.tensor(rng.normal(size=240))  # shares it, with a noisy label
    y = torch.stack([fluid, age], 1)
    blocks = [torch.arange(20), torch.arange(10, 30)]
    train, test = slice(0, 60), slice(60, None)
    weight, bias, loo, alphas, _ = fit_anchored_ridge(x[train], y[train], blocks, anchor=1)
    plain = fit_ridge_combination(x[train], y[train], blocks)
    torch.testing.assert_close(weight[1], plain[0][1])  # the anchor is its own averaged ridge
    torch.testing.assert_close(loo[:, 1], plain[2][:, 1])
    assert [a[1] for a in alphas] == [a[1] for a in plain[3]]
    # the chain: least squares of fluid on the anchor's leave-one-out prediction, then a ridge on the rest
    design = torch.stack([torch.ones(60), plain[2][:, 1]], 1)
    coef = torch.linalg.lstsq(design.double(), y[train, :1]).solution.float()
    rest = fit_ridge_combination(x[train], y[train, :1].float() - design @ coef, blocks)
    composed = coef[0] + coef[1] * (x[test].float() @ plain[0][1] + plain[1][1]) + x[test].float() @ rest[0][0] + rest[1][0]
    torch.testing.assert_close(x[test].float() @ weight[0] + bias[0], composed, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(loo[:, 0], (design @ coef)[:, 0] + rest[2][:, 0], atol=1e-5, rtol=1e-5)
    chained_mae = (x[test].float() @ weight[0] + bias[0] - y[test, 0]).abs().mean()
    own_mae = (x[test].float() @ plain[0][0] + plain[1][0] - y[test, 0]).abs().mean()
    assert chained_mae < own_mae  # the noisy target gains from the exact one's read-out
    unchained = fit_anchored_ridge(x[train], y[train], blocks, anchor=None)
    torch.testing.assert_close(unchained[0], plain[0])

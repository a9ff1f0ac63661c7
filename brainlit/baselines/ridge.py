"""Closed-form ridge fits: one linear layer per feature set, their combination, a regressor chain.

Every fit also returns the leave-one-out predictions of the subjects it saw
(:func:`loo_ridge_predictions`): in-sample predictions of a ridge are far better than on
anyone else, so whatever is stacked on top of it (the feature sets' weights, the network's
share, an oracle) is fit on out-of-sample ones. With several feature sets
(:func:`brainlit.baselines.features.feature_blocks`) one ridge per set is combined,
averaged or stacked (:func:`fit_ridge_combination`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import numpy as np
import torch
from scipy.optimize import nnls
from sklearn.linear_model import RidgeCV

ALPHAS = tuple(np.logspace(-1, 5, 25))
Combine = Literal["mean", "stack"]


class RidgeFit(NamedTuple):
    """A closed-form read-out: one linear layer and what chose it."""

    weight: torch.Tensor  # [T, E] on the raw features
    bias: torch.Tensor  # [T]
    loo: torch.Tensor  # [N, T] leave-one-out predictions of the subjects it was fit on
    alphas: list[list[float]]  # each feature set's ridge penalty per target
    block_weights: torch.Tensor  # [K, T] each feature set's weight in the combination


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean, scale = x.mean(0), x.std(0)
    scale[scale < 1e-12] = 1.0
    return (x - mean) / scale, mean, scale


def fit_ridge(
    features: torch.Tensor,
    targets: torch.Tensor,
    alphas: Sequence[float] = ALPHAS,
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Ridge regression of targets on features, with the feature scaling folded into the weights.

    Features are standardised with the training statistics, each target gets its own penalty
    by efficient leave-one-out CV (``RidgeCV``), and the result is returned as the weight and
    bias of one linear layer acting on the *raw* features.

    Args:
        features: ``[N, E]`` training features (e.g. Fisher-z FC edges).
        targets: ``[N, T]`` training targets (z-scored).
        alphas: Penalties tried (on standardised features).

    Returns:
        ``weight [T, E]``, ``bias [T]`` (float32) and the chosen penalty per target.
    """
    x, mean, scale = _standardise(features.double().cpu().numpy())
    y = targets.double().cpu().numpy()
    ridge = RidgeCV(alphas=alphas, alpha_per_target=True).fit(x, y)
    weight = np.atleast_2d(ridge.coef_) / scale  # [T, E]
    bias = np.atleast_1d(ridge.intercept_) - weight @ mean
    chosen = np.atleast_1d(ridge.alpha_).tolist()
    return torch.from_numpy(weight).float(), torch.from_numpy(bias).float(), chosen


def loo_ridge_predictions(
    features: torch.Tensor, targets: torch.Tensor, alphas: Sequence[float]
) -> torch.Tensor:
    """Leave-one-out predictions ``[N, T]`` of ridge (with intercept, standardised features).

    Closed form through the hat matrix ``H = 1 / N + U diag(s^2 / (s^2 + alpha)) U^T`` of the
    centred features: ``y_loo = y - (y - H y) / (1 - diag(H))``, one penalty per target.

    Args:
        features: ``[N, E]`` features of the subjects the ridge is fit on.
        targets: ``[N, T]`` their targets.
        alphas: The penalty of each target (as chosen by :func:`fit_ridge`).
    """
    x, _, _ = _standardise(features.double().cpu().numpy())
    y = targets.double().cpu().numpy()
    u, s, _ = np.linalg.svd(x - x.mean(0), full_matrices=False)
    n = len(y)
    loo = np.empty_like(y)
    for t, alpha in enumerate(alphas):
        shrink = s**2 / (s**2 + alpha)
        centred = y[:, t] - y[:, t].mean()
        fitted = y[:, t].mean() + u @ (shrink * (u.T @ centred))
        leverage = 1.0 / n + (u**2) @ shrink
        loo[:, t] = y[:, t] - (y[:, t] - fitted) / (1.0 - leverage)
    return torch.from_numpy(loo).float()


def stacking_weights(loo: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Breiman's (1996) stacked-regression weights of K models, per target.

    Non-negative least squares of the (centred) targets on the models' (centred)
    leave-one-out predictions, with no sum-to-one constraint: weights may add up to more than
    one and so undo part of ridge's shrinkage of the predictions towards the mean, which a
    penalty chosen for squared error leaves too strong for the absolute error we report.

    Args:
        loo: ``[K, N, T]`` each model's leave-one-out predictions.
        targets: ``[N, T]``.

    Returns:
        ``weights [K, T]`` and ``intercept [T]``, so that the stack predicts
        ``intercept + sum_k weights[k] * prediction_k``.
    """
    loo, targets = loo.double(), targets.double()
    loo_mean, target_mean = loo.mean(1), targets.mean(0)  # [K, T], [T]
    weights = torch.stack([
        torch.from_numpy(nnls((loo[:, :, t] - loo_mean[:, None, t]).T.numpy(),
                              (targets[:, t] - target_mean[t]).numpy())[0])
        for t in range(targets.shape[1])
    ], 1)  # [K, T]
    return weights.float(), (target_mean - (weights * loo_mean).sum(0)).float()


def fit_ridge_combination(
    features: torch.Tensor,
    targets: torch.Tensor,
    blocks: Sequence[torch.Tensor],
    combine: Combine = "mean",
) -> RidgeFit:
    """One ridge per feature set, combined into one linear layer on all the features.

    Each set (columns ``blocks[k]`` of ``features``, which may share columns) gets its own
    :func:`fit_ridge`; a weighted sum of linear models is a linear model, so their
    weights are summed into one ``[T, E]`` layer. ``combine='mean'`` averages them: averaging
    ridge fits on different parametrisations of FC cuts the variance no single penalty removes
    (on the development cohorts, ridge on correlation and on tangent FC averaged beat either
    alone for age). ``'stack'`` weighs them per target by :func:`stacking_weights` on their
    leave-one-out predictions, so a set that predicts worse on the cohort at hand counts less
    (on dynamic development cohorts the tangent set beat the mean of both by 0.5 years). The
    leave-one-out predictions of the combination combine each fit's (for ``stack`` slightly
    optimistic: K weights per target are fit on them).
    """
    fits = [fit_ridge(features[:, columns], targets) for columns in blocks]
    loos = torch.stack([loo_ridge_predictions(features[:, columns], targets, alphas)
                        for columns, (_, _, alphas) in zip(blocks, fits, strict=True)])  # [K, N, T]
    if combine == "stack":
        weights, intercept = stacking_weights(loos, targets)
    else:
        weights, intercept = torch.full((len(blocks), targets.shape[1]), 1 / len(blocks)), torch.zeros(targets.shape[1])
    weight, bias = torch.zeros(targets.shape[1], features.shape[1]), intercept.clone()
    for columns, (block_weight, block_bias, _), block in zip(blocks, fits, weights, strict=True):
        weight[:, columns] += block[:, None] * block_weight
        bias += block * block_bias
    loo = intercept + (weights[:, None, :] * loos).sum(0)
    return RidgeFit(weight, bias, loo, [alphas for _, _, alphas in fits], weights)


def fit_anchored_ridge(
    features: torch.Tensor,
    targets: torch.Tensor,
    blocks: Sequence[torch.Tensor],
    anchor: int | None = None,
    combine: Combine = "mean",
) -> RidgeFit:
    """:func:`fit_ridge_combination`, with the other targets chained to the ``anchor`` target's.

    A regressor chain (classifier chains, Read et al. 2011, for regression): the anchor target
    gets its combined ridge; each other target is regressed (least squares, with intercept) on
    the anchor's leave-one-out prediction, and a combined ridge fits what that leaves. A
    target that is measured exactly and carries most of the FC signal (age) so lends its
    read-out to one that shares part of it (fluid intelligence, which falls with age), whose
    own ridge would learn that part from a noisier label. Every step is linear in the
    features, so the chain is still one linear layer; its leave-one-out predictions compose
    the parts' (the two chain coefficients are fit on all the subjects).

    ``anchor=None`` (or a single target) is exactly :func:`fit_ridge_combination`; the other
    targets' ``block_weights`` are those of the ridges on what the chain leaves.
    """
    if anchor is None or targets.shape[1] == 1:
        return fit_ridge_combination(features, targets, blocks, combine)
    others = [t for t in range(targets.shape[1]) if t != anchor]
    targets = targets.float()
    first = fit_ridge_combination(features, targets[:, [anchor]], blocks, combine)
    design = torch.cat([torch.ones_like(first.loo), first.loo], 1)  # [N, 2]
    coef = torch.linalg.lstsq(design.double(), targets[:, others].double()).solution.float()  # [2, T - 1]
    rest = fit_ridge_combination(features, targets[:, others] - design @ coef, blocks, combine)
    weight, bias, loo = torch.empty(targets.shape[1], features.shape[1]), torch.empty(targets.shape[1]), torch.empty(targets.shape)
    block_weights = torch.empty(len(blocks), targets.shape[1])
    weight[anchor], bias[anchor], loo[:, anchor], block_weights[:, anchor] = first.weight[0], first.bias[0], first.loo[:, 0], first.block_weights[:, 0]
    weight[others] = coef[1, :, None] * first.weight + rest.weight
    bias[others] = coef[0] + coef[1] * first.bias + rest.bias
    loo[:, others] = design @ coef + rest.loo
    block_weights[:, others] = rest.block_weights
    alphas = []
    for anchor_chosen, rest_chosen in zip(first.alphas, rest.alphas, strict=True):
        chosen = list(rest_chosen)
        chosen.insert(anchor, anchor_chosen[0])
        alphas.append(chosen)
    return RidgeFit(weight, bias, loo, alphas, block_weights)

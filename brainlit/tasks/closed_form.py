"""Closed-form pieces of a fine-tuned model: the ridge fit of the linear FC read-out.

The read-out is stacked under the network: RWMOE + SSM learn the residual of the ridge
prediction. On the subjects the ridge was fit on, its in-sample predictions are far better
than on anyone else (their residuals are mostly noise), so those subjects get their
leave-one-out ridge predictions instead (:func:`loo_ridge_predictions`), the classic
cross-fitting of stacked models: the residuals the network sees are out-of-sample ones.
With several feature sets (:meth:`brainlit.models.readout.FCReadout.blocks`) the read-out is
the average of one ridge per set (:func:`fit_ridge_average`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from sklearn.linear_model import RidgeCV

ALPHAS = tuple(np.logspace(-1, 5, 25))


def _standardise(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mean, scale = x.mean(0), x.std(0)
    scale[scale < 1e-12] = 1.0
    return (x - mean) / scale, mean, scale


def fit_ridge_readout(
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
        alphas: The penalty of each target (as chosen by :func:`fit_ridge_readout`).
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


def fit_ridge_average(
    features: torch.Tensor, targets: torch.Tensor, blocks: Sequence[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[list[float]]]:
    """The average of one ridge per feature set, as one linear layer on all the features.

    Each set (columns ``blocks[k]`` of ``features``, which may share columns) gets its own
    :func:`fit_ridge_readout`; averaging linear models is a linear model, so their weights are
    averaged into one ``[T, E]`` layer. Averaging the predictions of ridge fits on different
    parametrisations of FC cuts the variance no single penalty removes (on the development
    cohorts, ridge on correlation and on tangent FC averaged beat either alone for age).
    The leave-one-out predictions of the average are the average of each fit's.

    Returns:
        ``weight [T, E]``, ``bias [T]``, leave-one-out predictions ``[N, T]`` and each set's
        chosen penalty per target.
    """
    weight = torch.zeros(targets.shape[1], features.shape[1])
    bias, loo, alphas = torch.zeros(targets.shape[1]), torch.zeros(targets.shape), []
    for columns in blocks:
        block_weight, block_bias, block_alphas = fit_ridge_readout(features[:, columns], targets)
        weight[:, columns] += block_weight / len(blocks)
        bias += block_bias / len(blocks)
        loo += loo_ridge_predictions(features[:, columns], targets, block_alphas) / len(blocks)
        alphas.append(block_alphas)
    return weight, bias, loo, alphas


def fit_anchored_ridge(
    features: torch.Tensor, targets: torch.Tensor, blocks: Sequence[torch.Tensor], anchor: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[list[float]]]:
    """:func:`fit_ridge_average`, with the other targets chained to the ``anchor`` target's.

    A regressor chain (classifier chains, Read et al. 2011, for regression): the anchor target
    gets its averaged ridge; each other target is regressed (least squares, with intercept) on
    the anchor's leave-one-out prediction, and an averaged ridge fits what that leaves. A
    target that is measured exactly and carries most of the FC signal (age) so lends its
    read-out to one that shares part of it (fluid intelligence, which falls with age), whose
    own ridge would learn that part from a noisier label. Every step is linear in the
    features, so the chain is still one linear layer; its leave-one-out predictions compose
    the parts' (the two chain coefficients are fit on all the subjects).

    Returns:
        As :func:`fit_ridge_average`; ``anchor=None`` (or a single target) is exactly it.
    """
    if anchor is None or targets.shape[1] == 1:
        return fit_ridge_average(features, targets, blocks)
    others = [t for t in range(targets.shape[1]) if t != anchor]
    targets = targets.float()
    anchor_weight, anchor_bias, anchor_loo, anchor_alphas = fit_ridge_average(features, targets[:, [anchor]], blocks)
    design = torch.cat([torch.ones_like(anchor_loo), anchor_loo], 1)  # [N, 2]
    coef = torch.linalg.lstsq(design.double(), targets[:, others].double()).solution.float()  # [2, T - 1]
    rest_weight, rest_bias, rest_loo, rest_alphas = fit_ridge_average(features, targets[:, others] - design @ coef, blocks)
    weight, bias, loo = torch.empty(targets.shape[1], features.shape[1]), torch.empty(targets.shape[1]), torch.empty(targets.shape)
    weight[anchor], bias[anchor], loo[:, anchor] = anchor_weight[0], anchor_bias[0], anchor_loo[:, 0]
    weight[others] = coef[1, :, None] * anchor_weight + rest_weight
    bias[others] = coef[0] + coef[1] * anchor_bias + rest_bias
    loo[:, others] = design @ coef + rest_loo
    alphas = []
    for anchor_chosen, rest_chosen in zip(anchor_alphas, rest_alphas, strict=True):
        chosen = list(rest_chosen)
        chosen.insert(anchor, anchor_chosen[0])
        alphas.append(chosen)
    return weight, bias, loo, alphas


def network_share_weights(pred: torch.Tensor, true: torch.Tensor, readout: torch.Tensor) -> torch.Tensor:
    """Per target, the weight in [0, 1] on the network's share that fits held-out subjects best.

    The network's share is ``pred - readout``; the weight is the least-squares coefficient of
    the read-out's residual ``true - readout`` on it (no intercept), clipped to [0, 1]: 1 keeps
    the whole share, 0 falls back to the read-out (a stacking weight, as in Breiman 1996).
    A share that is zero for every subject keeps its weight of 1 (there is nothing to weigh).

    Args:
        pred: ``[N, T]`` the model's predictions of held-out subjects.
        true: ``[N, T]`` their targets.
        readout: ``[N, T]`` the read-out's predictions of them (cross-fitted where it saw them).
    """
    share, residual = (pred - readout).double(), (true - readout).double()
    power = share.pow(2).sum(0)
    weight = (share * residual).sum(0) / power.clamp_min(1e-12)
    return torch.where(power > 1e-12, weight.clamp(0.0, 1.0), torch.ones_like(weight)).float()

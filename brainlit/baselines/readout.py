"""ConnectivityRidge: brainlit's closed-form read-out, the first of the two models "brainlit" combines."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from nilearn.connectome import ConnectivityMeasure

from brainlit.baselines.features import (
    autocorrelation,
    feature_blocks,
    fisher_z_edges,
    tangent_edges,
)
from brainlit.baselines.ridge import Combine, fit_anchored_ridge

Connectivity = Literal["correlation", "tangent", "both"]
EDGE_KINDS: dict[str, tuple[str, ...]] = {
    "correlation": ("correlation",), "tangent": ("tangent",), "both": ("correlation", "tangent"),
}


def as_target_frame(y: pd.DataFrame | pd.Series | np.ndarray) -> pd.DataFrame:
    """Targets as a ``[N, T]`` frame: a frame as is, a Series as one named column, an array as
    columns ``target0, target1, ...``."""
    if isinstance(y, pd.DataFrame):
        return y
    if isinstance(y, pd.Series):
        return y.to_frame(y.name or "target0")
    values = np.asarray(y, dtype=np.float64)
    values = values[:, None] if values.ndim == 1 else values
    return pd.DataFrame(values, columns=[f"target{i}" for i in range(values.shape[1])])


class ConnectivityRidge:
    """Ridge on static connectivity, fit in closed form: brainlit's read-out.

    One ridge per edge set (Fisher-z correlation FC, and tangent-space FC at the geometric mean
    of the training runs, Dadi et al. 2019), each also reading every ROI's autocorrelation at
    lags ``1..lags``; the ridges are averaged or stacked per target (Breiman 1996) and, with
    ``anchor``, the other targets are chained to the anchor's prediction (a regressor chain).
    Every part is linear in the features, so the fit is one linear layer
    (:mod:`brainlit.baselines.ridge`); each penalty is chosen by leave-one-out CV.

    Args:
        connectivity: Edge sets: ``correlation``, ``tangent`` or ``both``.
        lags: Autocorrelation lags per ROI added to every edge set (0: FC only).
        combine: How the edge sets' ridges combine: ``mean`` or ``stack``.
        anchor: A target the others are chained to (e.g. ``age``); ignored when it is not
            among the targets or there is only one.

    Attributes (after :meth:`fit`):
        targets_: Target names. weight_ ``[T, F]``, bias_ ``[T]``: the linear layer on
        :meth:`features`. whitening_ ``[R, R]``: the tangent reference ``ref^(-1/2)``.
        oof_ ``[N, T]``: leave-one-out predictions of the subjects it was fit on.
        alphas_, block_weights_: each edge set's penalty and weight per target.
    """

    def __init__(self, connectivity: Connectivity = "both", lags: int = 3, combine: Combine = "stack",
                 anchor: str | None = None) -> None:
        if connectivity not in EDGE_KINDS or combine not in ("mean", "stack") or lags < 0:
            raise ValueError(f"ConnectivityRidge needs connectivity in {set(EDGE_KINDS)}, combine in "
                             f"{{mean, stack}} and lags >= 0; got {connectivity!r}, {combine!r}, {lags}.")
        self.connectivity, self.lags, self.combine, self.anchor = connectivity, lags, combine, anchor

    @property
    def kinds(self) -> tuple[str, ...]:
        """The edge sets read, in feature order."""
        return EDGE_KINDS[self.connectivity]

    def fit(self, runs: Sequence[np.ndarray], y: pd.DataFrame | pd.Series | np.ndarray) -> ConnectivityRidge:
        """Fit on training runs (``[R, T]`` each) and their targets ``[N]`` or ``[N, T]``."""
        targets = as_target_frame(y)
        self.targets_ = [str(c) for c in targets.columns]
        self.whitening_ = np.eye(len(runs[0]))
        if "tangent" in self.kinds:
            self.whitening_ = ConnectivityMeasure(kind="tangent").fit([np.asarray(r).T for r in runs]).whitening_
        features = torch.from_numpy(self.features(runs))
        n_edges = len(runs[0]) * (len(runs[0]) - 1) // 2
        blocks = feature_blocks(n_edges, len(self.kinds), features.shape[1])
        anchor = self.targets_.index(self.anchor) if self.anchor in self.targets_ else None
        fit = fit_anchored_ridge(features, torch.from_numpy(targets.to_numpy(np.float64, copy=True)), blocks, anchor,
                                 self.combine)
        self.weight_, self.bias_ = fit.weight.double().numpy(), fit.bias.double().numpy()
        self.oof_ = fit.loo.double().numpy()
        self.alphas_, self.block_weights_ = fit.alphas, fit.block_weights.numpy()
        return self

    def features(self, runs: Sequence[np.ndarray]) -> np.ndarray:
        """``[N, F]``: each edge set's upper triangle, then the autocorrelations (lag-major)."""
        return np.stack([self._run_features(np.asarray(run, dtype=np.float64)) for run in runs])

    def _run_features(self, run: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(run)[None]  # [1, R, T]
        parts = [fisher_z_edges(x) if kind == "correlation" else tangent_edges(x, torch.from_numpy(self.whitening_))
                 for kind in self.kinds]
        parts += [autocorrelation(x, self.lags)] if self.lags else []
        return torch.cat(parts, dim=1)[0].numpy()

    def predict(self, runs: Sequence[np.ndarray]) -> np.ndarray:
        """Predictions ``[N, T]`` of runs ``[R, T]`` (any length)."""
        return self.features(runs) @ self.weight_.T + self.bias_

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The fitted read-out as JSON values and arrays (what a model folder stores)."""
        config = {"connectivity": self.connectivity, "lags": self.lags, "combine": self.combine,
                  "anchor": self.anchor, "targets": self.targets_,
                  "alphas": [[float(a) for a in alphas] for alphas in self.alphas_]}
        return config, {"weight": self.weight_, "bias": self.bias_, "whitening": self.whitening_,
                        "block_weights": self.block_weights_}

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> ConnectivityRidge:
        """A fitted read-out from :meth:`to_state`'s output."""
        readout = cls(config["connectivity"], config["lags"], config["combine"], config["anchor"])
        readout.targets_, readout.alphas_ = list(config["targets"]), config["alphas"]
        readout.weight_, readout.bias_ = np.asarray(arrays["weight"], np.float64), np.asarray(arrays["bias"], np.float64)
        readout.whitening_ = np.asarray(arrays["whitening"], np.float64)
        readout.block_weights_ = np.asarray(arrays["block_weights"])
        return readout

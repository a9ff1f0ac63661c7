"""ConnectivityRidge: brainlit's closed-form read-out, the first of the two models "brainlit" combines."""

from __future__ import annotations

import logging
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
from brainlit.errors import BrainlitConfigError
from brainlit.sites.harmonise import ComBatHarmoniser

log = logging.getLogger(__name__)

Connectivity = Literal["correlation", "tangent", "both"]
EDGE_KINDS: dict[str, tuple[str, ...]] = {
    "correlation": ("correlation",), "tangent": ("tangent",), "both": ("correlation", "tangent"),
}
ONE_SITE = "training"  # the site label of a cohort without a site column


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

    With ``harmonise`` the features first go through ComBat
    (:class:`~brainlit.sites.harmonise.ComBatHarmoniser`) fit on the training subjects with age
    as a covariate; training and new subjects alike then lose their site's location (a new
    subject's age is unknown), so the ridge reads what it will be given. With ``site_scale``
    and an ``age`` target, a second pass also undoes each site's scale, at the age this
    read-out predicts from the location-harmonised features, de-biased as
    ``(pred - intercept) / slope`` (the line of its leave-one-out predictions on the training
    ages): a scanner whose noise scales the features' age effect shrinks every prediction
    towards the mean, which a location shift cannot undo. A cohort without a site column is one
    site (``"training"``), whose effects are zero: the harmoniser is then what a new site is
    adapted to (:meth:`adapt_site`). Evidence: ``docs/research/new_site.md``.

    Args:
        connectivity: Edge sets: ``correlation``, ``tangent`` or ``both``.
        lags: Autocorrelation lags per ROI added to every edge set (0: FC only).
        combine: How the edge sets' ridges combine: ``mean`` or ``stack``.
        anchor: A target the others are chained to (e.g. ``age``); ignored when it is not
            among the targets or there is only one.
        harmonise: Fit ComBat on the training features when their ages are known.
        site_scale: Also undo each site's scale at the predicted age (above; needs an ``age``
            target, else the location alone).
        shrink_noisier: At a site adapted from controls that is noisier than the training
            sites, shrink its residuals by their variance ratio instead of rescaling them
            (``ComBatHarmoniser``'s ``shrink_noisier``).

    Attributes (after :meth:`fit`):
        targets_: Target names. weight_ ``[T, F]``, bias_ ``[T]``: the linear layer on
        :meth:`design`. whitening_ ``[R, R]``: the tangent reference ``ref^(-1/2)``.
        harmoniser_: The fitted ComBat model, or None. age_line_: ``(slope, intercept)`` of
        the age prediction's de-biasing, or None (no second pass). oof_ ``[N, T]``: leave-one-out
        predictions of the subjects it was fit on. alphas_, block_weights_: each edge set's
        penalty and weight per target.
    """

    def __init__(self, connectivity: Connectivity = "both", lags: int = 3, combine: Combine = "stack",
                 anchor: str | None = None, harmonise: bool = True, site_scale: bool = True,
                 shrink_noisier: bool = True) -> None:
        if connectivity not in EDGE_KINDS or combine not in ("mean", "stack") or lags < 0:
            raise ValueError(f"ConnectivityRidge needs connectivity in {set(EDGE_KINDS)}, combine in "
                             f"{{mean, stack}} and lags >= 0; got {connectivity!r}, {combine!r}, {lags}.")
        self.connectivity, self.lags, self.combine, self.anchor = connectivity, lags, combine, anchor
        self.harmonise, self.site_scale, self.shrink_noisier = harmonise, site_scale, shrink_noisier

    @property
    def kinds(self) -> tuple[str, ...]:
        """The edge sets read, in feature order."""
        return EDGE_KINDS[self.connectivity]

    def fit(self, runs: Sequence[np.ndarray], y: pd.DataFrame | pd.Series | np.ndarray,
            sites: Sequence[str] | None = None, age: Sequence[float] | None = None) -> ConnectivityRidge:
        """Fit on training runs (``[R, T]`` each) and their targets ``[N]`` or ``[N, T]``.

        Args:
            sites: Each run's site label (None: one site).
            age: Each subject's age, ComBat's covariate (None: the ``age`` target if there is
                one; without ages nothing is harmonised).
        """
        targets = as_target_frame(y)
        self.targets_ = [str(c) for c in targets.columns]
        self.whitening_ = np.eye(len(runs[0]))
        if "tangent" in self.kinds:
            self.whitening_ = ConnectivityMeasure(kind="tangent").fit([np.asarray(r).T for r in runs]).whitening_
        features = self.features(runs)
        if age is None and "age" in self.targets_:
            age = targets["age"].to_numpy(np.float64)
        self.harmoniser_, self.age_line_ = None, None
        if self.harmonise and age is not None and np.isfinite(np.asarray(age, np.float64)).all():
            self.harmoniser_ = ComBatHarmoniser(shrink_noisier=self.shrink_noisier).fit(features, _sites(sites, len(runs)), age)
        features = torch.from_numpy(self._harmonised(features, sites))
        n_edges = len(runs[0]) * (len(runs[0]) - 1) // 2
        blocks = feature_blocks(n_edges, len(self.kinds), features.shape[1])
        anchor = self.targets_.index(self.anchor) if self.anchor in self.targets_ else None
        fit = fit_anchored_ridge(features, torch.from_numpy(targets.to_numpy(np.float64, copy=True)), blocks, anchor,
                                 self.combine)
        self.weight_, self.bias_ = fit.weight.double().numpy(), fit.bias.double().numpy()
        self.oof_ = fit.loo.double().numpy()
        self.alphas_, self.block_weights_ = fit.alphas, fit.block_weights.numpy()
        if self.site_scale and self.harmoniser_ is not None and "age" in self.targets_:
            self.age_line_ = _age_line(targets["age"].to_numpy(np.float64), self.oof_[:, self.targets_.index("age")])
        return self

    def features(self, runs: Sequence[np.ndarray]) -> np.ndarray:
        """``[N, F]``: each edge set's upper triangle, then the autocorrelations (lag-major)."""
        return np.stack([self._run_features(np.asarray(run, dtype=np.float64)) for run in runs])

    def design(self, runs: Sequence[np.ndarray], sites: Sequence[str] | None = None) -> np.ndarray:
        """``[N, F]``: the features the linear layer reads, harmonised where ComBat was fit."""
        return self._harmonised(self.features(runs), sites)

    def _harmonised(self, features: np.ndarray, sites: Sequence[str] | None) -> np.ndarray:
        """Each row less its site's location (and, with ``age_line_``, its scale at the de-biased
        predicted age); rows of a site ComBat never saw stay as they are."""
        if self.harmoniser_ is None:
            return features
        sites = _sites(sites, len(features))
        known = np.isin(sites, self.harmoniser_.sites_)
        if not known.all():
            log.warning("Sites %s were not in the read-out's training cohort: their site effects stay "
                        "(adapt to a new site from its controls: apply --controls).", sorted(set(sites[~known])))
        harmonised = features.copy()
        if known.any():
            harmonised[known] = self.harmoniser_.transform(features[known], sites[known])
            if self.age_line_ is not None:  # the second pass: the scale, at the de-biased predicted age
                slope, intercept = self.age_line_
                guess = (self.from_design(harmonised[known])[:, self.targets_.index("age")] - intercept) / slope
                harmonised[known] = self.harmoniser_.transform(features[known], sites[known], guess)
        return harmonised

    def adapt_site(self, runs: Sequence[np.ndarray], site: str, age: Sequence[float]) -> ConnectivityRidge:
        """Learn a new ``site``'s ComBat effects from its controls' runs and ages; the rest stays."""
        if self.harmoniser_ is None:
            raise BrainlitConfigError("this read-out was fit without harmonisation (no ages): it cannot adapt "
                                      "to a new site.")
        self.harmoniser_.adapt(self.features(runs), site, age)
        return self

    def _run_features(self, run: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(run)[None]  # [1, R, T]
        parts = [fisher_z_edges(x) if kind == "correlation" else tangent_edges(x, torch.from_numpy(self.whitening_))
                 for kind in self.kinds]
        parts += [autocorrelation(x, self.lags)] if self.lags else []
        return torch.cat(parts, dim=1)[0].numpy()

    def predict(self, runs: Sequence[np.ndarray], sites: Sequence[str] | None = None) -> np.ndarray:
        """Predictions ``[N, T]`` of runs ``[R, T]`` (any length) scanned at ``sites`` (None: one site)."""
        return self.from_design(self.design(runs, sites))

    def from_design(self, design: np.ndarray) -> np.ndarray:
        """Predictions ``[N, T]`` from :meth:`design`'s features."""
        return design @ self.weight_.T + self.bias_

    def to_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The fitted read-out as JSON values and arrays (what a model folder stores); the
        harmoniser's arrays are prefixed ``harmoniser.``."""
        config = {"connectivity": self.connectivity, "lags": self.lags, "combine": self.combine,
                  "anchor": self.anchor, "harmonise": self.harmonise, "site_scale": self.site_scale,
                  "shrink_noisier": self.shrink_noisier,
                  "age_line": None if self.age_line_ is None else list(self.age_line_), "targets": self.targets_,
                  "alphas": [[float(a) for a in alphas] for alphas in self.alphas_], "harmoniser": None}
        arrays = {"weight": self.weight_, "bias": self.bias_, "whitening": self.whitening_,
                  "block_weights": self.block_weights_}
        if self.harmoniser_ is not None:
            config["harmoniser"], harmoniser = self.harmoniser_.to_state()
            arrays |= {f"harmoniser.{name}": value for name, value in harmoniser.items()}
        return config, arrays

    @classmethod
    def from_state(cls, config: dict[str, Any], arrays: dict[str, np.ndarray]) -> ConnectivityRidge:
        """A fitted read-out from :meth:`to_state`'s output."""
        readout = cls(config["connectivity"], config["lags"], config["combine"], config["anchor"],
                      config.get("harmonise", False), config.get("site_scale", False),
                      config.get("shrink_noisier", False))
        line = config.get("age_line")  # absent in folders written before the second pass existed
        readout.age_line_ = None if line is None else (float(line[0]), float(line[1]))
        readout.targets_, readout.alphas_ = list(config["targets"]), config["alphas"]
        readout.weight_, readout.bias_ = np.asarray(arrays["weight"], np.float64), np.asarray(arrays["bias"], np.float64)
        readout.whitening_ = np.asarray(arrays["whitening"], np.float64)
        readout.block_weights_ = np.asarray(arrays["block_weights"])
        harmoniser = {k.removeprefix("harmoniser."): v for k, v in arrays.items() if k.startswith("harmoniser.")}
        readout.harmoniser_ = ComBatHarmoniser.from_state(config["harmoniser"], harmoniser) if config.get("harmoniser") else None
        return readout


def _age_line(age: np.ndarray, predicted: np.ndarray) -> tuple[float, float] | None:
    """``(slope, intercept)`` of ``predicted = slope * age + intercept``, or None when the
    predictions barely follow age (a slope under 0.05 would make the de-biased age unbounded)."""
    slope, intercept = np.polyfit(age, predicted, deg=1)
    return (float(slope), float(intercept)) if slope >= 0.05 else None


def _sites(sites: Sequence[str] | None, n: int) -> np.ndarray:
    """``[n]`` site labels as text: ``ONE_SITE`` for every run when there are none."""
    return np.full(n, ONE_SITE, dtype=object) if sites is None else np.asarray([str(s) for s in sites], dtype=object)

"""ComBat harmonisation of read-out features across sites, with age as a smooth covariate.

Evidence for the defaults: ``docs/research/harmonise.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
from neuroCombat.neuroCombat import find_parametric_adjustments, fit_LS_model_and_find_priors
from numpy.typing import ArrayLike
from scipy.interpolate import BSpline

from brainlit.errors import BrainlitConfigError, BrainlitDataError
from brainlit.sites.state import State, check_state, header

log = logging.getLogger(__name__)

DEGREE = 3  # cubic B-splines
MIN_SUBJECTS_PER_SITE = 2  # a site's variance needs two subjects


class ComBatHarmoniser:
    """Remove site location and scale effects from features while keeping the age effect.

    The ComBat model (Johnson et al. 2007; Fortin et al. 2017 for imaging): each feature is
    ``grand_mean + f(age) + sigma * (gamma_site + sqrt(delta_site) * noise)``, with ``f`` a
    cubic B-spline of age (knots at training age quantiles, ages outside the training range
    clipped to it) and ``gamma``, ``delta`` shrunk across features by empirical Bayes
    (neuroCombat's estimator). Harmonised features are ``grand_mean + f(age) + sigma * noise``:
    the site effects go, the age effect stays. With one training site that site is the
    reference (``gamma = 0``, ``delta = 1``), so new sites are mapped onto its distribution.

    neuroCombat fits the empirical Bayes step; the rest is least squares written here, and
    only arrays are kept, so the state needs no pickle. neuroHarmonize (whose ``orig_model``
    path :meth:`adapt` follows) is not used: it pins numpy < 2 and pandas < 3, and its smooth
    term fits a penalised GAM per feature, minutes for a thousand edges.

    At apply time age may be unknown (``age=None``, or NaN rows): then only the site's
    location is removed, ``x - sigma * gamma_site``, in which the age term cancels exactly;
    the scale cannot be undone without the subject's age (plugging in the training mean age
    shrinks the age effect by ``1 / sqrt(delta_site)``, or ``1 / delta_site`` where a noisier
    site is shrunk: 1.5-3.5 years more MAE, see the note).
    :class:`~brainlit.baselines.readout.ConnectivityRidge` plugs in the age it predicts instead,
    de-biased (its ``site_scale``).

    A site adapted from controls whose residual variance exceeds the training sites'
    (``delta > 1``) is noisier: rescaling its residuals by ``1 / sqrt(delta)`` restores their
    spread but keeps the noise in it. With ``shrink_noisier`` they are divided by ``delta``
    instead: the regression-calibration estimate of a training-like residual when the extra
    variance is noise, ``E[clean | noisy] = noisy * var(clean) / var(noisy)`` (Carroll et al.
    2006, Measurement Error in Nonlinear Models, ch. 4). Training sites keep ComBat's scale.

    Args:
        n_knots: Interior knots of the age spline.
        min_controls: Fewest controls :meth:`adapt` accepts for a new site.
        empirical_bayes: Shrink site effects across features (False: per-feature estimates).
        shrink_noisier: At an adapted site, divide residuals by ``delta`` where ``delta > 1``.
    """

    def __init__(self, n_knots: int = 2, min_controls: int = 10, empirical_bayes: bool = True,
                 shrink_noisier: bool = True) -> None:
        if n_knots < 0 or min_controls < MIN_SUBJECTS_PER_SITE:
            raise BrainlitConfigError(f"ComBatHarmoniser: n_knots must be >= 0 and min_controls >= "
                                      f"{MIN_SUBJECTS_PER_SITE}, got {n_knots}, {min_controls}.")
        self.n_knots, self.min_controls, self.empirical_bayes = n_knots, min_controls, empirical_bayes
        self.shrink_noisier = shrink_noisier

    def fit(self, features: ArrayLike, sites: Sequence, age: ArrayLike) -> ComBatHarmoniser:
        """Fit on training subjects: ``features [N, F]``, ``sites [N]`` (labels), ``age [N]``.

        Raises:
            BrainlitDataError: shapes disagree, an age is missing or a site has one subject.
        """
        features, sites, age = _checked(features, sites, age, "fit")
        self.sites_, index = np.unique(sites, return_inverse=True)
        self.n_adapted_ = 0
        counts = np.bincount(index)
        if counts.min() < MIN_SUBJECTS_PER_SITE:
            raise BrainlitDataError(f"ComBatHarmoniser.fit: site {self.sites_[counts.argmin()]!r} has one "
                                    "subject; ComBat needs at least two per site (merge or drop it).")
        interior = np.quantile(age, np.linspace(0, 1, self.n_knots + 2)[1:-1])
        self.knots_ = np.r_[[age.min()] * (DEGREE + 1), interior, [age.max()] * (DEGREE + 1)]
        design = np.c_[np.eye(len(self.sites_))[index], self._basis(age)]  # [N, S + K]: sites, age spline
        coef = np.linalg.lstsq(design, features, rcond=None)[0]  # [S + K, F]
        self.grand_mean_ = counts / len(age) @ coef[: len(self.sites_)]  # [F]
        self.age_coef_ = coef[len(self.sites_):]  # [K, F]
        residual = features - design @ coef
        variance = (residual**2).mean(0)
        self.var_pooled_ = np.where(variance > 0, variance, 1.0)  # a constant feature is left as it is
        self.gamma_, self.delta_ = self._site_effects(self._standardise(features, age), index, len(self.sites_))
        return self

    def transform(self, features: ArrayLike, sites: Sequence, age: ArrayLike | None = None) -> np.ndarray:
        """Harmonised ``[N, F]`` of subjects at training or adapted sites.

        Args:
            features: ``[N, F]`` read-out features.
            sites: ``[N]`` site labels, each a training site or one added by :meth:`adapt`.
            age: ``[N]`` ages, NaN where unknown, or None for all unknown: there only the
                site's location is removed (see the class docstring). Pass None in an honest
                evaluation of new subjects.

        Raises:
            BrainlitDataError: a site neither trained on nor adapted, or mismatched shapes.
        """
        features, sites, age = _checked(features, sites, age, "transform")
        index = self._site_index(sites)
        sigma = np.sqrt(self.var_pooled_)
        harmonised = features - sigma * self.gamma_[index]  # [N, F]: the location alone, for unknown ages
        known = np.isfinite(age)
        if known.any():
            standardised = self._standardise(features[known], age[known])
            location_scale = (standardised - self.gamma_[index[known]]) / self._scale(index[known])
            harmonised[known] = location_scale * sigma + self._expected(age[known])
        return harmonised

    def _scale(self, index: np.ndarray) -> np.ndarray:
        """``[N, F]`` what each subject's standardised residual is divided by: ``sqrt(delta)``,
        or ``delta`` at a noisier adapted site with ``shrink_noisier``."""
        delta = self.delta_[index]
        if not self.shrink_noisier:
            return np.sqrt(delta)
        noisier = (index >= self.n_training_sites_)[:, None] & (delta > 1)
        return np.where(noisier, delta, np.sqrt(delta))

    def adapt(self, features: ArrayLike, site: str, age: ArrayLike) -> ComBatHarmoniser:
        """Learn a new ``site``'s effects from its controls (``features [n, F]``, ``age [n]``);
        every fitted parameter stays as it is.

        Raises:
            BrainlitDataError: fewer than ``min_controls`` controls, a control without age,
                or ``site`` is a training site.
        """
        features, _, age = _checked(features, [site] * len(features), age, "adapt")
        site = str(site)
        if site in self.sites_[: self.n_training_sites_]:
            raise BrainlitDataError(f"ComBatHarmoniser.adapt: {site!r} is a training site; its effects "
                                    "were fit with the model. Give a new site's controls another label.")
        if len(age) < self.min_controls:
            raise BrainlitDataError(f"ComBatHarmoniser.adapt: site {site!r} has {len(age)} controls, fewer "
                                    f"than min_controls={self.min_controls}: scan more controls there.")
        gamma, delta = self._site_effects(self._standardise(features, age), np.zeros(len(age), int), 1,
                                          reference=False)
        keep = self.sites_ != site  # adapting again replaces the site's earlier effects
        self.n_adapted_ += int(keep.all())
        self.sites_ = np.append(self.sites_[keep], np.array([site], dtype=object))
        self.gamma_ = np.vstack([self.gamma_[keep], gamma])
        self.delta_ = np.vstack([self.delta_[keep], delta])
        log.info("ComBatHarmoniser: site %r adapted from %d controls.", site, len(age))
        return self

    @property
    def n_training_sites_(self) -> int:
        """The number of sites the harmoniser was fit on (adapted sites follow them)."""
        return len(self.sites_) - self.n_adapted_

    def _basis(self, age: np.ndarray) -> np.ndarray:
        """``[N, K]`` cubic B-spline basis of age, its first column dropped (the sites' intercepts
        span it)."""
        clipped = np.clip(age, self.knots_[0], self.knots_[-1])
        return BSpline.design_matrix(clipped, self.knots_, DEGREE).toarray()[:, 1:]

    def _expected(self, age: np.ndarray) -> np.ndarray:
        """``[N, F]`` the training cohort's mean features at each age."""
        return self.grand_mean_ + self._basis(age) @ self.age_coef_

    def _standardise(self, features: np.ndarray, age: np.ndarray) -> np.ndarray:
        """``[N, F]`` residuals from the training mean at each age, in pooled-sd units."""
        return (features - self._expected(age)) / np.sqrt(self.var_pooled_)

    def _site_effects(self, standardised: np.ndarray, index: np.ndarray, n_sites: int,
                      reference: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """``(gamma [S, F], delta [S, F])`` from standardised residuals ``[N, F]`` by neuroCombat's
        (empirical Bayes) estimates; a lone training site is the reference (0, 1)."""
        if reference and n_sites == 1:
            return np.zeros((1, standardised.shape[1])), np.ones((1, standardised.shape[1]))
        info = {"n_batch": n_sites, "batch_info": [np.flatnonzero(index == s) for s in range(n_sites)],
                "ref_level": None}
        design = np.eye(n_sites)[index]
        with np.errstate(divide="ignore", invalid="ignore"):  # its convergence test divides by gamma
            priors = fit_LS_model_and_find_priors(standardised.T, design, info, mean_only=False)
            if not self.empirical_bayes:
                return np.asarray(priors["gamma_hat"]), np.asarray(priors["delta_hat"])
            return find_parametric_adjustments(standardised.T, priors, info, mean_only=False)

    def to_state(self) -> State:
        """JSON values (sites, options) and arrays (knots, grand_mean, age_coef, var_pooled, gamma, delta)."""
        json_values = {**header("ComBatHarmoniser"), "n_knots": self.n_knots, "min_controls": self.min_controls,
                       "empirical_bayes": self.empirical_bayes, "shrink_noisier": self.shrink_noisier,
                       "sites": [str(s) for s in self.sites_],
                       "n_adapted": self.n_adapted_}
        return json_values, {name: getattr(self, f"{name}_") for name in STATE_ARRAYS}

    @classmethod
    def from_state(cls, json_values: dict, arrays: dict[str, np.ndarray]) -> ComBatHarmoniser:
        """The fitted harmoniser back from :meth:`to_state`'s output."""
        stored = check_state(json_values, arrays, "ComBatHarmoniser", STATE_ARRAYS)
        harmoniser = cls(json_values["n_knots"], json_values["min_controls"], json_values["empirical_bayes"],
                         json_values.get("shrink_noisier", False))  # absent in older folders
        for name, value in stored.items():
            setattr(harmoniser, f"{name}_", value)
        harmoniser.sites_ = np.array(json_values["sites"], dtype=object)
        harmoniser.n_adapted_ = int(json_values["n_adapted"])
        return harmoniser

    def _site_index(self, sites: np.ndarray) -> np.ndarray:
        known = {site: i for i, site in enumerate(self.sites_)}
        unknown = sorted(set(sites) - set(known))
        if unknown:
            raise BrainlitDataError(f"ComBatHarmoniser: sites {unknown} were neither trained on nor adapted "
                                    f"(known: {list(known)}): call adapt() with at least {self.min_controls} "
                                    "of each site's controls first.")
        return np.array([known[site] for site in sites], dtype=int)


STATE_ARRAYS = ("knots", "grand_mean", "age_coef", "var_pooled", "gamma", "delta")


def _checked(features: ArrayLike, sites: Sequence, age: ArrayLike | None,
             step: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated ``features [N, F]`` float64, ``sites [N]`` str and ``age [N]`` float64, in which
    only ``transform`` may have NaN (None: all NaN)."""
    features = np.asarray(features, dtype=np.float64)
    sites = np.asarray([str(s) for s in sites], dtype=object)
    if features.ndim != 2 or len(sites) != len(features):
        raise BrainlitDataError(f"ComBatHarmoniser.{step}: features must be [N, F] with one site each, got "
                                f"{features.shape} and {len(sites)} sites.")
    if not np.isfinite(features).all():
        rows = np.flatnonzero(~np.isfinite(features).all(1))[:10].tolist()
        raise BrainlitDataError(f"ComBatHarmoniser.{step}: features of rows {rows} are not finite.")
    age = np.full(len(features), np.nan) if age is None else np.asarray(age, dtype=np.float64).ravel()
    missing = np.flatnonzero(~np.isfinite(age)) if step != "transform" else np.array([], dtype=int)
    if len(age) != len(features) or len(missing):
        raise BrainlitDataError(f"ComBatHarmoniser.{step}: {len(age)} ages for {len(features)} subjects, "
                                f"missing at rows {missing[:10].tolist()}: every subject here needs an age.")
    return features, sites, age

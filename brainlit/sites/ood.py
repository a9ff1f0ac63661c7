"""Flags for subjects unlike the training cohort: read-out features far away, an atypical FC
pattern (a wrong atlas or ROI order), short runs, motion.

Evidence for the defaults: ``docs/research/ood.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from brainlit.errors import BrainlitConfigError, BrainlitDataError
from brainlit.sites.state import State, check_state, header

MAX_MEAN_FD_MM = 0.5  # Power et al. 2012 censor volumes above FD 0.5 mm; here a lenient subject cut-off


@dataclass(frozen=True)
class _Subspace:
    """Mahalanobis distance of standardised features under a probabilistic-PCA covariance:
    the training data's top principal variances kept, every other direction given their mean."""

    mean: np.ndarray  # [F]
    scale: np.ndarray  # [F]
    components: np.ndarray  # [K, F] principal axes
    variances: np.ndarray  # [K] variances along them
    residual_variance: float  # the mean variance of all other directions

    @classmethod
    def fit(cls, features: np.ndarray, n_components: int) -> _Subspace:
        """Tipping and Bishop's maximum-likelihood fit on ``features [N, F]``."""
        mean, scale = features.mean(0), features.std(0)
        scale = np.where(scale > 0, scale, 1.0)
        z = (features - mean) / scale
        _, singular, axes = np.linalg.svd(z, full_matrices=False)
        eigen = singular**2 / len(z)
        k = min(n_components, len(eigen), z.shape[1] - 1)
        residual = max(eigen[k:].sum() / (z.shape[1] - k), eigen.sum() * 1e-12)
        return cls(mean, scale, axes[:k], np.maximum(eigen[:k], residual), float(residual))

    def distance(self, features: np.ndarray) -> np.ndarray:
        """``[N]`` squared distance per feature: 1 on average over the training subjects."""
        z = (features - self.mean) / self.scale
        projected = z @ self.components.T  # [N, K]
        residual = (z**2).sum(1) - (projected**2).sum(1)
        return ((projected**2 / self.variances).sum(1) + residual / self.residual_variance) / z.shape[1]


def crop_lengths(min_volumes: int, volumes: int, n: int = 3) -> list[int]:
    """Up to ``n`` run lengths from ``min_volumes`` to below ``volumes``, evenly spaced on a log
    scale: the shorter runs a detector is calibrated for (none when ``volumes <= min_volumes``)."""
    if volumes <= min_volumes:
        return []
    return sorted({round(v) for v in np.geomspace(min_volumes, volumes, n + 1)[:-1]})


def typicality(profiles: np.ndarray, template: np.ndarray) -> np.ndarray:
    """``[N]`` Pearson correlation of each subject's FC edges ``profiles [N, E]`` with the
    ``template [E]`` (the training cohort's mean edges): typicality of FC, Kopal et al. 2020."""
    centred = profiles - profiles.mean(1, keepdims=True)
    template = template - template.mean()
    norms = np.linalg.norm(centred, axis=1) * np.linalg.norm(template)
    return (centred @ template) / np.where(norms > 0, norms, 1.0)


class OutOfDistribution:
    """Per-subject flags: read-out features far from the training cohort's, an FC pattern unlike
    theirs, runs too short, motion.

    The feature distance is the Mahalanobis distance of the standardised features under a
    probabilistic-PCA covariance of the training cohort (Tipping and Bishop 1999): the
    ``n_components`` principal variances are kept and every other direction gets their mean,
    the shrinkage that keeps the inverse stable with more features than subjects. It sums the
    distance inside the principal subspace and the residual off it (Hotelling's T2 and the Q
    statistic), and a wrong ROI order shows mostly in the residual. Its threshold comes from
    cross-validated distances of the training subjects (each from a fit without its fold;
    in-sample ones are optimistic): a subject's conformal p-value is the share of them at
    least as far, and ``p <= false_flag_rate`` flags it, so at most about that share of
    subjects like the training cohort is flagged. Given FC edges (``profiles``) at :meth:`fit`, a
    second check asks whether a subject's FC has the training cohort's pattern: its typicality
    (Kopal et al. 2020, Hum Brain Mapp 41:5325), the correlation of its edges with the training
    mean edges, gets a conformal p-value against cross-validated training typicalities (lower is
    less typical). It is blind to a site's FC scaling and made for what the distance misses most
    often: an atlas or ROI order other than the training one. Both checks together keep the
    stated rate (Bonferroni: each flags at ``p <= false_flag_rate / 2``; ``ood_p`` is the smaller
    p-value times two). A shorter run estimates FC less precisely, so its features lie farther out
    and its pattern is less typical: given the same subjects' features made from their runs cut
    to fewer volumes (``cropped``), each length gets its own calibrations (the cut runs' held-out
    distances and typicalities against the same folds' full-run fits), and a run is judged by
    the longest calibrated length it reaches. Run flags need no fit: fewer volumes than
    ``min_volumes`` (the model's window), or a mean framewise displacement above
    ``max_mean_fd`` mm (Power et al. 2012; 2014).

    Args:
        false_flag_rate: Share of training-like subjects flagged by the feature distance.
        n_components: Principal axes whose variances are kept.
        folds: Folds of the cross-validated distances.
        min_volumes: Fewest volumes a run may have (None: no check).
        max_mean_fd: Largest mean framewise displacement in mm (None: no check).
        seed: Seed of the fold assignment.
    """

    def __init__(self, false_flag_rate: float = 0.05, n_components: int = 10, folds: int = 10,
                 min_volumes: int | None = None, max_mean_fd: float | None = MAX_MEAN_FD_MM,
                 seed: int = 0) -> None:
        if not 0 < false_flag_rate < 1 or folds < 2 or n_components < 1:
            raise BrainlitConfigError(f"OutOfDistribution: false_flag_rate must be in (0, 1), folds >= 2 and "
                                      f"n_components >= 1, got {false_flag_rate}, {folds}, {n_components}.")
        self.false_flag_rate, self.n_components, self.folds, self.seed = false_flag_rate, n_components, folds, seed
        self.min_volumes, self.max_mean_fd = min_volumes, max_mean_fd

    def fit(self, features: ArrayLike, profiles: ArrayLike | None = None, volumes: int | None = None,
            cropped: dict[int, tuple[ArrayLike, ArrayLike | None]] | None = None) -> OutOfDistribution:
        """Fit the distance and its calibration on the training cohort's ``features [N, F]``, and
        the typicality check on their FC edges ``profiles [N, E]`` when given.

        Args:
            features: ``[N, F]`` read-out features of the training runs.
            profiles: ``[N, E]`` their FC edges, for the typicality check.
            volumes: The training runs' fewest volumes: runs at least this long are judged
                against the full runs' calibration.
            cropped: ``{length: (features, profiles)}`` of the same subjects, made from their runs
                cut to ``length < volumes`` volumes (profiles None without the typicality check).

        Raises:
            BrainlitDataError: features not ``[N, F]`` and finite, profiles not one row per
                subject, or too few subjects (fewer than ``checks / false_flag_rate - 1`` for one
                check or two, or folds' fits of ``n_components + 1`` or fewer), or cropped
                lengths without ``volumes`` or not below it.
        """
        features = _features(features, "fit")
        n = len(features)
        fold_fit = n - -(-n // self.folds)  # subjects in the smallest fold's fit
        checks = 1 if profiles is None else 2
        if (n + 1) * self.false_flag_rate / checks < 1 or fold_fit <= self.n_components + 1:
            raise BrainlitDataError(
                f"OutOfDistribution.fit: {n} training subjects are too few for false_flag_rate="
                f"{self.false_flag_rate} (p-values need {np.ceil(checks / self.false_flag_rate - 1):.0f}) or for "
                f"n_components={self.n_components} with {self.folds} folds: lower n_components or folds.")
        cropped = cropped or {}
        if cropped and (volumes is None or max(cropped) >= volumes):
            raise BrainlitDataError(f"OutOfDistribution.fit: cropped lengths {sorted(cropped)} must lie below "
                                    f"the training runs' fewest volumes (volumes={volumes}).")
        fold = np.random.default_rng(self.seed).permutation(n) % self.folds
        subspaces = [_Subspace.fit(features[fold != k], self.n_components) for k in range(self.folds)]
        self.distance_ = _Subspace.fit(features, self.n_components)
        self.template_ = templates = None
        if profiles is not None:
            profiles = self._profiles(profiles, n)
            templates = [profiles[fold != k].mean(0) for k in range(self.folds)]
            self.template_ = profiles.mean(0)
        self.volumes_ = volumes if cropped else None
        self.calibrations_ = {}
        for length, (f, p) in [*sorted(cropped.items()), (self.volumes_, (features, profiles))]:
            f = _features(f, "fit", features.shape[1])
            if len(f) != n:
                raise BrainlitDataError(f"OutOfDistribution.fit: {len(f)} cropped features for {n} subjects.")
            typical = None if templates is None else _held_out(templates, fold, self._profiles(p, n), _typicality_to)
            self.calibrations_[length] = (_held_out(subspaces, fold, f, _Subspace.distance), typical)
        return self

    def _suffix(self, length: int | None) -> str:
        """The state arrays' suffix of a calibrated length: none for the full runs'."""
        return "" if length == self.volumes_ else f"_{length}"

    def _profiles(self, profiles: ArrayLike | None, n: int) -> np.ndarray:
        if profiles is None:
            raise BrainlitDataError("OutOfDistribution.fit: the typicality check needs the cropped runs' profiles too.")
        profiles = _features(profiles, "fit")
        if len(profiles) != n:
            raise BrainlitDataError(f"OutOfDistribution.fit: {len(profiles)} profiles for {n} subjects.")
        return profiles

    def p_values(self, features: ArrayLike, profiles: ArrayLike | None = None,
                 n_volumes: ArrayLike | None = None) -> np.ndarray:
        """``[N]`` conformal p-values: the share of cross-validated training distances at least as
        far; with the typicality check, twice the smaller of that and the typicality's p-value.
        ``n_volumes`` picks each run's calibrated length (None: the full runs')."""
        scores = self._scores(features, profiles, n_volumes)
        return _both(scores["p_distance"], scores["p_typical"])

    def _scores(self, features: ArrayLike, profiles: ArrayLike | None,
                n_volumes: ArrayLike | None) -> dict[str, np.ndarray | None]:
        """Each check's statistic and p-value (``typical`` and ``p_typical`` None when not fit),
        each run against the calibration of its length."""
        distance = self.distance_.distance(_features(features, "p_values", self.distance_.mean.size))
        typical = None if self.template_ is None else self.typicality_of(profiles, len(distance))
        p_distance, p_typical = np.empty(len(distance)), None if typical is None else np.empty(len(distance))
        keys = self._calibrated_lengths(n_volumes, len(distance))
        for key in set(keys):
            rows = np.array([k == key for k in keys])
            distances, typicalities = self.calibrations_[key]
            p_distance[rows] = _p_value(distances, distance[rows], larger_is_rarer=True)
            if typical is not None:
                p_typical[rows] = _p_value(typicalities, typical[rows], larger_is_rarer=False)
        return {"distance": distance, "p_distance": p_distance, "typical": typical, "p_typical": p_typical}

    def _calibrated_lengths(self, n_volumes: ArrayLike | None, n: int) -> list[int | None]:
        """Each run's calibration: the longest calibrated length it reaches (the shortest below all)."""
        if self.volumes_ is None or n_volumes is None:
            return [self.volumes_] * n
        lengths = np.array(list(self.calibrations_))
        reached = np.searchsorted(lengths, _per_subject(n_volumes, n, "n_volumes"), side="right") - 1
        return [int(lengths[max(i, 0)]) for i in reached]

    def typicality_of(self, profiles: ArrayLike | None, n: int) -> np.ndarray:
        """``[N]`` typicality of FC edges ``profiles [N, E]`` against the training template."""
        if profiles is None:
            raise BrainlitDataError("OutOfDistribution: this detector checks the typicality of FC: pass each "
                                    "subject's FC edges (profiles) made as the training cohort's were.")
        profiles = _features(profiles, "typicality", self.template_.size)
        if len(profiles) != n:
            raise BrainlitDataError(f"OutOfDistribution: {len(profiles)} profiles for {n} subjects.")
        return typicality(profiles, self.template_)

    def assess(self, features: ArrayLike, n_volumes: ArrayLike | None = None,
               mean_fd: ArrayLike | None = None, profiles: ArrayLike | None = None) -> pd.DataFrame:
        """One row per subject: ``ood_score``, ``ood_typicality``, ``ood_p``, ``ood_flag``, ``ood_reason``.

        Args:
            features: ``[N, F]`` read-out features, made as the training ones were.
            n_volumes: ``[N]`` volumes in each run (None: not checked).
            mean_fd: ``[N]`` mean framewise displacement in mm; NaN where unknown.
            profiles: ``[N, E]`` FC edges, needed when the detector was fit with them.

        Returns:
            ``ood_score`` the feature distance (1: a typical training subject),
            ``ood_typicality`` the FC typicality (NaN without that check), ``ood_p`` the
            p-value of both checks, ``ood_flag`` whether any check failed, ``ood_reason`` each
            failed check ("" when none).
        """
        features = _features(features, "assess", self.distance_.mean.size)
        scores = self._scores(features, profiles, n_volumes)
        p_distance, typical, p_typical = scores["p_distance"], scores["typical"], scores["p_typical"]
        cut = self.false_flag_rate / (1 if p_typical is None else 2)
        reasons = [[f"features far from the training cohort (p={v:.2g})"] if v <= cut else [] for v in p_distance]
        if p_typical is not None:
            for row in np.flatnonzero(p_typical <= cut):
                reasons[row].append(f"FC unlike the training cohort's pattern (typicality {typical[row]:.2f}, "
                                    f"p={p_typical[row]:.2g}): check the atlas and the ROI order")
        if n_volumes is not None and self.min_volumes is not None:
            for row, volumes in enumerate(_per_subject(n_volumes, len(features), "n_volumes")):
                if volumes < self.min_volumes:
                    reasons[row].append(f"run too short: {volumes:.0f} < {self.min_volumes} volumes")
        if mean_fd is not None and self.max_mean_fd is not None:
            for row, fd in enumerate(_per_subject(mean_fd, len(features), "mean_fd")):
                if fd > self.max_mean_fd:  # NaN (unknown) compares False
                    reasons[row].append(f"mean FD {fd:.2g} mm > {self.max_mean_fd:g} mm")
        return pd.DataFrame({"ood_score": scores["distance"],
                             "ood_typicality": np.full(len(features), np.nan) if typical is None else typical,
                             "ood_p": _both(p_distance, p_typical),
                             "ood_flag": [bool(r) for r in reasons], "ood_reason": ["; ".join(r) for r in reasons]})

    def to_state(self) -> State:
        """JSON values (options, residual variance, calibrated lengths) and arrays (calibration
        distances and typicalities per length, eigenbasis)."""
        cropped = [length for length in self.calibrations_ if length != self.volumes_]
        json_values = {**header("OutOfDistribution"), "false_flag_rate": self.false_flag_rate,
                       "n_components": self.n_components, "folds": self.folds,
                       "min_volumes": self.min_volumes, "max_mean_fd": self.max_mean_fd, "seed": self.seed,
                       "residual_variance": self.distance_.residual_variance, "volumes": self.volumes_,
                       "cropped_lengths": cropped}
        arrays = {"mean": self.distance_.mean, "scale": self.distance_.scale,
                  "components": self.distance_.components, "variances": self.distance_.variances}
        if self.template_ is not None:
            arrays["template"] = self.template_
        for length, (distances, typicalities) in self.calibrations_.items():
            arrays[f"calibration{self._suffix(length)}"] = distances
            if typicalities is not None:
                arrays[f"typicality_calibration{self._suffix(length)}"] = typicalities
        return json_values, arrays

    @classmethod
    def from_state(cls, json_values: dict, arrays: dict[str, np.ndarray]) -> OutOfDistribution:
        """The fitted detector back from :meth:`to_state`'s output."""
        stored = check_state(json_values, arrays, "OutOfDistribution",
                             ("calibration", "mean", "scale", "components", "variances"))
        keys = ("false_flag_rate", "n_components", "folds", "min_volumes", "max_mean_fd", "seed")
        detector = cls(**{key: json_values[key] for key in keys})
        detector.template_ = np.asarray(arrays["template"], np.float64) if "template" in arrays else None
        detector.volumes_ = json_values.get("volumes")  # absent in older folders, as the cropped lengths

        def stored_array(name: str) -> np.ndarray | None:
            return np.asarray(arrays[name], np.float64) if name in arrays else None

        detector.calibrations_ = {
            length: (stored_array(f"calibration{detector._suffix(length)}"),
                     stored_array(f"typicality_calibration{detector._suffix(length)}"))
            for length in [*json_values.get("cropped_lengths", []), detector.volumes_]}
        stored.pop("calibration")
        detector.distance_ = _Subspace(**stored, residual_variance=float(json_values["residual_variance"]))
        return detector


def _features(features: ArrayLike, step: str, n_features: int | None = None) -> np.ndarray:
    """Validated float64 ``[N, F]`` features (``F == n_features`` when given)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or (n_features is not None and features.shape[1] != n_features):
        expected = f"[N, {n_features}]" if n_features else "[N, F]"
        raise BrainlitDataError(f"OutOfDistribution.{step}: features must be {expected} (made as the training "
                                f"cohort's were), got shape {features.shape}.")
    if not np.isfinite(features).all():
        rows = np.flatnonzero(~np.isfinite(features).all(1))[:10].tolist()
        raise BrainlitDataError(f"OutOfDistribution.{step}: features of rows {rows} are not finite.")
    return features


def _held_out(references: list, fold: np.ndarray, data: np.ndarray,
              score: Callable[[Any, np.ndarray], np.ndarray]) -> np.ndarray:
    """Sorted ``score(references[k], rows of fold k)`` over the folds: every subject scored
    against the fit without its fold."""
    held_out = np.empty(len(data))
    for k, reference in enumerate(references):
        held_out[fold == k] = score(reference, data[fold == k])
    return np.sort(held_out)


def _typicality_to(template: np.ndarray, profiles: np.ndarray) -> np.ndarray:
    return typicality(profiles, template)


def _p_value(calibration: np.ndarray, values: np.ndarray, larger_is_rarer: bool) -> np.ndarray:
    """``[N]`` conformal p-values of ``values`` against sorted ``calibration``: the share of
    calibration values at least as extreme (at least as large, or at most as small)."""
    if larger_is_rarer:
        extreme = len(calibration) - np.searchsorted(calibration, values, side="left")
    else:
        extreme = np.searchsorted(calibration, values, side="right")
    return (1 + extreme) / (1 + len(calibration))


def _both(p_distance: np.ndarray, p_typical: np.ndarray | None) -> np.ndarray:
    """The p-value of both checks (Bonferroni): twice the smaller one, or the distance's alone."""
    return p_distance if p_typical is None else np.minimum(1.0, 2 * np.minimum(p_distance, p_typical))


def _per_subject(values: ArrayLike, n: int, name: str) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64).ravel()
    if len(values) != n:
        raise BrainlitDataError(f"OutOfDistribution.assess: {len(values)} {name} values for {n} subjects.")
    return values

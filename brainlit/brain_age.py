"""A loaded model folder applied to people: predictions, intervals, brain-age gap, adaptation, flags."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from brainlit.baselines.fc_ridge import fc_features
from brainlit.baselines.readout import ONE_SITE
from brainlit.errors import BrainlitDataError
from brainlit.model_folder import ModelParts, load_parts, read_model_folder
from brainlit.tasks.predictions import corrected_gap

log = logging.getLogger(__name__)


class BrainAgeModel:
    """Predicts targets (and the brain-age gap) from ROI time series, as a model folder says.

    brainlit's prediction is its read-out's plus the combination's weight times the networks'
    (mean) difference from it (:mod:`brainlit.stack`); a folder of networks alone predicts
    their mean. Where the folder holds them, each target also gets a conformal interval and
    each subject an out-of-distribution score on the read-out's features.

    Args:
        card: The folder's ``brainlit_model.json``.
        parts: Its networks (tasks in eval mode) and fitted closed-form parts.
    """

    def __init__(self, card: dict, parts: ModelParts) -> None:
        self.card, self.parts = card, parts
        self.targets: list[str] = list(card["targets"])
        self.n_rois: int = int(card["data"]["n_rois"])
        self.min_timepoints: int = int(card["data"]["window"])  # what each training window held

    def predict(self, timeseries: np.ndarray | list[np.ndarray], subject_ids: list[str] | None = None,
                age: pd.Series | np.ndarray | list[float] | None = None, sites: Sequence[str] | None = None,
                level: float = 0.9) -> pd.DataFrame:
        """Predict every target for each subject, each from its whole run.

        Args:
            timeseries: ``[N, T, R]`` array, or a list of ``[T, R]`` runs (lengths may differ),
                parcellated with the model's atlas at its TR.
            subject_ids: Names of the rows; default ``0..N-1``.
            age: True ages where known (NaN elsewhere), for the brain-age gap. Never used to predict.
            sites: Each subject's site (a training site or one adapted to, :meth:`adapt`);
                None: the training cohort's one site.
            level: Coverage of the intervals.

        Returns:
            ``subject_id``, ``<target>_pred`` (and ``_lower``, ``_upper``) per target; for an age
            model ``age_true``, ``brain_age_gap`` (``_lower``, ``_upper``), ``brain_age_gap_corrected``
            and ``outside_training_ages``; with an OOD reference ``ood_score``, ``ood_typicality``, ``ood_flag``,
            ``ood_reason``.

        Raises:
            BrainlitDataError: ROI count other than the model's, or a run shorter than its window.
        """
        runs = [np.asarray(run, np.float32) for run in timeseries]
        ids = [str(i) for i in range(len(runs))] if subject_ids is None else list(subject_ids)
        for sid, run in zip(ids, runs, strict=True):
            self._check_run(sid, run)
        frame = pd.DataFrame({"subject_id": ids})
        pred, design = self._predict_runs(runs, sites)
        for j, target in enumerate(self.targets):
            frame[f"{target}_pred"] = pred[:, j]
            if target in self.parts.intervals:
                frame[f"{target}_lower"], frame[f"{target}_upper"] = self.parts.intervals[target].interval(pred[:, j], level)
        if "age" in self.targets:
            known = np.full(len(ids), np.nan) if age is None else np.asarray(age, float)
            frame = self._with_gap(frame, pd.Series(known, index=frame.index))
        if self.parts.ood is not None and design is not None:
            ood = self.parts.ood
            profiles = None if ood.template_ is None else fc_features([run.T.astype(np.float64) for run in runs])
            flags = ood.assess(design, n_volumes=[len(run) for run in runs], profiles=profiles)
            frame = pd.concat([frame, flags[["ood_score", "ood_typicality", "ood_flag", "ood_reason"]]], axis=1)
        return frame

    def adapt(self, timeseries: Sequence[np.ndarray], age: Sequence[float], site: str) -> None:
        """Learn a new ``site``'s scanner effects from its controls (``[T, R]`` runs, known ages);
        the training cohort's stay as they are (:meth:`ConnectivityRidge.adapt_site`)."""
        if self.parts.readout is None:
            raise BrainlitDataError("this model folder holds no read-out to harmonise: it cannot adapt to a site.")
        self.parts.readout.adapt_site([np.asarray(run, np.float64).T for run in timeseries], site, age)

    def _check_run(self, subject_id: str, run: np.ndarray) -> None:
        atlas = self.card["data"]["atlas"]["name"]
        if run.ndim != 2 or run.shape[1] != self.n_rois:
            raise BrainlitDataError(
                f"subject {subject_id}: the model was trained on {self.n_rois} ROIs (atlas {atlas}) but its "
                f"series has shape {run.shape}, i.e. {run.shape[-1]} ROIs: give [T, {self.n_rois}] runs, "
                f"parcellated with {atlas}.")
        if run.shape[0] < self.min_timepoints:
            raise BrainlitDataError(
                f"subject {subject_id}: its run has {run.shape[0]} time points, the model needs at least "
                f"{self.min_timepoints} (its training window, at TR {self.card['data']['t_r']} s).")

    def _predict_runs(self, runs: list[np.ndarray], sites: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray | None]:
        """brainlit's predictions ``[N, n_targets]`` and the read-out's features (None without one)."""
        network = self._network_predictions(runs)
        readout = self.parts.readout
        if readout is None:
            return network, None
        design = readout.design([run.T.astype(np.float64) for run in runs], sites)
        closed_form = readout.from_design(design)
        combination = self.parts.combination
        return (combination.predict(closed_form, network) if combination is not None else closed_form), design

    @torch.no_grad()
    def _network_predictions(self, runs: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """The networks' mean predictions ``[N, n_targets]`` of runs ``[T, R]``, batched by length."""
        pred = np.zeros((len(runs), len(self.targets)), np.float32)
        by_length: dict[int, list[int]] = {}
        for i, run in enumerate(runs):
            by_length.setdefault(run.shape[0], []).append(i)
        for rows in by_length.values():
            for start in range(0, len(rows), batch_size):
                batch = rows[start : start + batch_size]
                x = torch.from_numpy(np.stack([runs[i].T for i in batch]))  # [B, R, T]
                each = [task.to_original_units(task.predict_runs(x)["pred"]) for task in self.parts.networks]
                pred[batch] = torch.stack(each).mean(0).numpy()
        return pred

    def _with_gap(self, frame: pd.DataFrame, age: pd.Series) -> pd.DataFrame:
        frame = frame.assign(age_true=age.to_numpy(), brain_age_gap=frame["age_pred"] - age.to_numpy())
        if "age_lower" in frame:
            frame["brain_age_gap_lower"] = frame["age_lower"] - age.to_numpy()
            frame["brain_age_gap_upper"] = frame["age_upper"] - age.to_numpy()
        correction = self.card.get("bias_correction")
        if correction:
            frame["brain_age_gap_corrected"] = corrected_gap(frame["age_true"], frame["age_pred"],
                                                             correction["slope"], correction["intercept"])
        cohort = self.card["training_cohort"]
        if cohort.get("age_min") is not None:
            outside = (age < cohort["age_min"]) | (age > cohort["age_max"])
            frame["outside_training_ages"] = outside.where(age.notna()).astype("boolean").to_numpy()
        return frame

    @property
    def training_sites(self) -> list[str]:
        """The sites the read-out's harmonisation knows (training sites, then adapted ones)."""
        readout = self.parts.readout
        if readout is None or readout.harmoniser_ is None:
            return [ONE_SITE]
        return [str(s) for s in readout.harmoniser_.sites_]


def load_model(path: str | Path) -> BrainAgeModel:
    """Load a model folder (``model.safetensors`` + ``brainlit_model.json``); no pickle runs."""
    card, tensors = read_model_folder(path)
    return BrainAgeModel(card, load_parts(card, tensors))

"""Brain age for new people: ``brainlit.load_model(DIR).predict(...)`` and ``python -m brainlit apply``.

A model folder (:mod:`brainlit.model_folder`) is applied to a new cohort as it is: the new
cohort is parcellated with the model's atlas and cleaning options at the model's TR, and the
brain-age bias correction is the one fit on the training cohort, never refit on the new one.
Runs at another TR (beyond the parcellator's 1 % tolerance) are rejected, not resampled:
resampling changes the spectrum the model learnt from.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from jsonargparse import ArgumentParser

from brainlit.baselines.readout import ConnectivityRidge
from brainlit.data.cache import CacheReport
from brainlit.data.card import file_sha256
from brainlit.data.datamodule import FMRIDataModule
from brainlit.errors import BrainlitConfigError, BrainlitDataError
from brainlit.model_folder import load_parts, read_model_folder
from brainlit.stack import NetworkShare
from brainlit.tasks.predictions import corrected_gap

log = logging.getLogger(__name__)

# FMRIDataModule options that apply sets itself or that only concern training
NOT_FOR_APPLY = {"root", "atlas", "targets", "n_folds", "fold", "val_fraction", "seed", "crop_len",
                 "batch_size", "num_workers", "predict_split", "crops_per_subject", "split_file"}


class BrainAgeModel:
    """A loaded model folder: predicts targets (and the brain-age gap) from ROI time series.

    brainlit's prediction is the read-out's plus the combination's weight times the networks'
    (mean) difference from it (:mod:`brainlit.stack`); a folder of networks alone predicts
    their mean.

    Args:
        card: The folder's ``brainlit_model.json``.
        networks: :class:`~brainlit.tasks.RegressionTask` networks in eval mode (averaged).
        readout: The closed-form read-out, or None.
        combination: How the read-out and the networks combine, or None.
    """

    def __init__(self, card: dict, networks: list[torch.nn.Module], readout: ConnectivityRidge | None = None,
                 combination: NetworkShare | None = None) -> None:
        self.card, self.networks, self.readout, self.combination = card, networks, readout, combination
        self.targets: list[str] = list(card["targets"])
        self.n_rois: int = int(card["data"]["n_rois"])
        self.min_timepoints: int = int(card["data"]["window"])  # what each training window held

    def predict(self, timeseries: np.ndarray | list[np.ndarray], subject_ids: list[str] | None = None,
                age: pd.Series | np.ndarray | list[float] | None = None) -> pd.DataFrame:
        """Predict every target for each subject, each from its whole run.

        Args:
            timeseries: ``[N, T, R]`` array, or a list of ``[T, R]`` runs (lengths may differ),
                parcellated with the model's atlas at its TR.
            subject_ids: Names of the rows; default ``0..N-1``.
            age: True ages where known (NaN elsewhere), for the brain-age gap.

        Returns:
            ``subject_id``, ``<target>_pred`` per target and, for an age
            model, ``age_true``, ``brain_age_gap``, ``brain_age_gap_corrected`` (the stored
            training-cohort correction) and ``outside_training_ages`` (known age outside the
            training cohort's range).

        Raises:
            BrainlitDataError: ROI count other than the model's, or a run shorter than its window.
        """
        runs = list(timeseries)
        ids = [str(i) for i in range(len(runs))] if subject_ids is None else list(subject_ids)
        for sid, run in zip(ids, runs, strict=True):
            self._check_run(sid, np.asarray(run))
        pred = self._predict_runs([np.asarray(run, np.float32) for run in runs])
        if self.readout is not None:
            readout = self.readout.predict([np.asarray(run, np.float64).T for run in runs])
            pred = self.combination.predict(readout, pred) if self.combination is not None else readout
        frame = pd.DataFrame({"subject_id": ids})
        for j, target in enumerate(self.targets):
            frame[f"{target}_pred"] = pred[:, j]
        if "age" in self.targets:
            known = np.full(len(ids), np.nan) if age is None else np.asarray(age, float)
            frame = self._with_gap(frame, pd.Series(known, index=frame.index))
        return frame

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

    @torch.no_grad()
    def _predict_runs(self, runs: list[np.ndarray], batch_size: int = 32) -> np.ndarray:
        """The networks' mean predictions ``[N, n_targets]`` of runs ``[T, R]``, batched by length."""
        pred = np.zeros((len(runs), len(self.targets)), np.float32)
        by_length: dict[int, list[int]] = {}
        for i, run in enumerate(runs):
            by_length.setdefault(run.shape[0], []).append(i)
        for rows in by_length.values():
            for start in range(0, len(rows), batch_size):
                batch = rows[start : start + batch_size]
                x = torch.from_numpy(np.stack([runs[i].T for i in batch]))  # [B, R, T]
                each = [task.to_original_units(task.predict_runs(x)["pred"]) for task in self.networks]
                pred[batch] = torch.stack(each).mean(0).numpy()
        return pred

    def _with_gap(self, frame: pd.DataFrame, age: pd.Series) -> pd.DataFrame:
        frame = frame.assign(age_true=age.to_numpy(), brain_age_gap=frame["age_pred"] - age.to_numpy())
        correction = self.card.get("bias_correction")
        if correction:
            frame["brain_age_gap_corrected"] = corrected_gap(frame["age_true"], frame["age_pred"],
                                                             correction["slope"], correction["intercept"])
        cohort = self.card["training_cohort"]
        if cohort.get("age_min") is not None:
            outside = (age < cohort["age_min"]) | (age > cohort["age_max"])
            frame["outside_training_ages"] = outside.where(age.notna()).astype("boolean").to_numpy()
        return frame


def load_model(path: str | Path) -> BrainAgeModel:
    """Load a model folder (``model.safetensors`` + ``brainlit_model.json``); no pickle runs."""
    card, tensors = read_model_folder(path)
    return BrainAgeModel(card, *load_parts(card, tensors))


def _parser(card: dict | None = None) -> ArgumentParser:
    parser = ArgumentParser(prog="python -m brainlit apply", description=apply_command.__doc__)
    parser.add_argument("--model", type=str, required=True, help="model folder (brainlit_model.json)")
    parser.add_argument("--root", type=str, required=True, help="the new cohort (BIDS, fMRIPrep, Cam-CAN, arrays)")
    parser.add_argument("--out", type=str, required=True, help="predictions CSV to write")
    parser.add_argument("--atlas", type=str | None, default=None,
                        help="the model's atlas file (checked against its checksum); default: its bundled name")
    parser.add_class_arguments(FMRIDataModule, "data", skip=NOT_FOR_APPLY)
    return parser


def _model_defaults(card: dict, out: Path) -> dict:
    """``--data.*`` defaults that parcellate the new cohort as the training cohort was."""
    data = card["data"]
    defaults = {f"data.{k}": v for k, v in data["preprocessing"].items() if k != "atlas"}
    defaults["data.t_r"] = data["t_r"]
    defaults["data.min_timepoints"] = max(data["preprocessing"].get("min_timepoints") or 0, data["window"])
    defaults["data.cache_path"] = str(out.with_suffix(".cache.h5"))
    return defaults


def _checked_atlas(card: dict, atlas: str | None) -> str:
    """The atlas to parcellate with; a file must have the model's checksum."""
    expected = card["data"]["atlas"]
    if atlas is None:
        if expected["sha256"]:
            raise BrainlitConfigError(f"the model was trained with the atlas file {expected['name']}: pass it "
                                      "with --atlas.")
        return expected["name"]
    if expected["sha256"] is None or not Path(atlas).is_file():
        if atlas != expected["name"]:
            raise BrainlitConfigError(f"--atlas {atlas} is not the model's atlas {expected['name']}.")
        return atlas
    found = file_sha256(atlas)
    if found != expected["sha256"]:
        raise BrainlitConfigError(
            f"--atlas {atlas} (sha256 {found[:12]}) differs from the atlas the model was trained with "
            f"({expected['name']}, sha256 {expected['sha256'][:12]}): pass that file.")
    return atlas


def apply_command(argv: list[str]) -> None:
    """``python -m brainlit apply --model DIR --root NEW_ROOT --out FILE.csv [--data.* ...]``.

    Parcellates the new cohort with the model's atlas, TR and cleaning (the ``--data.*``
    defaults come from the model; a cache is kept beside FILE.csv) and predicts every subject
    with usable imaging, labelled or not: ``<target>_pred``, ``<target>_true`` where known and,
    for age, the brain-age gap, its correction fit on the training cohort, and a flag for ages
    outside the training range.
    """
    parser = _parser()
    folder = _option(argv, "--model")
    if folder is not None:  # the model's settings become the --data.* defaults
        card = read_model_folder(folder)[0]
        parser.set_defaults(_model_defaults(card, Path(_option(argv, "--out") or "predictions.csv")))
    args = parser.parse_args(argv)
    model = load_model(args.model)
    options = args.data.as_dict()
    if model.card["data"]["t_r"] and options["t_r"] and abs(options["t_r"] / model.card["data"]["t_r"] - 1) > 0.01:
        raise BrainlitConfigError(f"--data.t_r {options['t_r']} s differs from the model's TR "
                                  f"{model.card['data']['t_r']} s: runs at another TR are not resampled.")
    datamodule = FMRIDataModule(root=args.root, atlas=_checked_atlas(model.card, args.atlas), targets=[], **options)
    report = datamodule.prepare_data()
    reader = datamodule.reader
    reader.n_rois  # noqa: B018 - raises, naming the first reason, when every run was rejected
    ids = reader.subject_ids
    phenotypes = reader.phenotypes.reindex(ids)
    age = phenotypes["age"] if "age" in phenotypes else None
    frame = model.predict([reader.timeseries(s).T for s in ids], ids, age)
    for target in model.targets:
        if target != "age" and target in phenotypes:
            frame.insert(frame.columns.get_loc(f"{target}_pred") + 1, f"{target}_true", phenotypes[target].to_numpy())
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out, index=False)
    print(_summary(frame, report, args.out))


def _option(argv: list[str], name: str) -> str | None:
    """The value of ``name`` in ``argv`` (``--name VALUE`` or ``--name=VALUE``), if given."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _summary(frame: pd.DataFrame, report: CacheReport, out: str) -> str:
    lines = [f"Predicted {len(frame)} subjects -> {out}"]
    if "age_true" in frame and frame["age_true"].notna().any():
        known = frame["age_true"].notna()
        mae = (frame.loc[known, "age_pred"] - frame.loc[known, "age_true"]).abs().mean()
        lines.append(f"  {known.sum()} with a known age: age MAE {mae:.2f} years")
    if "outside_training_ages" in frame and frame["outside_training_ages"].fillna(False).any():
        lines.append(f"  {int(frame['outside_training_ages'].fillna(False).sum())} outside the training ages")
    lines += [f"  skipped {reason}" for _, _, reason in report.skipped]
    return "\n".join(lines)

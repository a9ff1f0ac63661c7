"""PredictionWriter: ``predictions.csv`` with brain-age gap and its bias correction."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
from lightning.pytorch.callbacks import BasePredictionWriter

log = logging.getLogger(__name__)


def bias_corrected_gap(frame: pd.DataFrame, fit_rows: pd.Series) -> pd.DataFrame:
    """Add the brain-age gap and its linear bias correction.

    Regression to the mean makes the raw gap (predicted - true age) correlate negatively
    with age. Following Beheshti et al. (2019) we fit ``gap = a * age + b`` by least squares
    on the training subjects only and report ``gap_corrected = gap - (a * age + b)``.

    Args:
        frame: Columns ``age_true`` and ``age_pred``.
        fit_rows: Boolean mask of the rows (training subjects) the correction is fit on.
    """
    out = frame.copy()
    out["brain_age_gap"] = out["age_pred"] - out["age_true"]
    fit = out[fit_rows]
    correction = fit_gap_correction(fit["age_true"], fit["age_pred"])
    if correction is None:
        log.warning("Fewer than 2 training subjects with age: brain-age gap left uncorrected.")
        out["brain_age_gap_corrected"] = out["brain_age_gap"]
        return out
    out["brain_age_gap_corrected"] = corrected_gap(out["age_true"], out["age_pred"], *correction)
    return out


def fit_gap_correction(age_true: pd.Series, age_pred: pd.Series) -> tuple[float, float] | None:
    """Least-squares ``gap = slope * age + intercept`` over the rows with both values, or None
    with fewer than two such rows."""
    known = age_true.notna() & age_pred.notna()
    if known.sum() < 2:
        return None
    gap = age_pred[known] - age_true[known]
    slope, intercept = np.polyfit(age_true[known].astype(float), gap.astype(float), deg=1)
    return float(slope), float(intercept)


def corrected_gap(age_true: pd.Series, age_pred: pd.Series, slope: float, intercept: float) -> pd.Series:
    """The brain-age gap with its age trend (from :func:`fit_gap_correction`) removed."""
    return (age_pred - age_true) - (slope * age_true + intercept)


class PredictionWriter(BasePredictionWriter):
    """Write ``predictions.csv``: subject_id, split and, per target, true and predicted values.

    Every predicted subject gets a row; a target value the subject lacks leaves its ``*_true``
    cell empty, and subjects left out of training for a missing target have split ``unlabelled``.

    For ``age`` it adds ``brain_age_gap`` and ``brain_age_gap_corrected`` (see
    :func:`bias_corrected_gap`). Under DDP each rank writes its part and rank 0 joins them.

    Args:
        output_dir: Folder for the CSV; null means the trainer's log folder.
    """

    def __init__(self, output_dir: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = output_dir

    def _folder(self, trainer: L.Trainer) -> Path:
        folder = Path(self.output_dir or trainer.log_dir or ".")
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:  # noqa: ANN001
        """Collect this rank's predictions; rank 0 joins all parts and writes the CSV."""
        names = pl_module.hparams.target_names
        folder = self._folder(trainer)
        part = folder / f"predictions.rank{trainer.global_rank}.csv"
        _to_frame(predictions, names).to_csv(part, index=False)
        trainer.strategy.barrier()
        if not trainer.is_global_zero:
            return
        parts = sorted(folder.glob("predictions.rank*.csv"))
        frame = pd.concat([pd.read_csv(p) for p in parts]).drop_duplicates("subject_id")
        for p in parts:
            p.unlink()
        frame = _add_splits(frame, trainer.datamodule)
        if "age" in names and "age_true" in frame:
            frame = bias_corrected_gap(frame, frame["split"] == "train")
        path = folder / "predictions.csv"
        frame.to_csv(path, index=False)
        log.info("Wrote %d predictions to %s", len(frame), path)


def _to_frame(predictions: list[dict], names: list[str]) -> pd.DataFrame:
    rows = []
    for batch in predictions:
        for i, subject_id in enumerate(batch["subject_id"]):
            row = {"subject_id": subject_id}
            for j, name in enumerate(names):
                if batch["true"] is not None:
                    row[f"{name}_true"] = float(batch["true"][i, j])
                row[f"{name}_pred"] = float(batch["pred"][i, j])
            rows.append(row)
    return pd.DataFrame(rows)


def _add_splits(frame: pd.DataFrame, datamodule: L.LightningDataModule | None) -> pd.DataFrame:
    if datamodule is None or not hasattr(datamodule, "split_table"):
        return frame.assign(split="unknown")
    splits = datamodule.split_table()[["subject_id", "split"]]
    return frame.merge(splits, on="subject_id", how="left").fillna({"split": "unlabelled"})

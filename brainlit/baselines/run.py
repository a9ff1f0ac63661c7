"""Run the baselines on given cross-validation folds and collect their test predictions."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from brainlit.baselines.coskew_ridge import CoskewRidge
from brainlit.baselines.dfc_ridge import DynamicFCRidge
from brainlit.baselines.fc_ridge import FCKernelRidge
from brainlit.baselines.mean import MeanPredictor
from brainlit.baselines.oracle import LatentOracle, oracle_inputs
from brainlit.baselines.readout import ConnectivityRidge
from brainlit.baselines.tangent_ridge import TangentRidge
from brainlit.errors import BrainlitDataError

log = logging.getLogger(__name__)

BASELINES: dict[str, Callable[[], FCKernelRidge | MeanPredictor | TangentRidge | DynamicFCRidge | CoskewRidge]] = {
    "tangent_ridge": TangentRidge,
    "kernel_ridge_fc": FCKernelRidge,
    "coskew_ridge": CoskewRidge,
    "dfc_ridge": DynamicFCRidge,
    "mean": MeanPredictor,
}
READOUT = "brainlit read-out"  # ConnectivityRidge: the first of the two models brainlit combines
PREDICTION_COLUMNS = ["model", "target", "fold", "subject_id", "y_true", "y_pred"]


def _targets(y: pd.Series | pd.DataFrame | Mapping) -> dict[str, pd.Series]:
    """``{target name: Series indexed by subject_id}`` from a Series, DataFrame or dict of them."""
    if isinstance(y, pd.Series):
        return {str(y.name or "target"): y.astype(float)}
    if isinstance(y, pd.DataFrame):
        return {str(c): y[c].astype(float) for c in y.columns}
    return {str(name): pd.Series(values, dtype=float) for name, values in y.items()}


def _usable(ids: Sequence[str], values: pd.Series | pd.DataFrame, series: Mapping, fold: int) -> list[str]:
    """The subjects of ``ids`` that have every target value; every one must have a time series."""
    for subject_id in ids:
        if subject_id not in series:
            raise BrainlitDataError(
                f"Subject {subject_id} of fold {fold} has no ROI time series; rebuild the cache "
                "or pass the folds of the same cohort."
            )
    known = values.notna() if values.ndim == 1 else values.notna().all(axis=1)
    return [s for s in ids if s in values.index and known[s]]


def predict_baselines(
    series: Mapping[str, np.ndarray],
    y: pd.Series | pd.DataFrame | Mapping,
    folds: Mapping[int, tuple[Sequence[str], Sequence[str]]],
    models: Sequence[str] = tuple(BASELINES),
) -> pd.DataFrame:
    """Fit each baseline on the training subjects of each fold; predict its test subjects.

    Only the training subjects' series and targets reach ``fit`` (the tangent reference and
    every penalty included); test subjects are seen by ``predict`` alone.

    Args:
        series: ``{subject_id: [R, T] ROI time series}``.
        y: Targets indexed by subject_id: a Series (its name is the target), a DataFrame (one
            column per target) or ``{target: Series or {subject_id: value}}``.
        folds: ``{fold: (train_ids, test_ids)}``, e.g. the datamodule's splits. Subjects whose
            target is missing (NaN or absent) are left out of that target's fit and test.
        models: Names from ``BASELINES``.

    Returns:
        One row per (model, target, fold, test subject) with columns ``PREDICTION_COLUMNS``.
    """
    frames = []
    for target, values in _targets(y).items():
        for fold, (train_ids, test_ids) in sorted(folds.items()):
            train = _usable(train_ids, values, series, fold)
            test = _usable(test_ids, values, series, fold)
            if set(train) & set(test):
                raise ValueError(
                    f"fold {fold}: subjects in both train and test: {sorted(set(train) & set(test))[:5]}"
                )
            for name in models:
                y_pred = _fit_predict(name, series, values, train, test)
                frames.append(_rows(name, target, fold, test, values[test], y_pred))
                mae = float(np.mean(np.abs(y_pred - values[test].to_numpy())))
                log.info("%s %s fold %d: MAE %.3f on %d subjects", name, target, fold, mae, len(test))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PREDICTION_COLUMNS)


def _fit_predict(name: str, series: Mapping, values: pd.Series, train: list[str], test: list[str]) -> np.ndarray:
    """Fit one baseline on the ``train`` subjects alone and predict the ``test`` subjects."""
    train_series, test_series = [series[s] for s in train], [series[s] for s in test]
    return BASELINES[name]().fit(train_series, values[train].to_numpy()).predict(test_series)


def readout_folds(
    series: Mapping[str, np.ndarray],
    y: pd.DataFrame,
    folds: Mapping[int, tuple[Sequence[str], Sequence[str]]],
    readout: ConnectivityRidge,
    latents: pd.DataFrame | None = None,
    covariates: pd.DataFrame | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """brainlit's read-out fit on each fold's training subjects (every target at once, so that
    ``anchor`` can chain them), and the oracle rows stacked on it.

    Args:
        series: ``{subject_id: [R, T]}``.
        y: One column per target, indexed by subject_id; subjects missing a target are left out.
        folds: ``{fold: (train_ids, test_ids)}``.
        readout: An unfitted :class:`ConnectivityRidge` (cloned per fold).
        latents: True latents of a simulated cohort (see :func:`oracle_inputs`), or None.
        covariates: ``site`` and ``age`` of each subject where known: the read-out's ComBat
            harmonisation is fit on the training subjects' (never a test subject's age).

    Returns:
        The test predictions (``PREDICTION_COLUMNS``; model ``READOUT`` and the oracles), and the
        read-out's leave-one-out predictions of each fold's training subjects (same columns).
    """
    oracles = oracle_inputs(latents) if latents is not None else {}
    y = y.astype(float)
    test_frames, oof_frames = [], []
    for fold, (train_ids, test_ids) in sorted(folds.items()):
        train, test = _usable(train_ids, y, series, fold), _usable(test_ids, y, series, fold)
        site, age = _covariates(covariates, train + test)
        fitted = copy.deepcopy(readout).fit([series[s] for s in train], y.loc[train], _part(site, train), _part(age, train))
        predicted = pd.DataFrame(fitted.predict([series[s] for s in test], _part(site, test)), index=test, columns=y.columns)
        oof = pd.DataFrame(fitted.oof_, index=train, columns=y.columns)
        for target in y.columns:
            rows = {READOUT: predicted[target].to_numpy()}
            for name, columns in oracles.items():
                oracle = LatentOracle().fit(oof[target].to_numpy(), columns.loc[train].to_numpy(), y.loc[train, target].to_numpy())
                rows[name] = oracle.predict(predicted[target].to_numpy(), columns.loc[test].to_numpy())
            test_frames += [_rows(name, target, fold, test, y.loc[test, target], pred) for name, pred in rows.items()]
            oof_frames.append(_rows(READOUT, target, fold, train, y.loc[train, target], oof[target].to_numpy()))
        log.info("%s fold %d: fit on %d subjects, MAE %s on %d", READOUT, fold, len(train),
                 ", ".join(f"{t} {np.abs(predicted[t] - y.loc[test, t]).mean():.3f}" for t in y.columns), len(test))
    return pd.concat(test_frames, ignore_index=True), pd.concat(oof_frames, ignore_index=True)


def _covariates(covariates: pd.DataFrame | None, subjects: list[str]) -> tuple[pd.Series | None, pd.Series | None]:
    """The ``site`` and ``age`` columns of ``covariates`` for ``subjects`` (None where absent)."""
    if covariates is None:
        return None, None
    table = covariates.reindex(subjects)
    site = table["site"].fillna("unknown").astype(str) if "site" in table else None
    age = table["age"] if "age" in table and table["age"].notna().all() else None
    return site, age


def _part(values: pd.Series | None, subjects: list[str]) -> list | None:
    return None if values is None else values.loc[subjects].tolist()


def _rows(model: str, target: str, fold: int, subjects: list[str], y_true: pd.Series, y_pred: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"model": model, "target": target, "fold": fold, "subject_id": subjects,
                         "y_true": y_true.to_numpy(), "y_pred": y_pred})

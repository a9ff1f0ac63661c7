"""Run the baselines on given cross-validation folds and collect their test predictions."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from brainlit.baselines.dfc_ridge import DynamicFCRidge
from brainlit.baselines.fc_ridge import FCKernelRidge
from brainlit.baselines.mean import MeanPredictor
from brainlit.baselines.oracle import LatentOracle, oracle_inputs
from brainlit.baselines.tangent_ridge import TangentRidge
from brainlit.errors import BrainlitDataError

log = logging.getLogger(__name__)

BASELINES: dict[str, Callable[[], FCKernelRidge | MeanPredictor | TangentRidge | DynamicFCRidge]] = {
    "tangent_ridge": TangentRidge,
    "kernel_ridge_fc": FCKernelRidge,
    "dfc_ridge": DynamicFCRidge,
    "mean": MeanPredictor,
}
PREDICTION_COLUMNS = ["model", "target", "fold", "subject_id", "y_true", "y_pred"]


def _targets(y: pd.Series | pd.DataFrame | Mapping) -> dict[str, pd.Series]:
    """``{target name: Series indexed by subject_id}`` from a Series, DataFrame or dict of them."""
    if isinstance(y, pd.Series):
        return {str(y.name or "target"): y.astype(float)}
    if isinstance(y, pd.DataFrame):
        return {str(c): y[c].astype(float) for c in y.columns}
    return {str(name): pd.Series(values, dtype=float) for name, values in y.items()}


def _usable(ids: Sequence[str], values: pd.Series, series: Mapping, fold: int) -> list[str]:
    """The subjects of ``ids`` that have a target value; every one must have a time series."""
    for subject_id in ids:
        if subject_id not in series:
            raise BrainlitDataError(
                f"Subject {subject_id} of fold {fold} has no ROI time series; rebuild the cache "
                "or pass the folds of the same cohort."
            )
    return [s for s in ids if s in values.index and np.isfinite(values[s])]


def predict_baselines(
    series: Mapping[str, np.ndarray],
    y: pd.Series | pd.DataFrame | Mapping,
    folds: Mapping[int, tuple[Sequence[str], Sequence[str]]],
    models: Sequence[str] = tuple(BASELINES),
    latents: pd.DataFrame | None = None,
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
        latents: True latent parameters of a simulated cohort, indexed by subject_id (one
            column each); when given, the oracle rows of
            :func:`brainlit.baselines.oracle.oracle_inputs` (:class:`LatentOracle`) are added.

    Returns:
        One row per (model, target, fold, test subject) with columns ``PREDICTION_COLUMNS``.
    """
    frames = []
    oracles = oracle_inputs(latents) if latents is not None else {}
    for target, values in _targets(y).items():
        for fold, (train_ids, test_ids) in sorted(folds.items()):
            train = _usable(train_ids, values, series, fold)
            test = _usable(test_ids, values, series, fold)
            if set(train) & set(test):
                raise ValueError(
                    f"fold {fold}: subjects in both train and test: {sorted(set(train) & set(test))[:5]}"
                )
            fits = {name: _fit_predict(name, series, values, train, test) for name in models}
            fits |= _oracle_predictions(series, values, train, test, oracles)
            for name, y_pred in fits.items():
                frames.append(pd.DataFrame({
                    "model": name, "target": target, "fold": fold, "subject_id": test,
                    "y_true": values[test].to_numpy(), "y_pred": y_pred,
                }))  # fmt: skip
                mae = float(np.mean(np.abs(y_pred - values[test].to_numpy())))
                log.info("%s %s fold %d: MAE %.3f on %d subjects", name, target, fold, mae, len(test))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=PREDICTION_COLUMNS)


def _fit_predict(name: str, series: Mapping, values: pd.Series, train: list[str], test: list[str]) -> np.ndarray:
    """Fit one baseline on the ``train`` subjects alone and predict the ``test`` subjects."""
    train_series, test_series = [series[s] for s in train], [series[s] for s in test]
    return BASELINES[name]().fit(train_series, values[train].to_numpy()).predict(test_series)


def _oracle_predictions(series: Mapping, values: pd.Series, train: list[str], test: list[str],
                        oracles: Mapping[str, pd.DataFrame]) -> dict[str, np.ndarray]:
    """Each oracle row's test predictions (``{name: its latent columns}``), fit on the ``train``
    subjects alone; the static read-out they share is fit once."""
    if not oracles:
        return {}
    (first, latents), *others = oracles.items()
    fitted = {first: LatentOracle().fit([series[s] for s in train], values[train].to_numpy(), latents.loc[train].to_numpy())}
    fitted |= {name: fitted[first].restacked(columns.loc[train].to_numpy()) for name, columns in others}
    test_series = [series[s] for s in test]
    return {name: oracle.predict(test_series, oracles[name].loc[test].to_numpy()) for name, oracle in fitted.items()}

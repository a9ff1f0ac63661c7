"""What a cohort's time series hold beyond functional connectivity: closed-form accuracy ceilings.

FC (zero-lag correlations between ROIs) is what the classical baselines use. Each ROI's own
temporal structure is what they discard and what a time-series model could add. This measures
both in closed form, on repeated stratified k-fold of a brainlit cache (no learning beyond
ridge, so it takes a minute): ridge on FC, ridge on each ROI's autocorrelation at lags
1..``max_lag`` ("dynamics"), ridge on both, ridge on tangent-space FC (reference fit on each
fold's training subjects) alone and with the dynamics, the average of the two ridge fits with
the dynamics (brainlit's read-out with ``connectivity: both, combine: mean``), the two
stacked by their leave-one-out predictions (the read-out's own fit with ``combine: stack``,
:func:`brainlit.baselines.ridge.fit_ridge_combination`), and kernel ridge
(the baseline's) on FC and on FC + dynamics.
The paired difference of ridge on FC + dynamics against ridge on FC says how much a model that
reads the dynamics could gain; a learned model that does not reach it has not learned them.

    python benchmarks/beyond_fc.py runs/demo/cache.h5 --repeats 5 --out benchmarks/results/beyond_fc
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from measure import markdown_table
from nilearn.connectome import ConnectivityMeasure
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from brainlit.baselines.fc_ridge import FCKernelRidge, fc_features
from brainlit.baselines.features import feature_blocks, lag_features
from brainlit.baselines.ridge import fit_ridge_combination
from brainlit.data.cache import CacheReader
from brainlit.metrics import corrected_paired_interval

ALPHAS = np.logspace(-2, 5, 30)
AVERAGE = "fc + dynamics and tangent + dynamics, averaged"  # the read-out with combine: mean
STACKED = "fc + dynamics and tangent + dynamics, stacked"  # ... with combine: stack


def dynamics_features(series: np.ndarray, max_lag: int = 3) -> np.ndarray:
    """Autocorrelation of each ROI at lags 1..max_lag, as the model's read-out computes it:
    ``[N, R, T]`` -> ``[N, max_lag * R]``."""
    return lag_features(series, max_lag)


def _ridge(train: np.ndarray, y: np.ndarray, test: np.ndarray) -> np.ndarray:
    model = make_pipeline(StandardScaler(), RidgeCV(alphas=ALPHAS)).fit(train, y)
    return model.predict(test)


def _stacked(features: np.ndarray, n_edges: int, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> np.ndarray:
    """The read-out's stacked fit on ``[fc edges, tangent edges, dynamics]`` columns."""
    blocks = feature_blocks(n_edges, 2, features.shape[1])
    fit = fit_ridge_combination(torch.from_numpy(features[train]), torch.from_numpy(y[train])[:, None], blocks, "stack")
    return features[test] @ fit.weight[0].double().numpy() + float(fit.bias[0])


def tangent_features(series: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Tangent-space FC ``[N, R (R - 1) / 2]`` of every subject at the geometric mean of the
    ``train`` subjects' covariances (nilearn; the test subjects never shape the reference)."""
    measure = ConnectivityMeasure(kind="tangent", vectorize=True, discard_diagonal=True)
    measure.fit([series[i].T for i in train])
    return measure.transform([s.T for s in series])


def evaluate(series: np.ndarray, targets: dict[str, np.ndarray], folds: int, repeats: int,
             max_lag: int) -> list[dict]:
    """One row per (target, repeat, fold, model) with the test MAE."""
    fixed = {"fc": fc_features(series), "dynamics": dynamics_features(series, max_lag)}
    fixed["fc + dynamics"] = np.hstack([fixed["fc"], fixed["dynamics"]])
    rows = []
    for target, y in targets.items():
        usable = np.isfinite(y)
        strata = np.digitize(y[usable], np.quantile(y[usable], [0.2, 0.4, 0.6, 0.8]))
        index = np.flatnonzero(usable)
        for repeat in range(repeats):
            splitter = StratifiedKFold(folds, shuffle=True, random_state=repeat)
            for fold, (train, test) in enumerate(splitter.split(index, strata)):
                train, test = index[train], index[test]
                tangent = tangent_features(series, train)
                features = {**fixed, "tangent": tangent, "tangent + dynamics": np.hstack([tangent, fixed["dynamics"]])}
                preds = {name: _ridge(x[train], y[train], x[test]) for name, x in features.items()}
                preds[AVERAGE] = (preds["fc + dynamics"] + preds["tangent + dynamics"]) / 2
                preds[STACKED] = _stacked(np.hstack([fixed["fc"], tangent, fixed["dynamics"]]), tangent.shape[1],
                                          y, train, test)
                for name, pred in preds.items():
                    rows.append(_row(target, repeat, fold, f"ridge on {name}", pred, y[test]))
                for name in ("fc", "fc + dynamics"):
                    x = features[name]
                    pred = FCKernelRidge().fit_features(x[train], y[train]).predict_features(x[test])
                    rows.append(_row(target, repeat, fold, f"kernel ridge on {name}", pred, y[test]))
    return rows


def _row(target: str, repeat: int, fold: int, model: str, pred: np.ndarray, true: np.ndarray) -> dict:
    return {"target": target, "repeat": repeat, "fold": fold, "model": model,
            "mae": float(np.mean(np.abs(pred - true)))}


def summarize(rows: list[dict], folds: int) -> list[dict]:
    """Per (target, model): mean MAE over folds, and the paired difference to ridge on FC."""
    out = []
    for target in dict.fromkeys(r["target"] for r in rows):
        by_model: dict[str, list[float]] = {}
        for r in (r for r in rows if r["target"] == target):
            by_model.setdefault(r["model"], []).append(r["mae"])
        reference = np.array(by_model["ridge on fc"])
        for model, maes in by_model.items():
            mean, low, high = corrected_paired_interval(np.array(maes) - reference, 1 / (folds - 1))
            out.append({"target": target, "model": model, "folds": len(maes), "mae": float(np.mean(maes)),
                        "mae_sd": float(np.std(maes, ddof=1)),
                        "vs_ridge_fc": "-" if model == "ridge on fc" else f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]"})
    return out


COLUMNS = [("target", "target"), ("model", "model"), ("folds", "folds"), ("mae", "MAE"),
           ("mae_sd", "sd"), ("vs_ridge_fc", "minus ridge on FC [95% CI, corrected]")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cache", type=Path, help="a brainlit cache.h5 (e.g. runs/demo/cache.h5)")
    parser.add_argument("--targets", nargs="+", default=["age", "fluid_intelligence"])
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--max-lag", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/beyond_fc"))
    args = parser.parse_args()
    reader = CacheReader(args.cache)
    subjects = reader.subject_ids
    lengths = {reader.n_timepoints(s) for s in subjects}
    length = min(lengths)  # autocorrelation and FC over the same number of volumes for everyone
    series = np.stack([reader.timeseries(s)[:, :length] for s in subjects]).astype(np.float64)
    phenotypes = reader.phenotypes.loc[subjects]
    targets = {t: phenotypes[t].to_numpy(float) for t in args.targets if t in phenotypes}
    rows = evaluate(series, targets, args.folds, args.repeats, args.max_lag)
    summary = summarize(rows, args.folds)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "beyond_fc.json").write_text(json.dumps({"cache": str(args.cache), "rows": rows,
                                                         "summary": summary}, indent=1))
    table = markdown_table([{**r, "mae": f"{r['mae']:.2f}", "mae_sd": f"{r['mae_sd']:.2f}"} for r in summary],
                           COLUMNS)
    header = (f"{len(subjects)} subjects, {series.shape[1]} ROIs, {length} volumes; "
              f"{args.repeats} x {args.folds}-fold, stratified by target quintile")
    (args.out / "beyond_fc.md").write_text(f"# Beyond FC: {args.cache}\n\n{header}\n\n{table}\n")
    print(header)
    print(table)


if __name__ == "__main__":
    main()

"""How much of the oracle gap a model that knew where to look could reach, at the experiment's size.

The oracle row of a dynamic cohort (``brainlit.baselines.oracle``) knows each subject's true
switching speed. No model of a finite scan gets all of it. This benchmark bounds what is
reachable from the BOLD: on one simulated cohort (ROI series, no images), on the same
cross-validation folds, it compares

- brainlit's closed-form read-out: ridges on correlation FC and on tangent FC, each with every
  ROI's autocorrelation at lags 1-3, stacked (``readout_combine: stack``);
- the read-out plus the mechanism's own probes
  (:func:`brainlit.data.simulate.probe.switching_features`: the autocorrelation of the windowed
  between-minus-within-network correlation at many lags and windows), a ridge on the
  read-out's leave-one-out residual. They know which ROIs form a network, which no model of
  unknown data does;
- the read-out plus the log number of state changes in the scan (the experiment's scan
  ceiling): what a model that saw every state change of the run would reach;
- the read-out plus the true log dwell (the experiment's oracle row).

Each cell also gives the model's paired difference to the read-out over the
folds, with the corrected 95% interval the experiment's reports use: whether even a perfect
reader of the scan's dynamics would be told apart from the read-out at this cohort size.

Besides age and fluid intelligence it regresses the true log dwell itself: how much of the
switching speed a scan shows beyond what static FC says of it. ``--set`` changes the
generative model, e.g. ``--set dwell_age_slope=0 --set dwell_integrity_effect=0`` leaves the
speed unrelated to anything static.

    python benchmarks/dynamics_reach.py --seed 1 --out benchmarks/results/dynamics_reach
    python benchmarks/dynamics_reach.py --seed 1 --folds 3 --repeats 2   # the experiment's folds
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from measure import markdown_table
from sklearn.linear_model import LinearRegression, RidgeCV
from sklearn.model_selection import KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from brainlit.baselines.oracle import LatentOracle
from brainlit.baselines.readout import ConnectivityRidge
from brainlit.data.simulate import GenerativeModel, SimulatedCohort, simulate_roi_timeseries
from brainlit.data.simulate.probe import switching_features
from brainlit.metrics import corrected_paired_interval

MEAN, READOUT, PROBES = "the training mean", "the read-out (static)", "+ the mechanism's probes"
SCAN, TRUE = "+ the scan's true state changes", "+ the true log dwell"
MODELS = (MEAN, READOUT, PROBES, SCAN, TRUE)
TARGETS = ("age", "fluid_intelligence", "log_dwell")


def fold_predictions(series: list[np.ndarray], y: np.ndarray, probes: np.ndarray, latents: np.ndarray,
                     train: np.ndarray, test: np.ndarray) -> dict[str, np.ndarray]:
    """Test predictions of ``MODELS``, fit on ``train`` only; ``latents`` ``[N, 2]`` holds the
    log switch count and the true log dwell."""
    fitted = ConnectivityRidge().fit([series[i] for i in train], y[train])
    oof, readout = fitted.oof_[:, 0], fitted.predict([series[i] for i in test])[:, 0]
    true = LatentOracle().fit(oof, latents[train, 1:], y[train])
    scan = LatentOracle().fit(oof, latents[train, :1], y[train])
    calibrate = LinearRegression().fit(oof[:, None], y[train])
    residual = y[train] - calibrate.predict(oof[:, None])
    ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 5, 30))).fit(probes[train], residual)
    return {MEAN: np.full(len(test), y[train].mean()), READOUT: readout, PROBES: calibrate.predict(readout[:, None]) + ridge.predict(probes[test]),
            SCAN: scan.predict(readout, latents[test, :1]), TRUE: true.predict(readout, latents[test, 1:])}


def reach_rows(cohort: SimulatedCohort, n_folds: int, repeats: int) -> list[dict]:
    """MAE per target (``TARGETS``) of ``MODELS`` (module docstring) on one dynamic cohort, and
    (``"<target> vs read-out"``) each model's paired difference to the read-out: mean and
    corrected 95% interval."""
    series = [s.astype(float) for s in cohort.roi_timeseries]
    probes = np.stack([switching_features(s, cohort.modules) for s in series])
    dwell = cohort.latents["dynamics_log_mean_dwell"].to_numpy()
    latents = np.column_stack([np.log1p(cohort.latents["state_switches"].to_numpy(float)), dwell])
    targets = {t: cohort.phenotypes[t].to_numpy(float) for t in TARGETS[:2]} | {"log_dwell": dwell}
    errors: dict[tuple[str, str], list[float]] = {}
    for target, y in targets.items():
        keep = np.flatnonzero(~np.isnan(y))
        for repeat in range(repeats):
            for train, test in KFold(n_folds, shuffle=True, random_state=repeat).split(keep):
                preds = fold_predictions(series, y, probes, latents, keep[train], keep[test])
                for model, pred in preds.items():
                    errors.setdefault((model, target), []).append(float(np.abs(pred - y[keep[test]]).mean()))
    versus = {(m, t): corrected_paired_interval(np.subtract(errors[m, t], errors[READOUT, t]), 1 / (n_folds - 1))
              for m in MODELS for t in TARGETS}
    return [{"features": model, **{t: float(np.mean(errors[model, t])) for t in TARGETS},
             **{f"{t} vs read-out": versus[model, t] for t in TARGETS}} for model in MODELS]


def _cell(row: dict, target: str) -> str:
    """``MAE (difference to the read-out [interval])`` of one table cell."""
    mean, low, high = row[f"{target} vs read-out"]
    if row["features"] == READOUT or not np.isfinite(low):
        return f"{row[target]:.2f}"
    return f"{row[target]:.2f} ({mean:+.2f} [{low:+.2f}, {high:+.2f}])"


def model_overrides(pairs: list[str]) -> dict[str, float]:
    """``["dwell_sd=0.8", ...]`` -> ``{"dwell_sd": 0.8}`` (GenerativeModel fields)."""
    return {key: float(value) for key, value in (pair.split("=", 1) for pair in pairs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=200)
    parser.add_argument("--volumes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a GenerativeModel field, e.g. dwell_sd=0.8 (repeatable)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dynamics_reach"))
    args = parser.parse_args()
    model = GenerativeModel(dynamics="switching", **model_overrides(args.set))
    cohort = simulate_roi_timeseries(args.subjects, 32, args.volumes, seed=args.seed, model=model)
    rows = reach_rows(cohort, args.folds, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dynamics_reach.json").write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "rows": rows}, indent=1))
    table = markdown_table([{**r, **{t: _cell(r, t) for t in TARGETS}} for r in rows],
                           [("features", "model"), ("age", "age MAE"), ("fluid_intelligence", "fluid intelligence MAE"),
                            ("log_dwell", "log dwell MAE")])
    (args.out / "dynamics_reach.md").write_text(f"# What a dynamic cohort's BOLD lets a ridge reach\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()

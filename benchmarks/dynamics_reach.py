"""How much of the oracle gap a model that knew where to look could reach, at the experiment's size.

The oracle row of a dynamic cohort (``brainlit.baselines.oracle``) knows each subject's true
switching speed. No model of a finite scan gets all of it. This benchmark bounds what is
reachable from the BOLD: on one simulated cohort (ROI series, no images), cross-validated
ridges on the same folds read

- static features: Fisher-z FC and each ROI's autocorrelation at lags 1-3 (what brainlit's
  read-out reads, correlation edges only);
- the same plus the mechanism's own probes (:func:`brainlit.data.simulate.probe.switching_features`:
  the autocorrelation of the windowed between-minus-within-network correlation at many lags and
  windows). They know which ROIs form a network, which no model of unknown data does;
- the same static features plus the true log dwell (the oracle's extra knowledge).

    python benchmarks/dynamics_reach.py --seed 1 --out benchmarks/results/dynamics_reach
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from measure import markdown_table
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from brainlit.baselines.fc_ridge import fc_features
from brainlit.baselines.oracle import lag_features
from brainlit.data.simulate import GenerativeModel, SimulatedCohort, simulate_roi_timeseries
from brainlit.data.simulate.probe import switching_features


def cv_mae(features: np.ndarray, target: np.ndarray, n_folds: int, repeats: int) -> float:
    """Mean MAE of a standardised RidgeCV over ``repeats`` shuffled ``n_folds``-fold splits."""
    ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 5, 30)))
    maes = []
    for repeat in range(repeats):
        cv = KFold(n_folds, shuffle=True, random_state=repeat)
        maes.append(np.abs(cross_val_predict(ridge, features, target, cv=cv) - target).mean())
    return float(np.mean(maes))


def reach_rows(cohort: SimulatedCohort, n_folds: int, repeats: int) -> list[dict]:
    """MAE per target of the three feature sets (module docstring) on one dynamic cohort."""
    series = [s.astype(float) for s in cohort.roi_timeseries]
    static = np.hstack([fc_features(series), lag_features(series, 3)])
    probes = np.stack([switching_features(s, cohort.modules) for s in series])
    dwell = cohort.latents["dynamics_log_mean_dwell"].to_numpy()[:, None]
    inputs = {"static FC + autocorrelations": static, "+ the mechanism's probes": np.hstack([static, probes]),
              "+ the true log dwell": np.hstack([static, dwell])}
    rows = []
    for name, features in inputs.items():
        row = {"features": name}
        for target in ("age", "fluid_intelligence"):
            y = cohort.phenotypes[target].to_numpy(float)
            keep = ~np.isnan(y)
            row[target] = cv_mae(features[keep], y[keep], n_folds, repeats)
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=200)
    parser.add_argument("--volumes", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dynamics_reach"))
    args = parser.parse_args()
    cohort = simulate_roi_timeseries(args.subjects, 32, args.volumes, seed=args.seed,
                                     model=GenerativeModel(dynamics="switching"))
    rows = reach_rows(cohort, args.folds, args.repeats)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dynamics_reach.json").write_text(json.dumps({"args": vars(args) | {"out": str(args.out)}, "rows": rows}, indent=1))
    table = markdown_table([{**r, "age": f"{r['age']:.2f}", "fluid_intelligence": f"{r['fluid_intelligence']:.2f}"}
                            for r in rows], [("features", "ridge on"), ("age", "age MAE"),
                                             ("fluid_intelligence", "fluid intelligence MAE")])
    (args.out / "dynamics_reach.md").write_text(f"# What a dynamic cohort's BOLD lets a ridge reach\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()

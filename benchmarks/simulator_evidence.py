"""Evidence for the simulator's defaults: visible FC states, the oracle gap, site effects, speed.

Four measurements, each a markdown table (``docs/research/simulator.md`` holds the results):

- ``visibility``: how well windowed FC (10-volume windows, between the edges a state raises)
  tracks each subject's true state, ``switching`` against ``visible``
  (:func:`brainlit.data.simulate.probe.state_tracking`).
- ``oracle``: 5-fold age MAE of a ridge on static FC + each ROI's autocorrelations (lags 1-3),
  and of the same with each subject's true log mean dwell added, stacked (a linear fit on the
  ridge's inner cross-validated prediction and the log dwell, as the experiment's oracle row)
  or as one more ridge feature. Their difference is the oracle gap.
- ``sites``: per FC edge, the share of variance between sites (eta squared) beside the share
  between subjects' ages; how well a classifier on FC tells the sites apart; the age MAE of the
  same subjects with and without site effects.
- ``speed``: wall time of ``simulate_cohort(..., layout="arrays")``.

    python benchmarks/simulator_evidence.py visibility oracle sites
    python benchmarks/simulator_evidence.py speed --subjects 5000 --n-jobs 2
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
from measure import markdown_table
from sklearn.linear_model import LinearRegression, LogisticRegression, RidgeCV
from sklearn.model_selection import KFold, cross_val_predict, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from brainlit.baselines.fc_ridge import fc_features
from brainlit.data.simulate import (
    GenerativeModel,
    ScanPlan,
    SiteSpec,
    simulate_cohort,
    simulate_roi_timeseries,
    simulate_scans,
)
from brainlit.data.simulate.probe import state_edges, state_tracking


def _ridge():
    return make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-1, 5, 25)))


def static_features(series: np.ndarray) -> np.ndarray:
    """Fisher-z FC and each ROI's autocorrelation at lags 1-3 of runs ``[N, R, T]``."""
    z = (series - series.mean(2, keepdims=True)) / series.std(2, keepdims=True)
    lags = np.concatenate([(z[:, :, k:] * z[:, :, :-k]).mean(2) for k in (1, 2, 3)], axis=1)
    return np.hstack([fc_features(list(series.astype(np.float64))), lags])


def oracle_maes(x: np.ndarray, extra: np.ndarray, y: np.ndarray, seed: int = 0) -> dict[str, float]:
    """5-fold MAE of the ridge on ``x``, and with ``extra`` ``[N]`` stacked or concatenated."""
    folds = KFold(5, shuffle=True, random_state=seed)
    static, stacked = np.empty_like(y), np.empty_like(y)
    for train, test in folds.split(x):
        inner = cross_val_predict(_ridge(), x[train], y[train], cv=KFold(5, shuffle=True, random_state=seed))
        ridge = _ridge().fit(x[train], y[train])
        static[test] = ridge.predict(x[test])
        combine = LinearRegression().fit(np.column_stack([inner, extra[train]]), y[train])
        stacked[test] = combine.predict(np.column_stack([static[test], extra[test]]))
    concatenated = cross_val_predict(_ridge(), np.column_stack([x, extra]), y, cv=folds)
    return {name: float(np.abs(p - y).mean()) for name, p in
            (("static", static), ("stacked", stacked), ("concatenated", concatenated))}


def visibility(n_subjects: int = 60) -> str:
    """Mean per-subject r of windowed FC with the true state, per mechanism and run length."""
    rows = []
    for n_volumes in (150, 300):
        for dynamics in ("switching", "visible"):
            cohort = simulate_roi_timeseries(n_subjects, 32, n_volumes, seed=5, model=GenerativeModel(dynamics=dynamics))
            edges = state_edges(cohort.modules, dynamics)
            r = [state_tracking(s.astype(float), edges, states)
                 for s, states in zip(cohort.roi_timeseries, cohort.states, strict=True)]
            rows.append({"dynamics": dynamics, "volumes": n_volumes, "r": float(np.nanmean(r)),
                         "q": f"{np.nanpercentile(r, 25):.2f}-{np.nanpercentile(r, 75):.2f}"})
    return markdown_table(rows, [("dynamics", "dynamics"), ("volumes", "volumes (TR 2 s)"),
                                 ("r", "mean r"), ("q", "quartiles")])


def oracle(n_subjects: int = 200, seeds: tuple[int, ...] = (21, 22, 23)) -> str:
    """The oracle gap per mechanism and run length, mean over cohort seeds."""
    rows = []
    for n_volumes in (150, 300):
        for dynamics in ("switching", "visible"):
            runs = []
            for seed in seeds:
                cohort = simulate_roi_timeseries(n_subjects, 32, n_volumes, seed=seed,
                                                 model=GenerativeModel(dynamics=dynamics))
                log_dwell = cohort.latents["dynamics_log_mean_dwell"].to_numpy()
                runs.append(oracle_maes(static_features(cohort.roi_timeseries), log_dwell,
                                        cohort.phenotypes["age"].to_numpy(float)))
            mean = {k: float(np.mean([r[k] for r in runs])) for k in runs[0]}
            gaps = [r["static"] - r["stacked"] for r in runs]
            rows.append({"dynamics": dynamics, "volumes": n_volumes, **mean, "gap": float(np.mean(gaps)),
                         "per_seed": " ".join(f"{g:.2f}" for g in gaps)})
    return markdown_table(rows, [("dynamics", "dynamics"), ("volumes", "volumes"), ("static", "static FC + AC"),
                                 ("stacked", "+ true log dwell (stacked)"), ("gap", "oracle gap"),
                                 ("per_seed", "gap per seed"), ("concatenated", "+ log dwell as a feature")])


def sites(n_subjects: int = 200, n_sites: int = 4, site_seeds: tuple[int, ...] = (0, 1, 2)) -> str:
    """Site effects on FC next to the subjects' age effects, same subjects without and with
    sites (three draws of the sites' effects)."""
    subjects, rows = np.arange(n_subjects), []
    for spec in (None, *(SiteSpec(n_sites, site_seed=s) for s in site_seeds)):
        scans = simulate_scans(subjects, ScanPlan(32, 150, seed=31, sites=spec))
        fc = fc_features(list(scans.roi_timeseries.astype(np.float64)))
        age = scans.participants["age"].to_numpy(float)
        row = {"cohort": "no sites" if spec is None else f"{n_sites} sites, site seed {spec.site_seed}",
               "age": oracle_maes(static_features(scans.roi_timeseries), np.zeros(n_subjects), age)["static"],
               "age_r2": float(np.median(np.corrcoef(fc.T, age)[-1, :-1] ** 2))}
        if spec is not None:
            site = scans.participants["site"].to_numpy()
            eta = [_eta_squared(edge, site) for edge in fc.T]
            classifier = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=2000))
            row |= {"eta": float(np.median(eta)), "eta90": float(np.percentile(eta, 90)),
                    "accuracy": float(cross_val_score(classifier, fc, site, cv=5).mean()),
                    "fd": float(scans.latents["mean_fd"].median())}
        rows.append(row)
    return markdown_table(rows, [("cohort", "cohort"), ("age", "age MAE, ridge on FC + AC"),
                                 ("eta", "site eta² per edge, median"), ("eta90", "90th pct"),
                                 ("age_r2", "age r² per edge, median"), ("accuracy", "site from FC, accuracy"),
                                 ("fd", "median mean FD (mm)")])


def _eta_squared(values: np.ndarray, groups: np.ndarray) -> float:
    """Share of ``values``' variance between ``groups``."""
    means = {g: values[groups == g].mean() for g in np.unique(groups)}
    between = np.sum([(groups == g).sum() * (m - values.mean()) ** 2 for g, m in means.items()])
    return float(between / ((values - values.mean()) ** 2).sum())


def speed(n_subjects: int, n_jobs: int, dynamics: str, n_sites: int | None) -> str:
    """Wall time of an arrays cohort written from scratch."""
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        simulate_cohort(folder, n_subjects, layout="arrays", n_jobs=n_jobs, model=GenerativeModel(dynamics=dynamics),
                        sites=None if n_sites is None else SiteSpec(n_sites))
        seconds = time.perf_counter() - start
    row = {"subjects": n_subjects, "jobs": n_jobs, "dynamics": dynamics, "sites": n_sites or "-", "s": seconds}
    return markdown_table([row], [("subjects", "subjects (32 ROIs, 150 volumes)"), ("dynamics", "dynamics"),
                                  ("sites", "sites"), ("jobs", "n_jobs"), ("s", "wall s")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("measurements", nargs="+", choices=("visibility", "oracle", "sites", "speed"))
    parser.add_argument("--subjects", type=int, default=5000, help="subjects of the speed run")
    parser.add_argument("--n-jobs", type=int, default=2, help="workers of the speed run")
    parser.add_argument("--dynamics", default="none", help="dynamics of the speed run")
    parser.add_argument("--sites", type=int, help="sites of the speed run")
    args = parser.parse_args()
    measure = {"visibility": visibility, "oracle": oracle, "sites": sites,
               "speed": lambda: speed(args.subjects, args.n_jobs, args.dynamics, args.sites)}
    for name in args.measurements:
        print(f"## {name}\n\n{measure[name]()}\n", flush=True)


if __name__ == "__main__":
    main()

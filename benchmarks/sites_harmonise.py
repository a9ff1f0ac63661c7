"""What ComBat harmonisation buys a brain-age ridge at a new site, and what to do when age is unknown.

Synthetic read-out-like features: a nonlinear age effect shared by all sites, plus each site's
location shift and noise scale (per feature). Training sites have confounded age ranges (one
young, one old). A new site is adapted from a few controls with known ages; the ridge trained on
the (harmonised) training sites then predicts the new site's other subjects, whose ages are not
used (``transform(age=None)``) unless the row says so. Also: the agreement with neuroCombat's
own harmonisation and, where it is installed, neuroHarmonize's.

    python benchmarks/sites_harmonise.py --out benchmarks/results/sites_harmonise
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from measure import markdown_table
from neuroCombat import neuroCombat
from sklearn.linear_model import RidgeCV

from brainlit.sites.harmonise import ComBatHarmoniser

N_FEATURES = 60
AGES = {"young": (18, 60), "old": (40, 88), "all ages": (18, 88)}


def site_cohort(rng: np.random.Generator, n: int, ages: tuple[float, float], weights: np.ndarray,
                shift_sd: float, log_scale: float) -> tuple[np.ndarray, np.ndarray]:
    """``(features [n, F], age [n])``: a shared nonlinear age effect, a site shift and noise scale."""
    age = rng.uniform(*ages, n)
    a = (age - 53) / 20
    shift = rng.normal(0, shift_sd, len(weights))
    scale = np.exp(rng.normal(log_scale, 0.3, len(weights)))
    return np.outer(a + 0.4 * a**2, weights) + shift + scale * rng.normal(0, 1, (n, len(weights))), age


def ridge_row(train: tuple, new: tuple, label: str) -> dict:
    """MAE, slope of predicted on true age and mean bias of a ridge trained on ``train``."""
    (features, age), (new_features, new_age) = train, new
    ridge = RidgeCV(alphas=np.logspace(-2, 4, 13)).fit(features, age)
    pred = ridge.predict(new_features)
    return {"features": label, "mae": float(np.mean(np.abs(pred - new_age))),
            "slope": float(np.polyfit(new_age, pred, 1)[0]), "bias": float(np.mean(pred - new_age))}


def new_site_rows(seed: int, n_controls: int, n_training_sites: int) -> list[dict]:
    """Raw vs harmonised features at an adapted new site (one repeat)."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0, 0.5, N_FEATURES)
    names = ["young", "old"] if n_training_sites == 2 else ["all ages"]
    cohorts = [site_cohort(rng, 150, AGES[name], weights, 1.0, 0.0) for name in names]
    features, age = np.vstack([c[0] for c in cohorts]), np.concatenate([c[1] for c in cohorts])
    sites = np.repeat(names, 150)
    new_features, new_age = site_cohort(rng, 150, AGES["all ages"], weights, 1.5, 0.4)
    controls, rest = np.arange(n_controls), np.arange(n_controls, 150)
    combat = ComBatHarmoniser(min_controls=2).fit(features, sites, age).adapt(new_features[controls], "new", new_age[controls])
    train = (combat.transform(features, sites, age), age)
    site = ["new"] * len(rest)
    mean_age = np.full(len(rest), age.mean())
    return [
        ridge_row((features, age), (new_features[rest], new_age[rest]), "raw"),
        ridge_row(train, (combat.transform(new_features[rest], site), new_age[rest]), "age unknown: location only (default)"),
        ridge_row(train, (combat.transform(new_features[rest], site, mean_age), new_age[rest]), "age unknown: training mean age"),
        ridge_row(train, (combat.transform(new_features[rest], site, new_age[rest]), new_age[rest]), "true age (not honest)"),
    ]


def averaged(repeats: int, n_controls: int, n_training_sites: int) -> list[dict]:
    """:func:`new_site_rows` averaged over ``repeats`` seeds."""
    table = pd.DataFrame([row for seed in range(repeats) for row in new_site_rows(seed, n_controls, n_training_sites)])
    means = table.groupby("features", sort=False).mean().reset_index()
    return [{"training_sites": n_training_sites, "controls": n_controls, **row} for row in means.to_dict("records")]


def agreement(seed: int = 0) -> dict:
    """Largest difference from neuroCombat (and neuroHarmonize, if installed) on the training sites."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(0, 0.5, N_FEATURES)
    cohorts = [site_cohort(rng, 150, AGES[name], weights, 1.0, 0.0) for name in ("young", "old")]
    features, age = np.vstack([c[0] for c in cohorts]), np.concatenate([c[1] for c in cohorts])
    sites = np.repeat(["young", "old"], 150)
    combat = ComBatHarmoniser().fit(features, sites, age)
    ours = combat.transform(features, sites, age)
    basis = pd.DataFrame(combat._basis(age), columns=[f"b{k}" for k in range(combat.age_coef_.shape[0])])
    with contextlib.redirect_stdout(io.StringIO()):
        reference = neuroCombat(features.T, basis.assign(site=sites), "site", continuous_cols=list(basis))["data"].T
    result = {"neuroCombat": float(np.abs(ours - reference).max())}
    with contextlib.suppress(ImportError), contextlib.redirect_stdout(io.StringIO()):
        from neuroHarmonize import harmonizationLearn

        result["neuroHarmonize"] = float(np.abs(ours - harmonizationLearn(features, basis.assign(SITE=sites))[1]).max())
    return result


def fit_seconds(n_subjects: int = 300, n_features: int = 1088) -> float:
    """Wall time of one fit on a read-out-sized problem (R = 32: 2 x 496 edges + 96 autocorrelations)."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(n_subjects, n_features))
    start = time.perf_counter()
    ComBatHarmoniser().fit(features, np.repeat(["a", "b", "c"], n_subjects // 3), rng.uniform(18, 88, n_subjects))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sites_harmonise"))
    args = parser.parse_args()
    rows = [row for controls in (5, 10, 20, 40) for row in averaged(args.repeats, controls, 2)]
    rows += averaged(args.repeats, 20, 1)
    payload = {"rows": rows, "max_abs_difference": agreement(), "fit_seconds_300x1088": fit_seconds()}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sites_harmonise.json").write_text(json.dumps(payload, indent=1))
    columns = [("training_sites", "training sites"), ("controls", "new-site controls"), ("features", "features"),
               ("mae", "MAE (years)"), ("slope", "slope pred~age"), ("bias", "bias (years)")]
    table = markdown_table(rows, columns)
    (args.out / "sites_harmonise.md").write_text(table + "\n")
    print(table)
    print(json.dumps({k: v for k, v in payload.items() if k != "rows"}, indent=1))


if __name__ == "__main__":
    main()

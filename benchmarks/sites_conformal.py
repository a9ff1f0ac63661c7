"""Which conformal interval keeps its coverage at the ends of the age range on a new cohort.

Synthetic brain-age predictions that regress to the mean (age ~ U(18, 88), pred = 0.6 age + 21
+ noise): calibrate each method on one cohort's pairs, then measure on a new cohort of another
draw its coverage overall and in each true-age tertile, and the mean width. Scenarios: the
base case (noise sd 9), a new cohort of older people only (ages 40-88), noise that grows with
age (sd 4 at 18 to 14 at 88) and a small calibration set (150 pairs).

    python benchmarks/sites_conformal.py --out benchmarks/results/sites_conformal
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from measure import markdown_table
from sklearn.linear_model import QuantileRegressor

from brainlit.sites.conformal import ConformalIntervals

Interval = tuple[np.ndarray, np.ndarray]
SCENARIOS = {  # name: (calibration pairs, new cohort's age range, noise grows with age)
    "base": (500, (18, 88), False),
    "older new cohort": (500, (40, 88), False),
    "noise grows with age": (500, (18, 88), True),
    "150 calibration pairs": (150, (18, 88), False),
}


def cohort(rng: np.random.Generator, n: int, ages: tuple[float, float], growing: bool) -> tuple[np.ndarray, np.ndarray]:
    """``(age [n], pred [n])``: predictions shrunk towards the mean with Gaussian noise."""
    age = rng.uniform(*ages, n)
    sd = 4 + 0.14 * (age - 18) if growing else 9.0
    return age, 0.6 * age + 21 + rng.normal(0, 1, n) * sd


def _quantile(scores: np.ndarray, level: float) -> float:
    rank = int(np.ceil((len(scores) + 1) * level - 1e-9))
    return float(np.sort(scores)[rank - 1]) if rank <= len(scores) else np.inf


def signed_mondrian(y: np.ndarray, pred: np.ndarray, new: np.ndarray, level: float) -> Interval:
    """Mondrian on predicted-value tertiles with asymmetric (lower and upper) residual quantiles."""
    edges = np.quantile(pred, [1 / 3, 2 / 3])
    bins, new_bins = np.searchsorted(edges, pred), np.searchsorted(edges, new)
    lower, upper, tail = np.empty_like(new), np.empty_like(new), 1 - (1 - level) / 2
    for b in range(3):
        residual = (y - pred)[bins == b]
        lower[new_bins == b] = new[new_bins == b] - _quantile(-residual, tail)
        upper[new_bins == b] = new[new_bins == b] + _quantile(residual, tail)
    return lower, upper


def normalised(y: np.ndarray, pred: np.ndarray, new: np.ndarray, level: float) -> Interval:
    """Locally weighted: ``|y - pred| / sigma(pred)``, sigma linear in the distance to the median."""
    middle = np.median(pred)

    def sigma(p: np.ndarray) -> np.ndarray:
        return np.maximum(np.c_[np.ones_like(p), np.abs(p - middle)] @ coef, 1e-3)

    coef = np.linalg.lstsq(np.c_[np.ones_like(pred), np.abs(pred - middle)], np.abs(y - pred), rcond=None)[0]
    half = _quantile(np.abs(y - pred) / sigma(pred), level) * sigma(new)
    return new - half, new + half


def cqr(y: np.ndarray, pred: np.ndarray, new: np.ndarray, level: float) -> Interval:
    """Conformalised quantile regression (Romano et al. 2019) with linear quantiles of y given pred."""
    tail = (1 - level) / 2
    models = [QuantileRegressor(quantile=q, alpha=0, solver="highs").fit(pred[:, None], y) for q in (tail, 1 - tail)]
    low, high = (m.predict(pred[:, None]) for m in models)
    margin = _quantile(np.maximum(low - y, y - high), level)
    return models[0].predict(new[:, None]) - margin, models[1].predict(new[:, None]) + margin


def ours(**options) -> Callable[..., Interval]:
    """A :class:`ConformalIntervals` with ``options`` as a method of the comparison."""
    def method(y: np.ndarray, pred: np.ndarray, new: np.ndarray, level: float) -> Interval:
        return ConformalIntervals(level, min_per_bin=10, **options).fit(y, pred).interval(new)
    return method


METHODS = {
    "split, centre = prediction": ours(centre="prediction", n_bins=1),
    "Mondrian on predicted tertiles": ours(centre="prediction", n_bins=3),
    "Mondrian on predicted tertiles, asymmetric": signed_mondrian,
    "normalised residuals": normalised,
    "CQR (linear quantiles of y given pred)": cqr,
    "unbiased centre, 1 bin": ours(centre="unbiased", n_bins=1),
    "unbiased centre, 3 bins (default)": ours(centre="unbiased", n_bins=3),
    "unbiased centre, 5 bins": ours(centre="unbiased", n_bins=5),
}


def scenario_rows(name: str, repeats: int, n_new: int, level: float, seed: int) -> list[dict]:
    """Mean coverage overall and per true-age tertile, worst-tertile 5th percentile, width."""
    n_cal, ages, growing = SCENARIOS[name]
    rng = np.random.default_rng(seed)
    results: dict[str, list[list[float]]] = {m: [] for m in METHODS}
    for _ in range(repeats):
        y, pred = cohort(rng, n_cal, (18, 88), growing)
        age, new = cohort(rng, n_new, ages, growing)
        tertile = np.searchsorted(np.quantile(age, [1 / 3, 2 / 3]), age)
        for method, make in METHODS.items():
            lower, upper = make(y, pred, new, level)
            covered = (lower <= age) & (age <= upper)
            results[method].append([covered.mean(), *(covered[tertile == t].mean() for t in range(3)),
                                    np.mean(upper - lower)])
    rows = []
    for method, values in results.items():
        v = np.array(values)
        rows.append({"scenario": name, "method": method, "overall": v[:, 0].mean(), "young": v[:, 1].mean(),
                     "middle": v[:, 2].mean(), "old": v[:, 3].mean(),
                     "worst_tertile_p5": float(np.percentile(v[:, 1:4].min(1), 5)), "width": v[:, 4].mean()})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=100)
    parser.add_argument("--new", type=int, default=2000, help="subjects in each new cohort")
    parser.add_argument("--level", type=float, default=0.9)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sites_conformal"))
    args = parser.parse_args()
    rows = [row for name in SCENARIOS for row in scenario_rows(name, args.repeats, args.new, args.level, args.seed)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sites_conformal.json").write_text(json.dumps(rows, indent=1))
    columns = [("scenario", "scenario"), ("method", "method"), ("overall", "coverage"), ("young", "young third"),
               ("middle", "middle third"), ("old", "old third"), ("worst_tertile_p5", "worst third, 5th pct"),
               ("width", "width (years)")]
    table = markdown_table(rows, columns)
    (args.out / "sites_conformal.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()

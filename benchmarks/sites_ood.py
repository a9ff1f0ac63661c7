"""How often the out-of-distribution flag fires on cohorts like and unlike the training one.

Read-out features of simulated ROI series (Fisher-z FC edges, tangent FC at the training
reference, each ROI's autocorrelation at lags 1-3) for a training cohort, then the share of
subjects flagged (p <= 0.05) in: a same-distribution cohort (another seed), that cohort with
its ROI order shuffled (one fixed permutation: a wrong atlas order), shorter runs, and a cohort
with twice the regional noise. Synthetic Gaussian features (no simulator) check the false-flag
rate over many draws.

    OPENBLAS_NUM_THREADS=1 python benchmarks/sites_ood.py --out benchmarks/results/sites_ood

(One BLAS thread: on a loaded 2-core machine OpenBLAS threads spin and a fit takes 200x longer.)
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from measure import markdown_table

from brainlit.baselines.fc_ridge import fc_features
from brainlit.baselines.tangent_ridge import fit_tangent, tangent_features
from brainlit.data.simulate import GenerativeModel, simulate_roi_timeseries
from brainlit.sites.ood import OutOfDistribution

N_ROIS, LAGS = 32, 3


def autocorrelation(series: np.ndarray, lags: int = LAGS) -> np.ndarray:
    """``[N, lags * R]`` each ROI's autocorrelation at lags 1..lags (as the read-out computes it)."""
    z = (series - series.mean(-1, keepdims=True)) / series.std(-1, keepdims=True)
    return np.concatenate([(z[..., lag:] * z[..., :-lag]).mean(-1) for lag in range(1, lags + 1)], axis=1)


def readout_features(series: np.ndarray, tangent) -> np.ndarray:
    """``[N, F]`` read-out-like features of ``series [N, R, T]`` at the training tangent reference."""
    return np.hstack([fc_features(series), tangent_features(tangent, list(series)), autocorrelation(series)])


def simulator_rows(n_subjects: int, n_volumes: int, seeds: list[int]) -> list[dict]:
    """Flagged share per cohort kind, for each training seed."""
    rows = []
    permutation = np.random.default_rng(123).permutation(N_ROIS)
    for seed in seeds:
        train = simulate_roi_timeseries(n_subjects, N_ROIS, n_volumes, seed=seed).roi_timeseries.astype(float)
        tangent = fit_tangent(list(train))
        start = time.perf_counter()
        detector = OutOfDistribution().fit(readout_features(train, tangent))
        seconds = time.perf_counter() - start
        same = simulate_roi_timeseries(n_subjects, N_ROIS, n_volumes, seed=seed + 1000).roi_timeseries.astype(float)
        noisy_model = replace(GenerativeModel(), local_noise=2 * GenerativeModel().local_noise)
        cohorts = {
            "same distribution (another seed)": same,
            "ROI order shuffled": same[:, permutation],
            f"runs of {n_volumes // 2} volumes": same[..., : n_volumes // 2],
            "regional noise x2": simulate_roi_timeseries(n_subjects, N_ROIS, n_volumes, seed=seed + 2000,
                                                         model=noisy_model).roi_timeseries.astype(float),
        }
        for name, series in cohorts.items():
            flags = detector.assess(readout_features(series, tangent))
            rows.append({"seed": seed, "cohort": name, "flagged": float(flags["ood_flag"].mean()),
                         "median_score": float(flags["ood_score"].median()), "fit_seconds": seconds})
    return rows


def gaussian(rng: np.random.Generator, mixing: np.ndarray, n: int) -> np.ndarray:
    """``[n, F]`` subjects of 20 latent factors (``mixing [20, F]``) plus independent noise."""
    return rng.normal(size=(n, len(mixing))) @ mixing + rng.normal(size=(n, mixing.shape[1]))


def gaussian_false_flags(repeats: int, n: int = 200, n_features: int = 300) -> dict:
    """Flagged share of same-distribution correlated Gaussian subjects, over ``repeats`` draws."""
    rates = []
    for seed in range(repeats):
        rng = np.random.default_rng(seed)
        mixing = rng.normal(size=(20, n_features))
        detector = OutOfDistribution().fit(gaussian(rng, mixing, n))
        rates.append(detector.assess(gaussian(rng, mixing, 1000))["ood_flag"].mean())
    return {"mean": float(np.mean(rates)), "p95": float(np.percentile(rates, 95)), "repeats": repeats}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=200)
    parser.add_argument("--volumes", type=int, default=150)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sites_ood"))
    args = parser.parse_args()
    rows = simulator_rows(args.subjects, args.volumes, args.seeds)
    payload = {"rows": rows, "gaussian_false_flags": gaussian_false_flags(args.repeats)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sites_ood.json").write_text(json.dumps(payload, indent=1))
    columns = [("seed", "training seed"), ("cohort", "new cohort"), ("flagged", "flagged"),
               ("median_score", "median ood_score")]
    table = markdown_table(rows, columns)
    (args.out / "sites_ood.md").write_text(table + "\n")
    print(table)
    print(json.dumps(payload["gaussian_false_flags"]), "fit seconds", [round(r["fit_seconds"], 2) for r in rows[::4]])


if __name__ == "__main__":
    main()

"""How much of the simulated FC dynamics a scan shows: a simple probe of switching speed.

For the positive-control cohort (``dynamics: switching``) this simulates subjects at several
scan lengths and correlates each subject's true log mean dwell time with a probe computed from
the BOLD alone: the lag-10 autocorrelation of the windowed (10-volume) between-minus-within-
network correlation (:mod:`brainlit.data.simulate.probe`). Two cohorts per length: dwell times
drawn log-uniform over 8-120 s independently of everything else (what the BOLD holds about
speed), and the model's own draw (dwell tied to age and integrity, as the experiment sees it;
the partial r removes age).

    python benchmarks/dynamics_probe.py --out benchmarks/results/dynamics_probe
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from measure import markdown_table

from brainlit.data.simulate import GenerativeModel, simulate_roi_timeseries
from brainlit.data.simulate.probe import switching_probe


def _partial_r(a: np.ndarray, b: np.ndarray, control: np.ndarray) -> float:
    design = np.column_stack([np.ones_like(control), control])
    residual = [v - design @ np.linalg.lstsq(design, v, rcond=None)[0] for v in (a, b)]
    return float(np.corrcoef(*residual)[0, 1])


def probe_row(n_volumes: int, n_subjects: int, drawn: bool, seed: int) -> dict:
    """Spearman and age-partialled r of the probe with the true log dwell at one scan length."""
    dwell = None if drawn else np.exp(np.random.default_rng(seed).uniform(np.log(8), np.log(120), n_subjects))
    cohort = simulate_roi_timeseries(n_subjects, 32, n_volumes, seed=seed, model=GenerativeModel(dynamics="switching"),
                                     dwell=dwell)
    probe = np.array([switching_probe(s.astype(float), cohort.modules) for s in cohort.roi_timeseries])
    log_dwell = cohort.latents["dynamics_log_mean_dwell"].to_numpy()
    age = cohort.phenotypes["age"].to_numpy(float)
    return {"dwell": "model's draw (age, integrity)" if drawn else "log-uniform 8-120 s", "n_volumes": n_volumes,
            "minutes": n_volumes * 2 / 60, "spearman_r": float(pd.Series(probe).corr(pd.Series(log_dwell), method="spearman")),
            "partial_r_age": _partial_r(probe, log_dwell, age)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=120)
    parser.add_argument("--volumes", type=int, nargs="+", default=[150, 300, 600])
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dynamics_probe"))
    args = parser.parse_args()
    rows = [probe_row(t, args.subjects, drawn, args.seed) for drawn in (False, True) for t in args.volumes]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "dynamics_probe.json").write_text(json.dumps(rows, indent=1))
    columns = [("dwell", "dwell times"), ("n_volumes", "volumes (TR 2 s)"), ("spearman_r", "probe r"),
               ("partial_r_age", "probe r, age partialled")]
    table = markdown_table([{**r, "spearman_r": f"{r['spearman_r']:.2f}", "partial_r_age": f"{r['partial_r_age']:.2f}"}
                            for r in rows], columns)
    (args.out / "dynamics_probe.md").write_text(f"# Switching speed in the BOLD\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()

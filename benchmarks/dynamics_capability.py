"""Can the network read FC switching speed where a scan plainly shows it? A capability check.

The simulated positive control (``simulate --dynamics switching``) turned out to carry almost
none of its switching speed in the BOLD beyond static FC (``dynamics_reach.py``): no model,
not even features that know the mechanism, reads it there. So it cannot tell whether RWMOE +
SSM *could* read FC dynamics. This toy can: it is not a model of the brain (no HRF, no
ageing), only a cohort of ROI series whose target is the switching speed and whose static
statistics do not depend on it.

Each subject's ROIs form two networks. Every ROI is an AR(1) series whose white innovations
share half their variance with the other ROIs of its network (*segregated* state) or with
every ROI (*integrated* state). A symmetric two-state Markov chain switches between them with
a mean dwell time (in volumes) that is the subject's target, log-uniform over ``--dwell``.
The innovations are white and of unit variance in both states, so every ROI is exactly the
same AR(1) process whatever the state: its autocorrelations do not depend on the speed. Each
state is visited half the time on average, so FC carries the speed only through how much a
run's occupancy can stray from one half; windowed correlation between the networks shows it.

    python benchmarks/dynamics_capability.py OUT [--subjects 300 --rois 16 --volumes 300]
    python -m brainlit experiment --root OUT --data.layout arrays --configs CONFIGS --out RUN

The cohort is written as one ``[T, R]`` ``.npy`` file per subject with ``participants.tsv``
(target ``log_dwell``) and ``simulation/latents.tsv`` (``dynamics_log_mean_dwell`` and the
run's ``state_switches``, for the oracle rows). The script also prints a closed-form check on
the cohort: ridge on static FC and autocorrelations against ridge on the autocorrelation of
the windowed between-network correlation, which knows the toy's mechanism.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from brainlit.baselines.fc_ridge import fc_features
from brainlit.baselines.features import lag_features
from brainlit.data.simulate.probe import switching_features


def ar1_filter(innovations: np.ndarray, phi: float) -> np.ndarray:
    """Unit-variance AR(1) series driven by unit-variance white ``innovations`` (last axis: time)."""
    out = np.empty_like(innovations)
    out[..., 0] = innovations[..., 0]
    scale = np.sqrt(1 - phi**2)
    for t in range(1, innovations.shape[-1]):
        out[..., t] = phi * out[..., t - 1] + scale * innovations[..., t]
    return out


def states(rng: np.random.Generator, dwell: float, n_volumes: int) -> np.ndarray:
    """A symmetric two-state Markov chain ``[T]`` of 0/1 with mean dwell ``dwell`` volumes."""
    switch = rng.random(n_volumes) < 1.0 / dwell
    switch[0] = rng.random() < 0.5  # the first state is a fair coin
    return np.cumsum(switch) % 2


def subject_run(rng: np.random.Generator, dwell: float, n_rois: int, n_volumes: int,
                shared: float = 0.5, phi: float = 0.8, noise: float = 0.3) -> tuple[np.ndarray, int]:
    """One run ``[R, T]``: AR(1) ROIs whose innovations share a ``shared`` part with their own
    network (segregated state) or with every ROI (integrated state), plus white noise; and
    the number of state changes in it."""
    network = np.arange(n_rois) % 2
    own, by_network, common = (rng.standard_normal(shape) for shape in
                               ((n_rois, n_volumes), (2, n_volumes), (n_volumes,)))
    integrated = states(rng, dwell, n_volumes).astype(bool)
    shared_part = np.where(integrated, common, by_network[network])
    innovations = np.sqrt(1 - shared) * own + np.sqrt(shared) * shared_part
    run = ar1_filter(innovations, phi) + noise * rng.standard_normal((n_rois, n_volumes))
    return run, int(np.count_nonzero(np.diff(integrated)))


def simulate(n_subjects: int, n_rois: int, n_volumes: int, dwell: tuple[float, float],
             seed: int) -> tuple[list[np.ndarray], pd.DataFrame]:
    """Runs ``[R, T]`` and their true latents: ``dynamics_log_mean_dwell`` and the runs'
    ``state_switches`` ``[N]``."""
    rng = np.random.default_rng(seed)
    log_dwell = rng.uniform(np.log(dwell[0]), np.log(dwell[1]), n_subjects)
    runs, switches = zip(*(subject_run(rng, float(np.exp(d)), n_rois, n_volumes) for d in log_dwell), strict=True)
    return list(runs), pd.DataFrame({"dynamics_log_mean_dwell": log_dwell, "state_switches": switches})


def write_cohort(out: Path, runs: list[np.ndarray], latents: pd.DataFrame) -> None:
    """``sub-XXXX.npy`` (``[T, R]``), ``participants.tsv`` and ``simulation/latents.tsv``."""
    (out / "simulation").mkdir(parents=True, exist_ok=True)
    ids = [f"sub-{i + 1:04d}" for i in range(len(runs))]
    for sid, run in zip(ids, runs, strict=True):
        np.save(out / f"{sid}.npy", run.T.astype(np.float32))
        (out / f"{sid}.json").write_text(json.dumps({"RepetitionTime": 2.0}))
    pd.DataFrame({"participant_id": ids, "log_dwell": latents["dynamics_log_mean_dwell"]}).to_csv(
        out / "participants.tsv", sep="\t", index=False)
    latents.assign(participant_id=ids)[["participant_id", *latents.columns]].to_csv(
        out / "simulation/latents.tsv", sep="\t", index=False)


def closed_form_check(runs: list[np.ndarray], log_dwell: np.ndarray, seed: int = 0) -> dict[str, float]:
    """5-fold MAE of the log dwell: training mean, ridge on static FC + autocorrelations, and
    ridge on the windowed between-minus-within-network correlation's autocorrelations and sd,
    which knows the toy's mechanism."""
    modules = np.arange(len(runs[0])) % 2
    features = {"static FC + autocorrelations": np.hstack([fc_features(runs), lag_features(runs)]),
                "the mechanism's probe": np.stack([switching_features(r, modules) for r in runs])}
    cv = KFold(5, shuffle=True, random_state=seed)
    result = {"training mean": float(np.abs(log_dwell - log_dwell.mean()).mean())}
    for name, x in features.items():
        ridge = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 5, 30)))
        result[name] = float(np.abs(cross_val_predict(ridge, x, log_dwell, cv=cv) - log_dwell).mean())
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--subjects", type=int, default=300)
    parser.add_argument("--rois", type=int, default=16)
    parser.add_argument("--volumes", type=int, default=300)
    parser.add_argument("--dwell", type=float, nargs=2, default=(3.0, 40.0), metavar=("MIN", "MAX"),
                        help="range of the mean dwell times, in volumes (log-uniform)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    runs, latents = simulate(args.subjects, args.rois, args.volumes, tuple(args.dwell), args.seed)
    write_cohort(args.out, runs, latents)
    for name, mae in closed_form_check(runs, latents["dynamics_log_mean_dwell"].to_numpy()).items():
        print(f"log dwell MAE, {name}: {mae:.3f}")


if __name__ == "__main__":
    main()

"""From coupling to ROI BOLD: integration, HRF, local and physiological noise (steps 1-4)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from nilearn.glm.first_level import glover_hrf
from scipy.signal import fftconvolve

from brainlit.data.simulate.atlas import network_modules
from brainlit.data.simulate.model import GenerativeModel
from brainlit.data.simulate.network import (
    mean_dwell_s,
    network_steps,
    state_gains,
    state_sequence,
    templates,
)
from brainlit.data.simulate.phenotypes import simulate_phenotypes

CHUNK = 32  # subjects integrated together


@dataclass(frozen=True)
class SimulatedCohort:
    """ROI-level output of the generative core.

    Attributes:
        roi_timeseries: [N, R, T] float32 BOLD in percent signal change.
        phenotypes: One row per subject: participant_id, age, sex, fluid_intelligence.
        modules: [R] network of each region.
        physio: [N, T] global physiological fluctuation as loaded on a region (percent).
        t_r: Repetition time (s).
        latents: One row per subject: participant_id, the latent ``integrity`` and, with
            dynamics, ``dynamics_log_mean_dwell`` (log of the mean dwell time in s) and
            ``state_switches`` (state changes during the scan). Never phenotypes.
    """

    roi_timeseries: np.ndarray
    phenotypes: pd.DataFrame
    modules: np.ndarray
    physio: np.ndarray
    t_r: float
    latents: pd.DataFrame


def _integrate_bold(steps, sequences, rngs, n_volumes: int, per_tr: int, dt: float, model) -> np.ndarray:
    """Euler-Maruyama under each subject's state ``sequences`` ``[n, n_steps]`` (None: state 0),
    HRF convolution and sampling at TR: [n, R+1, T], unit sd per subject."""
    burn = int(np.ceil(model.burn_in_s / dt))
    n_steps = burn + n_volumes * per_tr
    states = np.stack([rng.standard_normal((n_steps, steps.shape[-1])) for rng in rngs], axis=1)
    states *= np.sqrt(dt)  # [n_steps, n, R+1]: the noise, overwritten in place by the states
    x, subjects = np.zeros(states.shape[1:]), np.arange(len(rngs))
    for k in range(n_steps):
        step = steps[:, 0] if sequences is None else steps[subjects, sequences[:, k]]
        x = np.einsum("nij,nj->ni", step, x) + states[k]
        states[k] = x
    hrf = glover_hrf(dt, oversampling=1, time_length=32.0)
    bold = fftconvolve(states, hrf[:, None, None], axes=0)[burn:n_steps:per_tr].transpose(1, 2, 0)
    bold[:, :-1] /= bold[:, :-1].std(axis=(1, 2), keepdims=True)  # network: one sd per subject
    bold[:, -1] /= bold[:, -1].std(axis=1, keepdims=True)
    return bold


def _local_noise(rng: np.random.Generator, n_rois: int, n_volumes: int, t_r: float) -> np.ndarray:
    """Non-propagating regional noise [R, T]: white noise at TR smoothed by the HRF, unit sd."""
    hrf = glover_hrf(t_r, oversampling=1, time_length=32.0)
    white = rng.standard_normal((n_rois, n_volumes + len(hrf)))
    smooth = fftconvolve(white, hrf[None], axes=1)[:, len(hrf) : len(hrf) + n_volumes]
    return smooth / smooth.std(axis=1, keepdims=True)


def _state_sequences(dwell, seed: int, idx, n_states: int, n_steps: int, dt: float) -> np.ndarray:
    """``[n, n_steps]`` coupling states of subjects ``idx``; their own streams ``(seed, 6, i)``."""
    return np.stack([state_sequence(np.random.default_rng([seed, 6, i]), n_states, dwell[i], n_steps, dt)
                     for i in idx])


def simulate_roi_timeseries(
    n_subjects: int = 200,
    n_rois: int = 32,
    n_volumes: int = 150,
    t_r: float = 2.0,
    seed: int = 0,
    n_modules: int = 4,
    model: GenerativeModel = GenerativeModel(),
    dwell: np.ndarray | None = None,
) -> SimulatedCohort:
    """The generative core (steps 1-4 of the package docstring), without images.

    Subject i depends only on (seed, i), not on ``n_subjects``: cohorts of one seed nest. The
    dynamics draw from streams of their own, so the noise of a subject is the same with and
    without them.

    Args:
        dwell: With dynamics, each subject's mean dwell time (s) ``[n_subjects]`` instead of
            the model's draw (to hold everything else fixed, as the tests do).
    """
    phenotypes, integrity = simulate_phenotypes(n_subjects, seed)
    modules = network_modules(n_rois, n_modules)
    within, between, physio_loading = templates(modules, model)
    gains = state_gains(model)
    per_tr = max(1, round(t_r / model.dt_s))
    dt = t_r / per_tr
    burn = int(np.ceil(model.burn_in_s / dt))
    age_frac = (phenotypes["age"].to_numpy() - 18.0) / 70.0
    latents = pd.DataFrame({"participant_id": phenotypes["participant_id"], "integrity": integrity})
    sequences = None  # [N, n_steps] coupling state at each integration step
    if model.dynamics != "none":
        if dwell is None:
            dwell = mean_dwell_s(age_frac, integrity, [np.random.default_rng([seed, 5, i]) for i in range(n_subjects)], model)
        sequences = _state_sequences(np.asarray(dwell, dtype=float), seed, range(n_subjects), len(gains),
                                     burn + n_volumes * per_tr, dt)
        latents["dynamics_log_mean_dwell"] = np.log(dwell)
        latents["state_switches"] = (np.diff(sequences[:, burn:], axis=1) != 0).sum(1)
    bold = np.empty((n_subjects, n_rois, n_volumes), dtype=np.float32)
    physio = np.empty((n_subjects, n_volumes), dtype=np.float32)
    for start in range(0, n_subjects, CHUNK):
        idx = np.arange(start, min(start + CHUNK, n_subjects))
        rngs = [np.random.default_rng([seed, 1, i]) for i in idx]
        steps = network_steps(age_frac[idx], integrity[idx], within, between, gains, rngs, dt, model)
        chunk = None if sequences is None else sequences[idx]
        signals = _integrate_bold(steps, chunk, rngs, n_volumes, per_tr, dt, model)  # [n, R+1, T]
        for j, (i, rng) in enumerate(zip(idx, rngs, strict=True)):
            a = age_frac[i]
            local_sd = model.local_noise * (1 + model.noise_age_slope * a)
            vascular = model.vascular_age_slope * a + model.vascular_sd * rng.normal()
            gain = model.bold_pct * np.exp(vascular)
            physio_sd = model.physio_amplitude * np.exp(0.5 * rng.normal())
            physio[i] = gain * physio_sd * signals[j, -1]
            regional = signals[j, :-1] + local_sd * _local_noise(rng, n_rois, n_volumes, t_r)
            bold[i] = gain * regional + physio_loading[:, None] * physio[i]
    return SimulatedCohort(bold, phenotypes, modules, physio, t_r, latents)

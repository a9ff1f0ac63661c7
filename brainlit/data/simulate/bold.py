"""From coupling to ROI BOLD: integration, HRF, local and physiological noise (steps 1-4)."""

from __future__ import annotations

from collections.abc import Sequence
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
from brainlit.data.simulate.phenotypes import subject_phenotypes
from brainlit.data.simulate.visible import shared_fluctuation

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
        states: With dynamics, the state (0 or 1) at each volume's acquisition ``[N, T]``
            int8: with ``switching`` 0 is the integrated one, with ``visible`` each joins its
            own network pairs; None without.
    """

    roi_timeseries: np.ndarray
    phenotypes: pd.DataFrame
    modules: np.ndarray
    physio: np.ndarray
    t_r: float
    latents: pd.DataFrame
    states: np.ndarray | None = None


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


def hrf_noise(rng: np.random.Generator, n_series: int, n_volumes: int, t_r: float) -> np.ndarray:
    """Slow noise ``[n_series, T]``: white noise at TR smoothed by the HRF, unit sd (the
    non-propagating regional noise of step 2)."""
    hrf = glover_hrf(t_r, oversampling=1, time_length=32.0)
    white = rng.standard_normal((n_series, n_volumes + len(hrf)))
    smooth = fftconvolve(white, hrf[None], axes=1)[:, len(hrf) : len(hrf) + n_volumes]
    return smooth / smooth.std(axis=1, keepdims=True)


def _state_sequences(dwell, seed: int, subjects, n_states: int, n_steps: int, dt: float) -> np.ndarray:
    """``[n, n_steps]`` coupling states of ``subjects``; their own streams ``(seed, 6, i)``."""
    return np.stack([state_sequence(np.random.default_rng([seed, 6, i]), n_states, d, n_steps, dt)
                     for i, d in zip(subjects, dwell, strict=True)])


@dataclass(frozen=True)
class _Timing:
    """Integration steps of a run: ``per_tr`` steps of ``dt`` s per volume after ``burn``."""

    dt: float
    per_tr: int
    burn: int
    n_volumes: int

    @classmethod
    def of(cls, t_r: float, n_volumes: int, model: GenerativeModel) -> _Timing:
        per_tr = max(1, round(t_r / model.dt_s))
        dt = t_r / per_tr
        return cls(dt, per_tr, int(np.ceil(model.burn_in_s / dt)), n_volumes)

    @property
    def n_steps(self) -> int:
        return self.burn + self.n_volumes * self.per_tr

    @property
    def volumes(self) -> slice:
        return slice(self.burn, self.n_steps, self.per_tr)


def _dynamics(subjects, age_frac, integrity, dwell, seed, n_states, timing: _Timing, model):
    """State sequences ``[n, n_steps]`` and the dynamic latents (None, {} without dynamics)."""
    if model.dynamics == "none":
        return None, {}
    if dwell is None:
        dwell = mean_dwell_s(age_frac, integrity, [np.random.default_rng([seed, 5, i]) for i in subjects], model)
    dwell = np.asarray(dwell, dtype=float)
    sequences = _state_sequences(dwell, seed, subjects, n_states, timing.n_steps, timing.dt)
    switches = (np.diff(sequences[:, timing.burn :], axis=1) != 0).sum(1)
    return sequences, {"dynamics_log_mean_dwell": np.log(dwell), "state_switches": switches}


def _regional_bold(i, network, rng, age_frac, sequence, modules, seed, t_r, timing, model):
    """One subject's ROI BOLD ``[R, T]`` (percent) and physiological fluctuation ``[T]`` from
    its network signals ``[R+1, T]``: local noise, visible dynamics, gains (steps 2-4)."""
    n_rois = len(modules)
    local_sd = model.local_noise * (1 + model.noise_age_slope * age_frac)
    vascular = model.vascular_age_slope * age_frac + model.vascular_sd * rng.normal()
    gain = model.bold_pct * np.exp(vascular)
    physio_sd = model.physio_amplitude * np.exp(0.5 * rng.normal())
    physio = gain * physio_sd * network[-1]
    regional = network[:-1] + local_sd * hrf_noise(rng, n_rois, timing.n_volumes, t_r)
    if model.dynamics == "visible":  # its own stream: everything else is as without it
        regional += model.visible_amplitude * shared_fluctuation(
            np.random.default_rng([seed, 9, i]), sequence, modules, timing.dt, timing.volumes)
    return gain * regional, physio


def simulate_subjects(
    subjects: Sequence[int],
    n_rois: int = 32,
    n_volumes: int = 150,
    t_r: float = 2.0,
    seed: int = 0,
    n_modules: int = 4,
    model: GenerativeModel = GenerativeModel(),
    dwell: np.ndarray | None = None,
) -> SimulatedCohort:
    """The generative core (steps 1-4 of the package docstring) for the subjects numbered
    ``subjects`` (0-based) of the cohort ``seed``, without images.

    Subject i depends only on (seed, i): any subset of a cohort holds the cohort's own series,
    and cohorts of one seed nest. The dynamics draw from streams of their own, so the noise of
    a subject is the same with and without them.

    Args:
        dwell: With dynamics, each subject's mean dwell time (s) ``[len(subjects)]`` instead
            of the model's draw (to hold everything else fixed, as the tests do).
    """
    subjects = np.asarray(subjects, dtype=np.int64)
    phenotypes, integrity = subject_phenotypes(subjects, seed)
    modules = network_modules(n_rois, n_modules)
    within, between, physio_loading = templates(modules, model)
    gains = state_gains(model)
    timing = _Timing.of(t_r, n_volumes, model)
    age_frac = (phenotypes["age"].to_numpy() - 18.0) / 70.0
    n_states = 2 if model.dynamics == "visible" else len(gains)
    sequences, dynamic = _dynamics(subjects, age_frac, integrity, dwell, seed, n_states, timing, model)
    latents = pd.DataFrame({"participant_id": phenotypes["participant_id"], "integrity": integrity, **dynamic})
    bold = np.empty((len(subjects), n_rois, n_volumes), dtype=np.float32)
    physio = np.empty((len(subjects), n_volumes), dtype=np.float32)
    for start in range(0, len(subjects), CHUNK):
        chunk = np.arange(start, min(start + CHUNK, len(subjects)))
        rngs = [np.random.default_rng([seed, 1, i]) for i in subjects[chunk]]
        steps = network_steps(age_frac[chunk], integrity[chunk], within, between, gains, rngs, timing.dt, model)
        coupling = None if model.dynamics != "switching" else sequences[chunk]
        signals = _integrate_bold(steps, coupling, rngs, n_volumes, timing.per_tr, timing.dt, model)
        for j, (k, rng) in enumerate(zip(chunk, rngs, strict=True)):
            sequence = None if sequences is None else sequences[k]
            regional, physio[k] = _regional_bold(subjects[k], signals[j], rng, age_frac[k], sequence,
                                                 modules, seed, t_r, timing, model)
            bold[k] = regional + physio_loading[:, None] * physio[k]
    states = None if sequences is None else sequences[:, timing.volumes].astype(np.int8)
    return SimulatedCohort(bold, phenotypes, modules, physio, t_r, latents, states)


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
    """The generative core for subjects 0 .. ``n_subjects - 1``: see :func:`simulate_subjects`.

    Args:
        dwell: With dynamics, each subject's mean dwell time (s) ``[n_subjects]`` instead of
            the model's draw (to hold everything else fixed, as the tests do).
    """
    return simulate_subjects(range(n_subjects), n_rois, n_volumes, t_r, seed, n_modules, model, dwell)

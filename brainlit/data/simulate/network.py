"""Network coupling of each subject, static or switching: step 1 of the generative model.

**Static dedifferentiation.** A fixed structural template (dense within networks, sparse
between them) scaled by the subject's coupling (within-network falls and between-network rises
with age; within-network also rises with the latent integrity), times a lognormal idiosyncratic
factor per edge.

**Dynamics** (``GenerativeModel.dynamics = "switching"``), on top of it. The coupling switches
between two configurations, integrated (between-network coupling ``1 + c`` times the static one,
within-network ``1 - c / 2``) and segregated (``1 - c`` and ``1 + c / 2``), as resting-state FC
alternates between integration and segregation (Shine et al. 2016, Neuron 92:544). The states
form a symmetric Markov chain: both are visited equally often by every subject (fractional
occupancy 1/2), so the time-averaged coupling is the static one whatever the speed. Only the
*speed* carries the phenotype: each subject's mean dwell time is lognormal,

    log(dwell) = log(dwell_s) + dwell_age_slope * (a - 1/2) + dwell_integrity_effect * z + dwell_sd * e

so reconfiguration slows with age (Battaglia et al. 2020, NeuroImage 222:117156) and is faster
with the integrity that also drives fluid intelligence (Cabral et al. 2017, Sci Rep 7:5135).
Markov switching between a few coupling states is the generative reading of the classical
dynamic-FC pipeline (Allen et al. 2014: windowed FC, k-means states, dwell times). The default
median of 30 s (about 9-95 s over the 5-95 % range; log dwell correlates 0.65 with age and
-0.56 with integrity) sits between the HRF's blur (about 5 s) and the positive control's 600-s
runs (300 volumes at TR 2 s), so that a run holds several dwells of nearly every subject: a
faster switch is blurred away, a slower one leaves a subject in one state for the whole scan.
How much of the speed a scan shows is measured by ``benchmarks/dynamics_probe.py``.
"""

from __future__ import annotations

import numpy as np

from brainlit.data.simulate.model import TEMPLATE_SEED, GenerativeModel


def templates(modules: np.ndarray, model: GenerativeModel) -> tuple[np.ndarray, ...]:
    """Within- and between-network structural templates [R, R] and physiological loadings [R]."""
    rng = np.random.default_rng(TEMPLATE_SEED)
    n, half = len(modules), np.arange(len(modules) // 2)
    same = modules[:, None] == modules[None]
    present = rng.random((n, n)) < np.where(same, 0.7, 0.2)
    edges = np.triu(rng.uniform(0.4, 1.0, (n, n)) * present, 1)
    edges = edges + edges.T
    edges[half, half + n // 2] = edges[half + n // 2, half] = 1.0  # homotopic pairs
    mid_age = edges * (1 + np.where(same, model.within_age_slope, model.between_age_slope) / 2)
    scale = model.coupling / np.abs(np.linalg.eigvalsh(mid_age)).max()
    return edges * same * scale, edges * ~same * scale, rng.uniform(0.5, 1.0, n)


def state_gains(model: GenerativeModel) -> np.ndarray:
    """``[K, 2]`` within- and between-network coupling gains of each state (``[[1, 1]]``
    unless the coupling switches). Integrated: between ``1 + c``, within ``1 - c / 2``;
    segregated: between ``1 - c``, within ``1 + c / 2`` (``c = state_contrast``). Each
    column's mean is 1."""
    if model.dynamics != "switching":
        return np.ones((1, 2))
    c = model.state_contrast
    return np.array([[1 - c / 2, 1 + c], [1 + c / 2, 1 - c]])


def network_steps(age_frac, integrity, within, between, gains, rngs, dt: float,
                  model: GenerativeModel) -> np.ndarray:
    """Euler step matrices ``[n, K, R+1, R+1]``, one per subject and coupling state ``gains``
    ``[K, 2]`` (the last node is the physiological fluctuation). One stability scale per subject,
    from its least stable state, keeps the states' mean the static coupling."""
    n_rois, n_states = len(within), len(gains)
    steps = np.zeros((len(rngs), n_states, n_rois + 1, n_rois + 1))
    for i, rng in enumerate(rngs):
        c_in = 1 + model.within_age_slope * age_frac[i] + model.integrity_effect * integrity[i]
        c_out = 1 + model.between_age_slope * age_frac[i]
        idiosyncratic = np.triu(rng.standard_normal((n_rois, n_rois)), 1)
        edge_factor = np.exp(model.edge_sd * (idiosyncratic + idiosyncratic.T))
        coupling = np.stack([(max(c_in, 0.05) * within * g_in + c_out * between * g_out) * edge_factor
                             for g_in, g_out in gains])  # g * tau * W per state
        radius = max(np.abs(np.linalg.eigvalsh(c)).max() for c in coupling)
        coupling *= min(1.0, 0.95 / radius)  # stable in every state
        steps[i, :, :n_rois, :n_rois] = dt / model.tau_s * coupling
    leak = np.r_[np.full(n_rois, dt / model.tau_s), dt / model.physio_tau_s]
    return steps + np.diag(1 - leak)


def mean_dwell_s(age_frac: np.ndarray, integrity: np.ndarray, rngs, model: GenerativeModel) -> np.ndarray:
    """Each subject's mean dwell time in a state (s) ``[n]`` (module docstring)."""
    idiosyncratic = np.array([rng.standard_normal() for rng in rngs])
    log_dwell = (np.log(model.dwell_s) + model.dwell_age_slope * (age_frac - 0.5)
                 + model.dwell_integrity_effect * integrity + model.dwell_sd * idiosyncratic)
    return np.exp(log_dwell)


def state_sequence(rng: np.random.Generator, n_states: int, dwell_s: float, n_steps: int,
                   dt: float) -> np.ndarray:
    """The coupling state at each integration step ``[n_steps]``: exponential dwells of mean
    ``dwell_s``, each followed by a jump to another state drawn uniformly."""
    sequence = np.empty(n_steps, dtype=np.int64)
    state, start = int(rng.integers(n_states)), 0
    while start < n_steps:
        stop = start + max(1, int(round(rng.exponential(dwell_s) / dt)))
        sequence[start:stop] = state
        state = (state + int(rng.integers(1, n_states))) % n_states
        start = stop
    return sequence

"""The ``visible`` FC dynamics: states that change which networks share a fluctuation.

With ``GenerativeModel.dynamics = "visible"`` the coupling stays static (the stationary ageing
of :mod:`brainlit.data.simulate.network`) and a two-state chain gates a shared fluctuation
added to every region's BOLD. In state 0 networks (0, 1), (2, 3) ... each share one
fluctuation, in state 1 networks (1, 2), (3, 4) ... and the last with the first
(:func:`network_groups`); regions of one network share it in both states. Windowed FC between
the networks a state joins rises while it lasts, so a scan shows when the states change, unlike
the ``switching`` mechanism, whose coupling states are blurred by the neural integration and
the HRF.

- The fluctuations are white drives gated at the integration step and convolved with the HRF,
  so a change of state takes the HRF's few seconds to show. Each region always loads on
  exactly one drive of unit variance, so its own series (variance, autocorrelation) is the
  same stationary process in both states and at every switching speed.
- Both states join the same number of network pairs, so the mean between-network FC, which
  the static ageing raises, does not depend on the state or on how long a run stays in one.
  (A first version gated a global fluctuation against network-specific ones, integration
  against segregation as in the capability toy; the run-to-run share of the integrated state
  then moved the mean between-network FC and cost the static age read-out 0.4-0.7 years more
  MAE at 200 subjects: ``docs/research/simulator.md``.)
- The chain is the symmetric one of ``switching`` (same dwell times, same streams), so both
  states are visited half the time on average and the time-averaged FC does not depend on the
  speed; only the speed carries the phenotypes (``mean_dwell_s``).

Evidence. Windowed FC of resting-state scans recurs in a few states that differ in which
networks are coupled (Allen et al. 2014, Cereb Cortex 24:663) and reconfigures between more
and less integrated configurations (Shine et al. 2016, Neuron 92:544; Zalesky et al. 2014,
PNAS 111:10341); brief co-fluctuations of networks are visible in single frames of the BOLD
itself (co-activation patterns: Liu & Duyn 2013, PNAS 110:4392). That the states are two,
switch abruptly and are this visible is a modelling choice: much apparent dynamic FC in real
scans is sampling variability of a stationary process (Laumann et al. 2017, Cereb Cortex
27:4719; Hindriks et al. 2016, NeuroImage 127:242). The default amplitude (``visible_amplitude``
0.6 of the network BOLD's sd) makes windowed FC track the state far better than in
``switching`` while the static ageing of FC stays readable; the measurements are in
``docs/research/simulator.md``.
"""

from __future__ import annotations

import numpy as np
from nilearn.glm.first_level import glover_hrf
from scipy.signal import fftconvolve


def network_groups(n_networks: int) -> np.ndarray:
    """``[2, K]`` the group of each network in each state: state 0 joins networks (0, 1),
    (2, 3) ..., state 1 joins (1, 2), (3, 4) ... and the last with the first (with an odd K
    one network stays alone). Every state joins the same number of network pairs."""
    if n_networks < 3:
        raise ValueError(f"dynamics 'visible' needs at least 3 networks, got n_modules={n_networks}")
    networks = np.arange(n_networks)
    return np.stack([networks // 2, (networks + 1) % n_networks // 2])


def shared_fluctuation(rng: np.random.Generator, sequence: np.ndarray, modules: np.ndarray,
                       dt: float, volumes: slice) -> np.ndarray:
    """The state-gated shared fluctuation of every region ``[R, T]``, unit variance.

    Args:
        rng: The subject's stream for the fluctuation's drives.
        sequence: State (0 or 1) at each integration step ``[n_steps]``.
        modules: Network of each region ``[R]``.
        dt: Integration step (s).
        volumes: The steps sampled as volumes (after the burn-in, one every TR).
    """
    groups = network_groups(int(modules.max()) + 1)  # [2, K]
    n_groups = int(groups.max()) + 1
    drives = rng.standard_normal((2, n_groups, len(sequence)))  # [state, group, step]
    drives *= (sequence[None, None] == np.arange(2)[:, None, None])  # only the state's drives
    hrf = glover_hrf(dt, oversampling=1, time_length=32.0)
    bold = fftconvolve(drives, hrf[None, None], axes=2)[:, :, : len(sequence)][:, :, volumes]
    bold /= np.sqrt(np.sum(hrf**2))  # one drive of unit variance at every step: unit variance
    return bold[0, groups[0, modules]] + bold[1, groups[1, modules]]  # [R, T]

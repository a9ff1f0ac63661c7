"""The generative model's constants: one frozen dataclass, every field of which keys a cohort."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

SIMULATOR_VERSION = 2  # 2: optional FC dynamics (``dynamics: none`` is bit-identical to 1)
TEMPLATE_SEED = 2508
DYNAMICS = ("none", "switching", "visible")  # the "species" connectome and atlas: the same for every cohort seed


@dataclass(frozen=True)
class GenerativeModel:
    """Constants of the generative model (module docstring); all of them key the written cohort.

    Args:
        tau_s: Neural leak time constant (s).
        dt_s: Target neural integration step (s); the step used divides the TR exactly.
        coupling: Spectral radius of ``g * tau * W`` for the mean-age template (< 1: stable).
        within_age_slope: Relative change of within-network coupling from age 18 to 88.
        between_age_slope: Relative change of between-network coupling from age 18 to 88.
        integrity_effect: Relative within-network coupling change per sd of latent integrity.
        edge_sd: Lognormal sd of each subject's idiosyncratic per-edge coupling.
        local_noise: Sd of the non-propagating regional noise relative to the network signal.
        noise_age_slope: Relative rise of the local noise from age 18 to 88.
        physio_tau_s: Time constant of the global physiological fluctuation (s).
        physio_amplitude: Median sd of the physiological relative to the network signal.
        vascular_age_slope: Log change of the vascular gain from age 18 to 88.
        vascular_sd: Lognormal sd of the per-subject vascular gain.
        bold_pct: Network BOLD sd in percent signal change at vascular gain 1.
        thermal_noise_pct: Voxel thermal noise sd, percent of baseline.
        drift_pct: Scanner drift, sd of the Legendre coefficients in percent.
        scanner_gain_sd: Lognormal sd of the per-subject scanner intensity gain.
        baseline_intensity: Median voxel baseline intensity (scanner units).
        burn_in_s: Simulated time discarded before the first volume (s).
        dynamics: ``none`` (stationary coupling); ``switching``: the coupling switches
            between an integrated and a segregated configuration (a Markov chain) on top of
            the static dedifferentiation (:mod:`brainlit.data.simulate.network`); ``visible``:
            the states change which networks share a fluctuation in the BOLD, so a scan shows
            them (:mod:`brainlit.data.simulate.visible`).
        state_contrast: With ``switching``, between-network coupling is ``1 +- state_contrast`` times the static one
            in the integrated / segregated state, within-network ``1 -+ state_contrast / 2``;
            both states are visited equally often, so the average is the static coupling.
        dwell_s: Median mean dwell time in a state (s) at mid age and mean integrity.
        dwell_age_slope: Log change of the mean dwell time from age 18 to 88 (slower with age).
        dwell_integrity_effect: Log change of the mean dwell time per sd of latent integrity.
        dwell_sd: Lognormal sd of the idiosyncratic part of each subject's mean dwell time.
        visible_amplitude: With ``visible``, sd of the state-gated shared fluctuation relative
            to the network BOLD.
    """

    tau_s: float = 1.0
    dt_s: float = 0.1
    coupling: float = 0.8
    within_age_slope: float = -0.4
    between_age_slope: float = 1.0
    integrity_effect: float = 0.12
    edge_sd: float = 0.25
    local_noise: float = 0.4
    noise_age_slope: float = 0.6
    physio_tau_s: float = 4.0
    physio_amplitude: float = 0.5
    vascular_age_slope: float = -0.3
    vascular_sd: float = 0.35
    bold_pct: float = 0.8
    thermal_noise_pct: float = 1.0
    drift_pct: float = 0.5
    scanner_gain_sd: float = 0.3
    baseline_intensity: float = 1000.0
    burn_in_s: float = 40.0
    dynamics: Literal["none", "switching", "visible"] = "none"
    state_contrast: float = 0.9
    dwell_s: float = 30.0
    dwell_age_slope: float = 1.6
    dwell_integrity_effect: float = -0.35
    dwell_sd: float = 0.4
    visible_amplitude: float = 0.6

    def __post_init__(self) -> None:
        if self.dynamics not in DYNAMICS:
            raise ValueError(f"dynamics must be one of {', '.join(DYNAMICS)}, got {self.dynamics!r}")

    def key(self) -> dict:
        """The fields that key a written cohort: ``visible_amplitude`` only with ``visible``,
        so that cohorts written before it existed keep their key."""
        fields = asdict(self)
        if self.dynamics != "visible":
            del fields["visible_amplitude"]
        return fields

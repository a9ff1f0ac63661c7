"""Simulated resting-state fMRI cohorts: the embedded demo data, dynamic-FC positive controls,
multi-site cohorts and a Cam-CAN-shaped test tree. One module per stage: ``phenotypes`` ->
``network`` (coupling, static or switching) -> ``bold`` (with ``visible`` dynamics) -> ``sites``
(scanner effects) -> ``scans`` -> ``images`` -> ``cohort`` (the BIDS or arrays writer) or
``camcan``.

Generative model of one subject (``a = (age - 18) / 70`` in [0, 1]):

1. **Neural activity** on a modular network of R regions (``n_modules`` networks; left/right
   homotopic pairs share a network and a strong edge): a linear stochastic (multivariate
   Ornstein-Uhlenbeck) model integrated by Euler-Maruyama at ``dt`` of about 0.1 s::

       x[t + dt] = x[t] + dt * (-x[t] / tau + g * W x[t]) + sqrt(dt) * noise[t]

   ``W = (c_in * W_in + c_out * W_out) * exp(edge_sd * Z)``: a fixed structural template (dense
   within networks, sparse between them) scaled by the subject's coupling, times a lognormal
   idiosyncratic factor per edge. Ageing is *dedifferentiation*: within-network coupling
   ``c_in = 1 + within_age_slope * a + integrity_effect * z`` falls and between-network coupling
   ``c_out = 1 + between_age_slope * a`` rises. ``z ~ N(0, 1)`` is a latent network integrity,
   independent of age, that also drives fluid intelligence. With ``dynamics="switching"`` the
   within-network coupling also switches between network configurations, with a switching
   *speed* that slows with age and rises with integrity, while every subject's occupancy and
   time-averaged coupling stay the same (:mod:`brainlit.data.simulate.network`).
2. **Local noise** that does not propagate through the network (per region, HRF-smoothed), of
   sd ``local_noise * (1 + noise_age_slope * a)``: neural noise grows with age and dilutes FC.
3. **Global physiological fluctuation** (respiration/CO2): a slow uncoupled OU node loaded on
   every region with fixed loadings and a random per-subject amplitude.
4. **BOLD**: network and physiological signals are convolved with the canonical Glover HRF
   (``nilearn.glm.first_level.glover_hrf``) at ``dt`` and sampled every TR after a burn-in. The
   network BOLD (scaled to unit sd per subject) plus the local noise is scaled to percent signal
   change by a per-subject vascular gain (lognormal, falling with age like resting-state
   fluctuation amplitude). ``simulate_roi_timeseries`` stops here. With ``dynamics="visible"``
   a state-gated fluctuation shared by the networks a state joins is added before the gain
   (:mod:`brainlit.data.simulate.visible`); with sites, each site's BOLD gain, noise, shared
   signal and head motion follow (:mod:`brainlit.data.simulate.sites`).
5. **Voxels** of region r: ``S0_v * gain * (1 + (w_v * bold_r(t) + drift_v(t) + e_v(t)) / 100)``
   with voxel weights ``w_v ~ U(0.5, 1.5)``, thermal noise ``e_v``, a scanner drift (Legendre
   orders 1-2, subject coefficients, voxel factors) and a random per-subject scanner gain,
   rounded to int16 like scanner output. The random gains leave raw ROI variance nearly
   uninformative of age: age lives in the correlation structure.

Phenotypes: age uniform 18-88 (integer years), sex M/F at random (no effect), and a Cattell-like
fluid intelligence score (integer 0-46, mean about 32, sd 6.5) whose z-score is
``-0.65 * age_z + sqrt(1 - 0.65^2) * (0.55 * z + sqrt(1 - 0.55^2) * eps)``: the age correlation
of about -0.65 seen in Cam-CAN plus a part carried by network integrity.

Demo defaults: 32 regions (4 networks), 150 volumes at TR 2 s, a 16 x 22 x 16 grid of 8 mm voxels
that spans MNI space (coarse on purpose, so that glass-brain maps of the regions look right and
200 subjects take about 150 MB). Effect sizes are set for realism only; on the 200-subject demo,
5-fold kernel ridge on FC of the atlas means reaches age r of about 0.7 (mean predictor MAE 17
years, kernel ridge 11-12) and fluid intelligence r of about 0.4, while no single region's
variance correlates with age beyond |r| = 0.3.
"""

from brainlit.data.simulate.atlas import NETWORK_NAMES, Atlas, make_atlas, network_modules
from brainlit.data.simulate.bold import SimulatedCohort, simulate_roi_timeseries, simulate_subjects
from brainlit.data.simulate.camcan import write_camcan_tree
from brainlit.data.simulate.cohort import LATENTS, MARKER, CohortSummary, simulate_cohort
from brainlit.data.simulate.images import write_atlas
from brainlit.data.simulate.model import SIMULATOR_VERSION, GenerativeModel
from brainlit.data.simulate.phenotypes import simulate_phenotypes
from brainlit.data.simulate.scans import ScanPlan, Scans, simulate_scans
from brainlit.data.simulate.sites import SiteEffects, SiteSpec

__all__ = [
    "LATENTS", "MARKER", "NETWORK_NAMES", "SIMULATOR_VERSION", "Atlas", "CohortSummary",
    "GenerativeModel", "ScanPlan", "Scans", "SimulatedCohort", "SiteEffects", "SiteSpec",
    "make_atlas", "network_modules", "simulate_cohort", "simulate_phenotypes",
    "simulate_roi_timeseries", "simulate_scans", "simulate_subjects", "write_atlas",
    "write_camcan_tree",
]

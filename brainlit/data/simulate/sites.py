"""Scanner sites: each site's own gain, noise, shared signal, head motion and TR (step 4b).

With ``--sites N`` every subject is scanned at one of N sites (a seeded, balanced draw), and
the site changes the ROI BOLD of step 4 (percent signal change) as a scanner would::

    bold_site = roi_gain * bold + global_pct * g(t) + motion(t) + roi_noise_pct * e(t)

- ``roi_gain`` ``[R]``: the site's BOLD sensitivity (field strength, coil, echo time),
  lognormal with a site-wide sd of 0.2 and a regional sd of 0.1. Percent signal change and
  signal-to-fluctuation noise differ between scanners of one study (Friedman et al. 2008,
  Hum Brain Mapp 29:958).
- ``roi_noise_pct`` ``[R]``: white, thermal-like noise that does not propagate, of a site
  median of 0.1-0.3 % (log-uniform) against a regional BOLD sd of about 1 % (a threefold range
  of temporal SNR between scanners), varying between regions with the coil's sensitivity
  (lognormal sd 0.3): a scanner-specific spatial pattern of SNR.
- ``global_pct``: a slow (HRF-smoothed) fluctuation shared by every region, 0-0.3 %: it
  inflates every correlation by up to about 0.1, the site-specific shift of mean FC that
  harmonisation removes (Yu et al. 2018, Hum Brain Mapp 39:4213; ComBat). These three are
  kept moderate: site and scanner explain a small share of FC variance next to the subjects
  (Noble et al. 2017, NeuroImage 146:959, eight sites, travelling subjects; Badhwar et al.
  2020, NeuroImage 205:116210, one person at 13 sites and three vendors), though vendor effects
  can be large (Marek et al. 2019, Dev Cogn Neurosci 40:100706).
- ``motion_mm``: the site's median mean framewise displacement (FD, Power et al. 2012,
  NeuroImage 59:2142; rotations as arc length at 50 mm), 0.08-0.25 mm (log-uniform): our
  choice for adult cohorts, in which FD above 0.2-0.5 mm marks a volume for censoring (Power et
  al. 2012; 2014, NeuroImage 84:320). Each subject's level is lognormal around it (sd 0.4);
  realignment parameters random-walk with Gaussian jitter and jumps (5 % of volumes), and the
  BOLD gets a spike at each displacement (-0.5 % per mm of FD,
  region-dependent: motion lowers the signal widely, Power et al. 2012) and a small shift that
  follows the head's position (0.1 % per mm, residual partial-volume change). Motion does not
  depend on age here. Each subject's ``mean_fd`` goes to the latents.
- ``t_r``: the site's repetition time (``--site-trs``), else the cohort's.

In a 4-site cohort of 200 subjects, site explains a median 1.6-9 % of an FC edge's variance
(three draws of the sites; chance 1.5 %), a classifier on FC names the site of 38-47 % of the
subjects (chance 25 %), and the age MAE of a ridge on FC rises by 0.9-1.4 years
(``docs/research/simulator.md``).

Site k's effects come from its own stream ``(site_seed, 8, k)``: they do not depend on the
number of sites, and ``site_seed`` (``--site-seed``, default: the cohort's seed) gives a
cohort new scanners, e.g. a site unseen in training. A subject's own draws (motion, noise)
come from ``(seed, 10, i)``; its biology is the same at every site.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from brainlit.data.simulate.bold import hrf_noise
from brainlit.errors import BrainlitConfigError

MOTION_SUBJECT_SD = 0.4  # lognormal sd of a subject's motion level around the site's
JITTER_SHARE = 0.7  # share of the expected FD from Gaussian jitter; the rest from jumps
JUMP_RATE = 0.05  # jumps per volume: a few per cent of volumes move more than 0.5 mm
SPIKE_PCT_PER_MM = 0.5  # signal drop per mm of FD
SHIFT_PCT_PER_MM = 0.1  # sd of the signal change per mm of head position


@dataclass(frozen=True)
class SiteEffects:
    """One scanner's effects on the ROI BOLD (see the module docstring).

    Attributes:
        index: The site's number k (named ``site-k``).
        roi_gain: ``[R]`` BOLD gain of each region.
        roi_noise_pct: ``[R]`` sd of each region's additive white noise (percent).
        global_pct: Sd of the shared slow fluctuation (percent).
        motion_mm: Median subject mean framewise displacement (mm).
        t_r: Repetition time (s).
    """

    index: int
    roi_gain: np.ndarray
    roi_noise_pct: np.ndarray
    global_pct: float
    motion_mm: float
    t_r: float

    @property
    def name(self) -> str:
        """``site-k``."""
        return f"site-{self.index}"

    def latents(self) -> dict[str, float | str]:
        """The site's effects as latent columns (``site_gain``, ``site_noise_pct``: the
        regions' geometric means)."""
        return {"site": self.name, "site_gain": float(np.exp(np.log(self.roi_gain).mean())),
                "site_noise_pct": float(np.exp(np.log(self.roi_noise_pct).mean())),
                "site_global_pct": self.global_pct,
                "site_motion_mm": self.motion_mm, "site_t_r": self.t_r}


def draw_site(index: int, n_rois: int, site_seed: int, t_r: float) -> SiteEffects:
    """Site ``index``'s effects, from its own stream ``(site_seed, 8, index)``."""
    rng = np.random.default_rng([site_seed, 8, index])
    gain = np.exp(0.2 * rng.normal() + 0.1 * rng.standard_normal(n_rois))
    noise, motion = np.exp(rng.uniform(np.log([0.1, 0.08]), np.log([0.3, 0.25])))
    global_pct = float(rng.uniform(0.0, 0.3))
    roi_noise = noise * np.exp(0.3 * rng.standard_normal(n_rois))
    return SiteEffects(index, gain, roi_noise, global_pct, float(motion), t_r)


@dataclass(frozen=True)
class SiteSpec:
    """The scanners a cohort is scanned at.

    Args:
        n_sites: Number of sites.
        site_seed: Seed of the sites' effects; None: the cohort's seed.
        only_site: Scan every subject at this site (0-based) instead of a balanced draw.
        t_rs: Each site's TR (s), ``n_sites`` values; None: the cohort's TR everywhere.
    """

    n_sites: int
    site_seed: int | None = None
    only_site: int | None = None
    t_rs: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.n_sites < 1:
            raise BrainlitConfigError(f"--sites must be at least 1, got {self.n_sites}")
        if self.only_site is not None and not 0 <= self.only_site < self.n_sites:
            raise BrainlitConfigError(f"--only-site {self.only_site} is not one of the {self.n_sites} "
                                      f"sites 0..{self.n_sites - 1}; raise --sites or choose another")
        if self.t_rs is not None and (len(self.t_rs) != self.n_sites or min(self.t_rs) <= 0):
            raise BrainlitConfigError(f"--site-trs needs {self.n_sites} positive TRs (one per site), "
                                      f"got {list(self.t_rs)}")

    def key(self) -> dict:
        """The fields that key a written cohort."""
        return {"n_sites": self.n_sites, "site_seed": self.site_seed, "only_site": self.only_site,
                "t_rs": None if self.t_rs is None else list(self.t_rs)}

    def effects(self, n_rois: int, seed: int, t_r: float) -> list[SiteEffects]:
        """Every site's effects, for the cohort ``seed`` of TR ``t_r``."""
        site_seed = seed if self.site_seed is None else self.site_seed
        return [draw_site(k, n_rois, site_seed, t_r if self.t_rs is None else self.t_rs[k])
                for k in range(self.n_sites)]

    def assign(self, subjects: np.ndarray, seed: int) -> np.ndarray:
        """The site of each of ``subjects`` ``[n]``: ``only_site``, or balanced, every run of
        ``n_sites`` consecutive subjects a permutation of the sites (stream ``(seed, 7, run)``)."""
        if self.only_site is not None:
            return np.full(len(subjects), self.only_site)
        runs = {run: np.random.default_rng([seed, 7, run]).permutation(self.n_sites)
                for run in np.unique(subjects // self.n_sites)}
        return np.array([runs[i // self.n_sites][i % self.n_sites] for i in subjects], dtype=np.int64)


def head_motion(rng: np.random.Generator, mean_fd_mm: float, n_volumes: int) -> np.ndarray:
    """Realignment parameters ``[6, T]`` in mm (rotations as arc length at 50 mm): Gaussian
    jitter and rare jumps whose expected framewise displacement is ``mean_fd_mm``."""
    jitter_sd = JITTER_SHARE * mean_fd_mm / (6 * np.sqrt(2 / np.pi))  # E|N(0, s)| = s sqrt(2/pi)
    steps = rng.normal(0.0, jitter_sd, (6, n_volumes))
    jumps = (rng.random(n_volumes) < JUMP_RATE) * rng.exponential(
        (1 - JITTER_SHARE) * mean_fd_mm / JUMP_RATE, n_volumes)
    direction = rng.dirichlet(np.ones(6), n_volumes).T * rng.choice([-1.0, 1.0], (6, n_volumes))
    steps += jumps * direction  # each jump moves the head by its size in FD
    steps[:, 0] = 0.0
    return np.cumsum(steps, axis=1)


def framewise_displacement(motion: np.ndarray) -> np.ndarray:
    """FD ``[T]`` of realignment parameters ``[6, T]`` in mm (0 at the first volume)."""
    return np.r_[0.0, np.abs(np.diff(motion, axis=1)).sum(0)]


def scan_at_site(bold: np.ndarray, site: SiteEffects, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """One subject's ROI BOLD ``[R, T]`` (percent) as site ``site`` records it, and the
    subject's mean FD (mm).

    Args:
        bold: ROI BOLD ``[R, T]`` of step 4.
        site: The scanner.
        rng: The subject's own stream for motion and noise.
    """
    n_rois, n_volumes = bold.shape
    shared = hrf_noise(rng, 1, n_volumes, site.t_r)[0]
    motion = head_motion(rng, site.motion_mm * np.exp(MOTION_SUBJECT_SD * rng.normal()), n_volumes)
    fd = framewise_displacement(motion)
    spikes = -SPIKE_PCT_PER_MM * rng.uniform(0.5, 1.5, (n_rois, 1)) * fd
    shifts = rng.normal(0.0, SHIFT_PCT_PER_MM, (n_rois, 6)) @ (motion - motion.mean(1, keepdims=True))
    noise = site.roi_noise_pct[:, None] * rng.standard_normal((n_rois, n_volumes))
    scanned = site.roi_gain[:, None] * bold + site.global_pct * shared + spikes + shifts + noise
    return scanned.astype(np.float32), float(fd[1:].mean())


def sites_table(sites: list[SiteEffects]) -> pd.DataFrame:
    """One row per site: its latents and each region's gain and noise (``gain_1`` ...,
    ``noise_pct_1`` ...)."""
    regions = range(1, len(sites[0].roi_gain) + 1)
    gains = pd.DataFrame([s.roi_gain for s in sites], columns=[f"gain_{r}" for r in regions])
    noise = pd.DataFrame([s.roi_noise_pct for s in sites], columns=[f"noise_pct_{r}" for r in regions])
    return pd.concat([pd.DataFrame([s.latents() for s in sites]), gains, noise], axis=1)

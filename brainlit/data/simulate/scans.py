"""Subjects' scans as a cohort writer needs them: the generative core, then the sites.

:func:`simulate_scans` makes any subset of a cohort's subjects, so a writer can make and write
a large cohort block by block, in parallel, and subject i is the same whatever block it is in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from brainlit.data.simulate.bold import simulate_subjects
from brainlit.data.simulate.model import GenerativeModel
from brainlit.data.simulate.sites import SiteSpec, scan_at_site


@dataclass(frozen=True)
class ScanPlan:
    """Everything that makes a subject's scan except the subject: the cohort's parameters.

    Args:
        n_rois: Regions.
        n_volumes: Volumes per run.
        t_r: Repetition time (s); a site of its own TR overrides it.
        seed: The cohort's seed: subject i depends on (seed, i) only.
        n_modules: Networks.
        model: The generative model.
        sites: The scanners, or None for site-free scans (the default cohort).
    """

    n_rois: int = 32
    n_volumes: int = 150
    t_r: float = 2.0
    seed: int = 0
    n_modules: int = 4
    model: GenerativeModel = GenerativeModel()
    sites: SiteSpec | None = None


@dataclass(frozen=True)
class Scans:
    """Some subjects' scans.

    Attributes:
        subjects: ``[n]`` the subjects' numbers (0-based).
        roi_timeseries: ``[n, R, T]`` float32 ROI BOLD (percent signal change).
        t_r: ``[n]`` each run's repetition time (s).
        participants: participant_id, age, sex, fluid_intelligence and, with sites, site.
        latents: participant_id, the generative latents and, with sites, the site's effects
            and the subject's ``mean_fd``.
    """

    subjects: np.ndarray
    roi_timeseries: np.ndarray
    t_r: np.ndarray
    participants: pd.DataFrame
    latents: pd.DataFrame


def simulate_scans(subjects, plan: ScanPlan) -> Scans:
    """The scans of the subjects numbered ``subjects`` (0-based) of the cohort ``plan``."""
    subjects = np.asarray(subjects, dtype=np.int64)
    if plan.sites is None:
        cohort = simulate_subjects(subjects, plan.n_rois, plan.n_volumes, plan.t_r, plan.seed,
                                   plan.n_modules, plan.model)
        return Scans(subjects, cohort.roi_timeseries, np.full(len(subjects), plan.t_r),
                     cohort.phenotypes, cohort.latents)
    sites = plan.sites.effects(plan.n_rois, plan.seed, plan.t_r)
    site_of = plan.sites.assign(subjects, plan.seed)
    t_r = np.array([sites[k].t_r for k in site_of])
    series = np.empty((len(subjects), plan.n_rois, plan.n_volumes), dtype=np.float32)
    participants, latents = [], []
    for run_t_r in np.unique(t_r):  # one core call per TR: its integration step differs
        group = np.flatnonzero(t_r == run_t_r)
        cohort = simulate_subjects(subjects[group], plan.n_rois, plan.n_volumes, float(run_t_r),
                                   plan.seed, plan.n_modules, plan.model)
        scanned = [scan_at_site(bold, sites[site_of[k]], np.random.default_rng([plan.seed, 10, subjects[k]]))
                   for k, bold in zip(group, cohort.roi_timeseries, strict=True)]
        series[group] = np.stack([bold for bold, _ in scanned])
        site_latents = pd.DataFrame([sites[site_of[k]].latents() for k in group])
        participants.append(cohort.phenotypes.assign(site=site_latents["site"].to_numpy()).set_index(group))
        latents.append(pd.concat([cohort.latents, site_latents], axis=1)
                       .assign(mean_fd=[fd for _, fd in scanned]).set_index(group))
    return Scans(subjects, series, t_r, pd.concat(participants).sort_index().reset_index(drop=True),
                 pd.concat(latents).sort_index().reset_index(drop=True))

"""Phenotypes and the latent network integrity: step 0 of the generative model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd


def subject_phenotypes(subjects: Sequence[int], seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Participants (participant_id, age, sex, fluid_intelligence) and latent integrity ``[n]``
    of the subjects numbered ``subjects`` (0-based); subject i draws from its own stream
    ``(seed, 0, i)``, so any subset of a cohort is the cohort's own rows."""
    draws = []
    for i in subjects:
        rng = np.random.default_rng([seed, 0, i])
        draws.append([rng.integers(18, 89), rng.random(), *rng.standard_normal(2)])
    age, sex_draw, integrity, noise = np.array(draws, dtype=float).reshape(len(draws), 4).T
    sex = np.where(sex_draw < 0.5, "M", "F")
    age_z = (age - 53.0) / (70.0 / np.sqrt(12.0))  # moments of U(18, 88)
    rest = 0.55 * integrity + np.sqrt(1 - 0.55**2) * noise
    fluid_z = -0.65 * age_z + np.sqrt(1 - 0.65**2) * rest
    phenotypes = pd.DataFrame({
        "participant_id": [f"sub-{i + 1:04d}" for i in subjects],
        "age": age,
        "sex": sex,
        "fluid_intelligence": np.clip(np.rint(32.0 + 6.5 * fluid_z), 0, 46),
    })
    return phenotypes, integrity


def simulate_phenotypes(n_subjects: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Participants (participant_id, age, sex, fluid_intelligence) and latent integrity [N]."""
    return subject_phenotypes(range(n_subjects), seed)

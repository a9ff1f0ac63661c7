"""Simulated resting-state fMRI cohorts: the embedded demo data and a Cam-CAN-shaped test tree.

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
   independent of age, that also drives fluid intelligence.
2. **Local noise** that does not propagate through the network (per region, HRF-smoothed), of
   sd ``local_noise * (1 + noise_age_slope * a)``: neural noise grows with age and dilutes FC.
3. **Global physiological fluctuation** (respiration/CO2): a slow uncoupled OU node loaded on
   every region with fixed loadings and a random per-subject amplitude.
4. **BOLD**: network and physiological signals are convolved with the canonical Glover HRF
   (``nilearn.glm.first_level.glover_hrf``) at ``dt`` and sampled every TR after a burn-in. The
   network BOLD (scaled to unit sd per subject) plus the local noise is scaled to percent signal
   change by a per-subject vascular gain (lognormal, falling with age like resting-state
   fluctuation amplitude). ``simulate_roi_timeseries`` stops here.
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

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from nilearn.glm.first_level import glover_hrf
from numpy.polynomial import legendre
from scipy.signal import fftconvolve
from tqdm.auto import tqdm

from brainlit.errors import BrainlitDataError

log = logging.getLogger(__name__)

SIMULATOR_VERSION = 1
NETWORK_NAMES = ("Visual", "Somatomotor", "Attention", "Default", "Frontoparietal", "Limbic")
TEMPLATE_SEED = 2508  # the "species" connectome and atlas: the same for every cohort seed
MARKER = ".complete"
SIMULATOR_NAME = "brainlit.data.simulate"
BRAIN_CENTER_MM = np.array([0.0, -18.0, 15.0])  # an ellipsoid brain in MNI space
BRAIN_RADII_MM = np.array([68.0, 86.0, 62.0])
CHUNK = 32  # subjects integrated together


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


@dataclass(frozen=True)
class Atlas:
    """A labels atlas on the simulation grid."""

    labels: np.ndarray  # [X, Y, Z] int16, 0 = background, 1..R
    affine: np.ndarray  # [4, 4] voxel -> MNI mm
    modules: np.ndarray  # [R] network of each region
    names: list[str]


@dataclass(frozen=True)
class SimulatedCohort:
    """ROI-level output of the generative core.

    Attributes:
        roi_timeseries: [N, R, T] float32 BOLD in percent signal change.
        phenotypes: One row per subject: participant_id, age, sex, fluid_intelligence.
        modules: [R] network of each region.
        physio: [N, T] global physiological fluctuation as loaded on a region (percent).
        t_r: Repetition time (s).
    """

    roi_timeseries: np.ndarray
    phenotypes: pd.DataFrame
    modules: np.ndarray
    physio: np.ndarray
    t_r: float


@dataclass(frozen=True)
class CohortSummary:
    """What ``simulate_cohort`` left on disk (``generated`` is False when it was already there)."""

    out_dir: Path
    n_subjects: int
    n_rois: int
    n_volumes: int
    t_r: float
    grid: tuple[int, int, int]
    voxel_size_mm: float
    seed: int
    generated: bool
    seconds: float
    n_bytes: int


def network_modules(n_rois: int, n_modules: int) -> np.ndarray:
    """[R] network of each region: contiguous blocks of the left regions, mirrored on the right."""
    if n_rois % 2 or n_rois < 2 * n_modules:
        raise ValueError(f"n_rois={n_rois} must be even and at least 2 * n_modules={2 * n_modules}")
    half = np.arange(n_rois // 2) * n_modules // (n_rois // 2)
    return np.concatenate([half, half])


def _region_centres(xyz: np.ndarray, left: np.ndarray, n_centres: int) -> np.ndarray:
    """[n, 3] centres spread over the ``left`` voxels: farthest-point seeds, then Lloyd steps."""
    seeds = [np.random.default_rng(TEMPLATE_SEED).choice(left)]
    for _ in range(n_centres - 1):
        dist = np.linalg.norm(xyz[left, None] - xyz[seeds][None], axis=-1).min(axis=1)
        seeds.append(left[np.argmax(dist)])
    centres = xyz[seeds]
    for _ in range(20):  # Lloyd iterations even out the region sizes
        nearest = np.argmin(np.linalg.norm(xyz[left, None] - centres[None], axis=-1), axis=1)
        centres = np.stack([xyz[left][nearest == r].mean(0) if np.any(nearest == r) else centres[r]
                            for r in range(n_centres)])
    return centres[np.argsort(centres[:, 1], kind="stable")]  # back to front


def make_atlas(n_rois: int = 32, grid: tuple[int, int, int] = (16, 22, 16),
               voxel_size_mm: float = 8.0, n_modules: int = 4) -> Atlas:
    """Left/right symmetric Voronoi parcellation of an ellipsoid brain in MNI space."""
    modules = network_modules(n_rois, n_modules)
    origin = BRAIN_CENTER_MM - voxel_size_mm * (np.asarray(grid) - 1) / 2
    origin[0] = -voxel_size_mm * (grid[0] - 1) / 2  # voxel centres symmetric about x = 0
    affine = np.diag([voxel_size_mm] * 3 + [1.0])
    affine[:3, 3] = origin
    xyz = np.indices(grid).reshape(3, -1).T * voxel_size_mm + origin  # [V, 3] mm
    brain = (((xyz - BRAIN_CENTER_MM) / BRAIN_RADII_MM) ** 2).sum(1) <= 1
    centres = _region_centres(xyz, np.flatnonzero(brain & (xyz[:, 0] < 0)), n_rois // 2)
    centres = np.concatenate([centres, centres * [-1, 1, 1]])  # [R, 3] left then right
    nearest = np.argmin(np.linalg.norm(xyz[:, None] - centres[None], axis=-1), axis=1)
    labels = np.where(brain, nearest + 1, 0).reshape(grid).astype(np.int16)
    if len(np.unique(labels)) != n_rois + 1:
        raise ValueError(f"grid {grid} at {voxel_size_mm} mm is too small for {n_rois} regions")
    half = n_rois // 2
    names = [f"{'LR'[r >= half]}_{NETWORK_NAMES[m % len(NETWORK_NAMES)]}_{r % half + 1}"
             for r, m in enumerate(modules)]
    return Atlas(labels=labels, affine=affine, modules=modules, names=names)


def simulate_phenotypes(n_subjects: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Participants (participant_id, age, sex, fluid_intelligence) and latent integrity [N]."""
    rngs = [np.random.default_rng([seed, 0, i]) for i in range(n_subjects)]  # subject i: (seed, i)
    draws = [[rng.integers(18, 89), rng.random(), *rng.standard_normal(2)] for rng in rngs]
    age, sex_draw, integrity, noise = np.array(draws, dtype=float).reshape(n_subjects, 4).T
    sex = np.where(sex_draw < 0.5, "M", "F")
    age_z = (age - 53.0) / (70.0 / np.sqrt(12.0))  # moments of U(18, 88)
    rest = 0.55 * integrity + np.sqrt(1 - 0.55**2) * noise
    fluid_z = -0.65 * age_z + np.sqrt(1 - 0.65**2) * rest
    phenotypes = pd.DataFrame({
        "participant_id": [f"sub-{i + 1:04d}" for i in range(n_subjects)],
        "age": age,
        "sex": sex,
        "fluid_intelligence": np.clip(np.rint(32.0 + 6.5 * fluid_z), 0, 46),
    })
    return phenotypes, integrity


def _templates(modules: np.ndarray, model: GenerativeModel) -> tuple[np.ndarray, ...]:
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


def _network_steps(age_frac, integrity, within, between, rngs, dt: float, model) -> np.ndarray:
    """Euler step matrices [n, R+1, R+1] (the last node is the physiological fluctuation)."""
    n_rois = len(within)
    steps = np.zeros((len(rngs), n_rois + 1, n_rois + 1))
    for i, rng in enumerate(rngs):
        c_in = 1 + model.within_age_slope * age_frac[i] + model.integrity_effect * integrity[i]
        c_out = 1 + model.between_age_slope * age_frac[i]
        idiosyncratic = np.triu(rng.standard_normal((n_rois, n_rois)), 1)
        edge_factor = np.exp(model.edge_sd * (idiosyncratic + idiosyncratic.T))
        coupling = (max(c_in, 0.05) * within + c_out * between) * edge_factor  # g * tau * W
        coupling *= min(1.0, 0.95 / np.abs(np.linalg.eigvalsh(coupling)).max())  # stable
        steps[i, :n_rois, :n_rois] = dt / model.tau_s * coupling
    leak = np.r_[np.full(n_rois, dt / model.tau_s), dt / model.physio_tau_s]
    return steps + np.diag(1 - leak)


def _integrate_bold(steps, rngs, n_volumes: int, per_tr: int, dt: float, model) -> np.ndarray:
    """Euler-Maruyama, HRF convolution and sampling at TR: [n, R+1, T], unit sd per subject."""
    burn = int(np.ceil(model.burn_in_s / dt))
    n_steps = burn + n_volumes * per_tr
    states = np.stack([rng.standard_normal((n_steps, steps.shape[1])) for rng in rngs], axis=1)
    states *= np.sqrt(dt)  # [n_steps, n, R+1]: the noise, overwritten in place by the states
    x = np.zeros(states.shape[1:])
    for k in range(n_steps):
        x = np.einsum("nij,nj->ni", steps, x) + states[k]
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


def simulate_roi_timeseries(
    n_subjects: int = 200,
    n_rois: int = 32,
    n_volumes: int = 150,
    t_r: float = 2.0,
    seed: int = 0,
    n_modules: int = 4,
    model: GenerativeModel = GenerativeModel(),
) -> SimulatedCohort:
    """The generative core (steps 1-4 of the module docstring), without images.

    Subject i depends only on (seed, i), not on ``n_subjects``: cohorts of one seed nest.
    """
    phenotypes, integrity = simulate_phenotypes(n_subjects, seed)
    modules = network_modules(n_rois, n_modules)
    within, between, physio_loading = _templates(modules, model)
    per_tr = max(1, round(t_r / model.dt_s))
    dt = t_r / per_tr
    age_frac = (phenotypes["age"].to_numpy() - 18.0) / 70.0
    bold = np.empty((n_subjects, n_rois, n_volumes), dtype=np.float32)
    physio = np.empty((n_subjects, n_volumes), dtype=np.float32)
    for start in range(0, n_subjects, CHUNK):
        idx = np.arange(start, min(start + CHUNK, n_subjects))
        rngs = [np.random.default_rng([seed, 1, i]) for i in idx]
        steps = _network_steps(age_frac[idx], integrity[idx], within, between, rngs, dt, model)
        signals = _integrate_bold(steps, rngs, n_volumes, per_tr, dt, model)  # [n, R+1, T]
        for j, (i, rng) in enumerate(zip(idx, rngs, strict=True)):
            a = age_frac[i]
            local_sd = model.local_noise * (1 + model.noise_age_slope * a)
            vascular = model.vascular_age_slope * a + model.vascular_sd * rng.normal()
            gain = model.bold_pct * np.exp(vascular)
            physio_sd = model.physio_amplitude * np.exp(0.5 * rng.normal())
            physio[i] = gain * physio_sd * signals[j, -1]
            regional = signals[j, :-1] + local_sd * _local_noise(rng, n_rois, n_volumes, t_r)
            bold[i] = gain * regional + physio_loading[:, None] * physio[i]
    return SimulatedCohort(bold, phenotypes, modules, physio, t_r)


def _voxel_image(roi_bold, labels, rng, model: GenerativeModel, artefacts=None) -> np.ndarray:
    """Step 5: int16 image [X, Y, Z, T] from ROI BOLD [R, T] (+ artefacts [K, T], percent)."""
    brain = labels > 0
    region = labels[brain] - 1  # [V]
    n_voxels, n_volumes = region.size, roi_bold.shape[1]
    weight = rng.uniform(0.5, 1.5, (n_voxels, 1))
    basis = legendre.legvander(np.linspace(-1, 1, n_volumes), 2)[:, 1:].T  # [2, T]
    drift = rng.normal(0.0, model.drift_pct, 2) @ basis * rng.uniform(0.5, 1.5, (n_voxels, 1))
    thermal = model.thermal_noise_pct * rng.standard_normal((n_voxels, n_volumes))
    pct = weight * roi_bold[region] + drift + thermal  # [V, T]
    if artefacts is not None:  # regional plus voxel loadings, so that region means keep them
        loadings = rng.standard_normal((labels.max(), len(artefacts)))[region]
        pct += (loadings + rng.standard_normal(loadings.shape)) @ artefacts
    gain = model.baseline_intensity * np.exp(model.scanner_gain_sd * rng.standard_normal())
    baseline = gain * np.exp(0.1 * rng.standard_normal((n_voxels, 1)))
    image = np.zeros(labels.shape + (n_volumes,), dtype=np.int16)
    image[brain] = np.rint(baseline * (1 + pct / 100))
    return image


def _save_nifti(data: np.ndarray, affine: np.ndarray, path: Path, t_r: float | None = None) -> None:
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm", "sec")
    if t_r is not None:  # pixdim[4]
        image.header.set_zooms(image.header.get_zooms()[:3] + (t_r,))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)


def _write_subject(roi_bold, atlas: Atlas, t_r: float, path: Path, key, model, artefacts):
    """Write one subject's BOLD NIfTI; returns its global signal [T] (mean over brain voxels)."""
    image = _voxel_image(roi_bold, atlas.labels, np.random.default_rng(key), model, artefacts)
    _save_nifti(image, atlas.affine, path, t_r)
    return image[atlas.labels > 0].mean(axis=0)


def _write_images(cohort: SimulatedCohort, paths, atlas, seed, model, n_jobs, progress,
                  artefacts=None) -> list[np.ndarray]:
    """Every subject's image (joblib workers, progress bar); returns their global signals."""
    jobs = (delayed(_write_subject)(cohort.roi_timeseries[i], atlas, cohort.t_r, path, [seed, 2, i],
                                    model, None if artefacts is None else artefacts[i])
            for i, path in enumerate(paths))
    # threads: zlib and numpy release the GIL, and no worker process has to start
    results = Parallel(n_jobs=n_jobs, prefer="threads", return_as="generator")(jobs)
    return list(tqdm(results, total=len(paths), desc="subjects written", disable=not progress))


def write_atlas(out_dir: Path, atlas: Atlas) -> Path:
    """``atlas.nii.gz`` and ``atlas_labels.tsv`` (index, name, network) in ``out_dir``."""
    _save_nifti(atlas.labels, atlas.affine, out_dir / "atlas.nii.gz")
    networks = [NETWORK_NAMES[m % len(NETWORK_NAMES)] for m in atlas.modules]
    table = pd.DataFrame({"index": np.arange(1, len(atlas.names) + 1), "name": atlas.names,
                          "network": networks})
    table.to_csv(out_dir / "atlas_labels.tsv", sep="\t", index=False)
    return out_dir / "atlas.nii.gz"


def _prepare_out_dir(out: Path, params: dict, overwrite: bool) -> bool:
    """True when ``out`` already holds this exact cohort; else clears it for writing."""
    marker, description = out / MARKER, out / "dataset_description.json"
    if marker.exists() and not overwrite:
        if json.loads(marker.read_text()) == params:
            return True
        raise BrainlitDataError(
            f"{out} holds a simulated cohort with other parameters (see {marker}); "
            "pass overwrite=True (--overwrite) or choose another folder."
        )
    ours = description.exists() and SIMULATOR_NAME in description.read_text()
    if out.exists() and any(out.iterdir()) and not ours:
        raise BrainlitDataError(f"{out} is not empty and is not a brainlit simulated cohort; "
                                "choose an empty or new folder.")
    marker.unlink(missing_ok=True)
    for folder in out.glob("sub-*"):  # ours: subjects of a half-written or other cohort
        shutil.rmtree(folder)
    out.mkdir(parents=True, exist_ok=True)
    description.write_text(json.dumps({
        "Name": "brainlit simulated cohort", "BIDSVersion": "1.8.0", "DatasetType": "raw",
        "GeneratedBy": [{"Name": SIMULATOR_NAME, "Version": str(SIMULATOR_VERSION)}]}, indent=2))
    return False


def simulate_cohort(
    out_dir: str | Path,
    n_subjects: int = 200,
    n_rois: int = 32,
    n_volumes: int = 150,
    t_r: float = 2.0,
    grid: tuple[int, int, int] = (16, 22, 16),
    voxel_size_mm: float = 8.0,
    seed: int = 0,
    n_modules: int = 4,
    n_jobs: int = 1,
    overwrite: bool = False,
    progress: bool = False,
    model: GenerativeModel = GenerativeModel(),
) -> CohortSummary:
    """Write the demo BIDS cohort; a no-op when ``out_dir`` already holds it complete.

    ``out_dir/.complete`` (the parameters as JSON) is written last, so a half-written cohort is
    regenerated by the next call. The output does not depend on ``n_jobs``.
    """
    start, out = time.perf_counter(), Path(out_dir)
    params = {"version": SIMULATOR_VERSION, "n_subjects": n_subjects, "n_rois": n_rois,
              "n_volumes": n_volumes, "t_r": t_r, "grid": list(grid), "seed": seed,
              "voxel_size_mm": voxel_size_mm, "n_modules": n_modules, "model": asdict(model)}
    complete = _prepare_out_dir(out, params, overwrite)
    if not complete:
        atlas = make_atlas(n_rois, grid, voxel_size_mm, n_modules)
        write_atlas(out, atlas)
        cohort = simulate_roi_timeseries(n_subjects, n_rois, n_volumes, t_r, seed, n_modules, model)
        ids = cohort.phenotypes["participant_id"]
        paths = [out / s / "func" / f"{s}_task-rest_bold.nii.gz" for s in ids]
        _write_images(cohort, paths, atlas, seed, model, n_jobs, progress)
        cohort.phenotypes.to_csv(out / "participants.tsv", sep="\t", index=False)
        sidecar = {"TaskName": "rest", "RepetitionTime": t_r}
        (out / "task-rest_bold.json").write_text(json.dumps(sidecar))
        (out / MARKER).write_text(json.dumps(params, indent=2))
    n_bytes = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    seconds = time.perf_counter() - start
    log.info("%s %d subjects in %s (%.1f s)", "Found" if complete else "Wrote", n_subjects, out,
             seconds)
    return CohortSummary(out, n_subjects, n_rois, n_volumes, t_r, tuple(grid), voxel_size_mm, seed,
                         not complete, seconds, n_bytes)


def main(argv: list[str] | None = None, prog: str = "python -m brainlit.data.simulate") -> None:
    """``python -m brainlit simulate OUT_DIR [--n-subjects N] [--seed S] [--camcan]``."""
    parser = argparse.ArgumentParser(prog=prog,
                                     description=__doc__.split("\n")[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--n-subjects", type=int, help="default: 200, or 12 with --camcan")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=-1, help="image writer threads (-1: all cores)")
    parser.add_argument("--camcan", action="store_true", help="write a Cam-CAN-shaped test tree")
    parser.add_argument("--overwrite", action="store_true", help="replace another cohort there")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    progress = sys.stderr.isatty()  # a bar on a terminal; in a log file the summary line only
    if args.camcan:
        from brainlit.data.camcan_tree import write_camcan_tree

        path = write_camcan_tree(args.out_dir, args.n_subjects or 12, args.seed, n_jobs=args.n_jobs,
                                 progress=progress)
        print(f"Cam-CAN-shaped tree in {path}")
        return
    try:
        summary = simulate_cohort(args.out_dir, args.n_subjects or 200, seed=args.seed,
                                  n_jobs=args.n_jobs, overwrite=args.overwrite, progress=progress)
    except BrainlitDataError as error:
        parser.error(str(error))
    print(f"{summary.n_subjects} subjects, {summary.n_rois} regions, {summary.n_volumes} volumes "
          f"at TR {summary.t_r} s in {summary.out_dir} ({summary.n_bytes / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()

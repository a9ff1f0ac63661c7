"""Step 5: voxel images of the ROI BOLD, written as NIfTI; and the atlas files."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
from joblib import Parallel, delayed
from numpy.polynomial import legendre
from tqdm.auto import tqdm

from brainlit.data.simulate.atlas import Atlas, labels_table
from brainlit.data.simulate.bold import SimulatedCohort
from brainlit.data.simulate.model import GenerativeModel


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


def save_nifti(data: np.ndarray, affine: np.ndarray, path: Path, t_r: float | None = None) -> None:
    image = nib.Nifti1Image(data, affine)
    image.header.set_xyzt_units("mm", "sec")
    if t_r is not None:  # pixdim[4]
        image.header.set_zooms(image.header.get_zooms()[:3] + (t_r,))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(image, path)


def write_subject_image(roi_bold: np.ndarray, atlas: Atlas, t_r: float, path: Path, key,
                        model: GenerativeModel, artefacts: np.ndarray | None = None) -> np.ndarray:
    """Write one subject's BOLD NIfTI from its ROI BOLD ``[R, T]``, drawing the voxels from the
    stream ``key``; returns its global signal [T] (mean over brain voxels)."""
    image = _voxel_image(roi_bold, atlas.labels, np.random.default_rng(key), model, artefacts)
    save_nifti(image, atlas.affine, path, t_r)
    return image[atlas.labels > 0].mean(axis=0)


def write_images(cohort: SimulatedCohort, paths, atlas, seed, model, n_jobs, progress,
                  artefacts=None) -> list[np.ndarray]:
    """Every subject's image (joblib workers, progress bar); returns their global signals."""
    jobs = (delayed(write_subject_image)(cohort.roi_timeseries[i], atlas, cohort.t_r, path, [seed, 2, i],
                                    model, None if artefacts is None else artefacts[i])
            for i, path in enumerate(paths))
    # threads: zlib and numpy release the GIL, and no worker process has to start
    results = Parallel(n_jobs=n_jobs, prefer="threads", return_as="generator")(jobs)
    return list(tqdm(results, total=len(paths), desc="subjects written", disable=not progress))


def write_atlas(out_dir: Path, atlas: Atlas) -> Path:
    """``atlas.nii.gz`` and ``atlas_labels.tsv`` (index, name, network) in ``out_dir``."""
    save_nifti(atlas.labels, atlas.affine, out_dir / "atlas.nii.gz")
    labels_table(atlas.modules).to_csv(out_dir / "atlas_labels.tsv", sep="\t", index=False)
    return out_dir / "atlas.nii.gz"


"""The simulated atlas: a left/right symmetric Voronoi parcellation of an ellipsoid brain."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from brainlit.data.simulate.model import TEMPLATE_SEED

NETWORK_NAMES = ("Visual", "Somatomotor", "Attention", "Default", "Frontoparietal", "Limbic")
BRAIN_CENTER_MM = np.array([0.0, -18.0, 15.0])  # an ellipsoid brain in MNI space
BRAIN_RADII_MM = np.array([68.0, 86.0, 62.0])


@dataclass(frozen=True)
class Atlas:
    """A labels atlas on the simulation grid."""

    labels: np.ndarray  # [X, Y, Z] int16, 0 = background, 1..R
    affine: np.ndarray  # [4, 4] voxel -> MNI mm
    modules: np.ndarray  # [R] network of each region
    names: list[str]



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
    return Atlas(labels=labels, affine=affine, modules=modules, names=region_names(modules))


def region_names(modules: np.ndarray) -> list[str]:
    """``L_Visual_1`` ...: hemisphere, network and number of each region (left ones first)."""
    half = len(modules) // 2
    return [f"{'LR'[r >= half]}_{NETWORK_NAMES[m % len(NETWORK_NAMES)]}_{r % half + 1}"
            for r, m in enumerate(modules)]


def labels_table(modules: np.ndarray) -> pd.DataFrame:
    """``atlas_labels.tsv``: index (1-based label), name and network of each region."""
    return pd.DataFrame({"index": np.arange(1, len(modules) + 1), "name": region_names(modules),
                         "network": [NETWORK_NAMES[m % len(NETWORK_NAMES)] for m in modules]})


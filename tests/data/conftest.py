"""Tiny hand-made inputs for the data layer: a few thousand voxels, a labels atlas, tables."""

from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest

SHAPE = (12, 12, 10)
AFFINE = np.diag([3.0, 3.0, 3.0, 1.0])


def labels_atlas(n_regions: int = 6) -> np.ndarray:
    """Regions as slabs along x (background at the edges)."""
    labels = np.zeros(SHAPE, dtype=np.int16)
    edges = np.linspace(1, SHAPE[0] - 1, n_regions + 1).astype(int)
    for region, (lo, hi) in enumerate(zip(edges[:-1], edges[1:], strict=True), start=1):
        labels[lo:hi, 1:-1, 1:-1] = region
    return labels


def write_bold(path: Path, n_volumes: int = 60, t_r: float = 2.0, seed: int = 0,
               data: np.ndarray | None = None) -> np.ndarray:
    """A 4-D run with region-specific slow signals plus noise; returns the voxel data."""
    if data is None:
        rng = np.random.default_rng(seed)
        region_signal = rng.standard_normal((7, n_volumes)).cumsum(axis=1)
        data = 100 + region_signal[labels_atlas()] + rng.standard_normal((*SHAPE, n_volumes))
    img = nib.Nifti1Image(data.astype(np.float32), AFFINE)
    img.header.set_xyzt_units("mm", "sec")
    img.header["pixdim"][4] = t_r
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return data


@pytest.fixture
def bids(tmp_path: Path) -> Path:
    """Five subjects in BIDS with an atlas and participants.tsv (sub-05 has no row)."""
    root = tmp_path / "bids"
    for i in range(1, 6):
        write_bold(root / f"sub-{i:02d}/func/sub-{i:02d}_task-rest_bold.nii.gz", seed=i)
    nib.save(nib.Nifti1Image(labels_atlas(), AFFINE), root / "atlas.nii.gz")
    pd.DataFrame({
        "participant_id": [f"sub-{i:02d}" for i in range(1, 5)],
        "age": [25, 40, "n/a", 70],
        "sex": ["M", "F", "F", "M"],
    }).to_csv(root / "participants.tsv", sep="\t", index=False)
    return root

"""Cache build rate (subjects/s) on realistic runs: 64x64x32 voxels x 261 volumes, 100 regions.

    python benchmarks/bench_cache.py [--subjects 6] [--jobs 1 2]

Never part of the tests: it writes about 130 MB per subject to a temporary folder.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

from brainlit.data.cache import build_cache
from brainlit.data.parcellate import Parcellator
from brainlit.data.sources import discover_subjects, load_phenotypes

SHAPE, VOLUMES, REGIONS, TR = (64, 64, 32), 261, 100, 1.97


def write_cohort(root: Path, n_subjects: int) -> Path:
    """Uncompressed runs and a 100-region labels atlas (random Voronoi-like blocks)."""
    rng = np.random.default_rng(0)
    affine = np.diag([3.0, 3.0, 4.0, 1.0])
    labels = rng.integers(1, REGIONS + 1, size=(8, 8, 4)).repeat(8, 0).repeat(8, 1).repeat(8, 2)
    atlas = root / "atlas.nii"
    nib.save(nib.Nifti1Image(labels.astype(np.int16), affine), atlas)
    lines = ["participant_id\tage"]
    for i in range(n_subjects):
        data = (1000 + rng.standard_normal((*SHAPE, VOLUMES), dtype=np.float32) * 10).astype(np.float32)
        img = nib.Nifti1Image(data, affine)
        img.header.set_xyzt_units("mm", "sec")
        img.header["pixdim"][4] = TR
        path = root / f"sub-{i:03d}" / "func" / f"sub-{i:03d}_task-rest_bold.nii"
        path.parent.mkdir(parents=True)
        nib.save(img, path)
        lines.append(f"sub-{i:03d}\t{20 + i}")
    (root / "participants.tsv").write_text("\n".join(lines) + "\n")
    return atlas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--jobs", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        atlas = write_cohort(root, args.subjects)
        records, phenotypes = discover_subjects(root), load_phenotypes(root)
        for n_jobs in args.jobs:
            parcellator = Parcellator(str(atlas), confounds="none", low_pass=0.1, high_pass=0.01)
            start = time.perf_counter()
            report = build_cache(records, parcellator, root / f"cache-{n_jobs}.h5", phenotypes, n_jobs=n_jobs)
            seconds = time.perf_counter() - start
            print(f"n_jobs={n_jobs}: {report.built} subjects in {seconds:.1f} s "
                  f"= {report.built / seconds:.2f} subjects/s")


if __name__ == "__main__":
    main()

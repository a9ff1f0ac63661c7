"""A Cam-CAN-shaped tree from the simulator's generative core, for end-to-end tests.

Mimics what a user points ``make reproduce-camcan`` at: fMRIPrep derivatives with head-motion
artefacts and confounds, ``standard_data.csv`` and the messy Cattell summary of the release,
with some subjects' BOLD files corrupt.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from brainlit.data.simulate.atlas import Atlas, make_atlas
from brainlit.data.simulate.bold import SimulatedCohort, simulate_roi_timeseries
from brainlit.data.simulate.images import save_nifti, write_atlas, write_images
from brainlit.data.simulate.model import GenerativeModel

CAMCAN_BAD_SCORES = ("n/a", "", "absent")  # Cattell TotalScore of tree subjects 1, 2, 3
CONFOUND_MOTION = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")


def _motion(rng: np.random.Generator, age_frac: float, n_volumes: int) -> np.ndarray:
    """Head motion [6, T]: random-walk translations (mm) and rotations (rad), larger with age."""
    scale = (1 + age_frac) * np.array([0.03] * 3 + [0.0005] * 3)[:, None]
    return np.cumsum(rng.standard_normal((6, n_volumes)) * scale, axis=1)


def _confounds(motion, physio, global_signal, rng: np.random.Generator) -> pd.DataFrame:
    """fMRIPrep-style confounds (as in fMRIPrep, derivatives and FD are n/a at the first volume)."""
    table = pd.DataFrame(motion.T, columns=list(CONFOUND_MOTION))
    deltas = table.diff().add_suffix("_derivative1")
    noise = rng.standard_normal((2, len(physio)))
    table = pd.concat([table, deltas], axis=1).assign(
        white_matter=700 * (1 + (0.5 * physio + 0.2 * noise[0]) / 100),
        csf=1500 * (1 + (1.5 * physio + 0.5 * noise[1]) / 100),
        global_signal=global_signal,
        framewise_displacement=deltas.iloc[:, :3].abs().sum(1, skipna=False)
        + 50.0 * deltas.iloc[:, 3:].abs().sum(1, skipna=False),  # Power et al. 2012, 50 mm head
    )
    return table


def _cattell_summary(ccids: list[str], scores: np.ndarray, rng: np.random.Generator) -> str:
    """A messy ``Cattell_summary.txt``: 8 preamble lines, tab-separated records, a footer."""
    preamble = [
        "# Cam-CAN cc700-scored: Cattell Culture Fair, Scale 2 Form A", "# release001",
        "# Scored by: automated scoring script", "# Subtests: Series (12), Classification (14),",
        "#   Matrices (12), Conditions (8); TotalScore = sum of subtests (0-46)",
        f"# Number of records: {len(ccids)}", "# Missing scores are coded n/a or left empty",
        "# " + "-" * 60,
    ]
    rows = ["CCID\tVersion\tSeries\tClassification\tMatrices\tConditions\tTotalScore\tComments"]
    for i, (ccid, score) in enumerate(zip(ccids, scores, strict=True)):
        if 1 <= i <= len(CAMCAN_BAD_SCORES):
            rows.append(f"{ccid}\tA\t\t\t\t\t{CAMCAN_BAD_SCORES[i - 1]}\ttest not completed")
        else:
            subtests = rng.multivariate_hypergeometric([12, 14, 12, 8], int(score))
            rows.append("\t".join([ccid, "A", *map(str, subtests), str(int(score)), ""]))
    return "\n".join([*preamble, *rows, f"End of summary: {len(ccids)} records"]) + "\n"


def _write_camcan_derivatives(out: Path, ccids, cohort: SimulatedCohort, atlas: Atlas, seed: int,
                              model, n_jobs: int, progress: bool) -> list[Path]:
    """fMRIPrep-style BOLD with motion artefacts, confounds and brain mask; returns BOLD paths."""
    age_frac = (cohort.phenotypes["age"].to_numpy() - 18.0) / 70.0
    rngs = [np.random.default_rng([seed, 3, i]) for i in range(len(ccids))]
    n_volumes = cohort.roi_timeseries.shape[2]
    motion = [_motion(rng, a, n_volumes) for rng, a in zip(rngs, age_frac, strict=True)]
    to_pct = 0.3 * np.array([1.0] * 3 + [50.0] * 3)[:, None]  # 0.3 % per mm, rotations at 50 mm
    artefacts = [to_pct * (m - m.mean(axis=1, keepdims=True)) for m in motion]
    root = out / "derivatives" / "fmriprep"
    stems = [root / f"sub-{c}/func/sub-{c}_task-Rest_space-MNI152NLin2009cAsym" for c in ccids]
    paths = [Path(f"{stem}_desc-preproc_bold.nii.gz") for stem in stems]
    global_signals = write_images(cohort, paths, atlas, seed, model, n_jobs, progress, artefacts)
    for i, stem in enumerate(stems):
        table = _confounds(motion[i], cohort.physio[i], global_signals[i], rngs[i])
        table.to_csv(f"{stem}_desc-confounds_timeseries.tsv", sep="\t", index=False, na_rep="n/a")
        mask = (atlas.labels > 0).astype(np.uint8)
        save_nifti(mask, atlas.affine, Path(f"{stem}_desc-brain_mask.nii.gz"))
    (root / "dataset_description.json").write_text(json.dumps(
        {"Name": "fMRIPrep (simulated)", "BIDSVersion": "1.4.0", "DatasetType": "derivative"}))
    return paths


def write_camcan_tree(
    out_dir: str | Path,
    n_subjects: int = 12,
    seed: int = 0,
    corrupt_subjects: int = 1,
    n_rois: int = 32,
    n_volumes: int = 150,
    t_r: float = 1.97,
    n_jobs: int = 1,
    progress: bool = False,
    model: GenerativeModel = GenerativeModel(),
) -> Path:
    """A Cam-CAN-shaped tree from the same generative core, for end-to-end tests.

    Writes fMRIPrep derivatives (``derivatives/fmriprep/sub-CC{110001 + i}/func/``: preprocessed
    BOLD with head-motion artefacts, confounds TSV, brain mask), ``standard_data.csv`` (CCID,
    Age, Sex, ...), the messy ``cc700-scored/Cattell/release001/summary/Cattell_summary.txt``
    (subjects 1-3 carry the unusable scores ``CAMCAN_BAD_SCORES``) and ``atlas.nii.gz``. The
    last ``corrupt_subjects`` subjects get a BOLD file nibabel cannot read (a truncated gzip;
    garbage bytes for every second one). Returns ``out_dir``.
    """
    out, rng = Path(out_dir), np.random.default_rng([seed, 4])
    atlas = make_atlas(n_rois)
    cohort = simulate_roi_timeseries(n_subjects, n_rois, n_volumes, t_r, seed, model=model)
    ccids = [f"CC{110001 + i}" for i in range(n_subjects)]
    paths = _write_camcan_derivatives(out, ccids, cohort, atlas, seed, model, n_jobs, progress)
    for j, path in enumerate(paths[n_subjects - corrupt_subjects :]):
        content = path.read_bytes()
        path.write_bytes(content[: len(content) // 2] if j % 2 == 0 else rng.bytes(4096))
    phenotypes = cohort.phenotypes
    pd.DataFrame({
        "Observations": np.arange(1, n_subjects + 1), "CCID": ccids,
        "Age": phenotypes["age"].astype(int),
        "Sex": phenotypes["sex"].map({"M": "MALE", "F": "FEMALE"}),
        "Hand": rng.integers(-100, 101, n_subjects), "Coil": 2, "MT_TR": 30,
    }).to_csv(out / "standard_data.csv", index=False)
    summary = out / "cc700-scored" / "Cattell" / "release001" / "summary" / "Cattell_summary.txt"
    summary.parent.mkdir(parents=True, exist_ok=True)
    summary.write_text(_cattell_summary(ccids, phenotypes["fluid_intelligence"].to_numpy(), rng))
    write_atlas(out, atlas)
    return out

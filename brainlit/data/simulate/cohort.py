"""A simulated cohort on disk, as BIDS (a NIfTI per subject) or as arrays (a ``[T, R]`` .npy
per subject), with participants, the true latents and a completion marker."""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from joblib import Parallel, delayed
from tqdm.auto import tqdm

from brainlit.data.simulate.atlas import Atlas, labels_table, make_atlas, network_modules
from brainlit.data.simulate.bold import CHUNK
from brainlit.data.simulate.images import write_atlas, write_subject_image
from brainlit.data.simulate.model import SIMULATOR_VERSION, GenerativeModel
from brainlit.data.simulate.scans import ScanPlan, Scans, simulate_scans
from brainlit.data.simulate.sites import SiteSpec, sites_table
from brainlit.errors import BrainlitDataError

log = logging.getLogger(__name__)

MARKER = ".complete"
SIMULATOR_NAME = "brainlit.data.simulate"
LATENTS = "simulation/latents.tsv"  # beside the cohort; never read as phenotypes
BLOCK = 4 * CHUNK  # subjects a worker makes and writes at once
CohortLayout = Literal["bids", "arrays"]


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
    layout: CohortLayout = "bids"


def _prepare_out_dir(out: Path, params: dict, overwrite: bool) -> bool:
    """True when ``out`` already holds this exact cohort; else clears it for writing (a cohort
    of other parameters only with ``overwrite``)."""
    marker, description = out / MARKER, out / "dataset_description.json"
    if marker.exists() and json.loads(marker.read_text()) == params:
        return True
    if marker.exists() and not overwrite:
        raise BrainlitDataError(
            f"{out} holds a simulated cohort with other parameters (see {marker}); "
            "pass overwrite=True (--overwrite) or choose another folder."
        )
    ours = description.exists() and SIMULATOR_NAME in description.read_text()
    if out.exists() and any(out.iterdir()) and not ours:
        raise BrainlitDataError(f"{out} is not empty and is not a brainlit simulated cohort; "
                                "choose an empty or new folder.")
    marker.unlink(missing_ok=True)
    for path in out.glob("sub-*"):  # ours: subjects of a half-written or other cohort
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    out.mkdir(parents=True, exist_ok=True)
    description.write_text(json.dumps({
        "Name": "brainlit simulated cohort", "BIDSVersion": "1.8.0", "DatasetType": "raw",
        "GeneratedBy": [{"Name": SIMULATOR_NAME, "Version": str(SIMULATOR_VERSION)}]}, indent=2))
    return False


def _write_subjects(scans: Scans, out: Path, layout: CohortLayout, atlas: Atlas | None,
                    plan: ScanPlan) -> None:
    """Each subject's files: a NIfTI (its own sidecar when the sites' TRs differ) or an array
    ``[T, R]`` with its sidecar."""
    per_subject_tr = plan.sites is not None and plan.sites.t_rs is not None
    for i, sid, bold, t_r in zip(scans.subjects, scans.participants["participant_id"],
                                 scans.roi_timeseries, scans.t_r, strict=True):
        if layout == "arrays":
            np.save(out / f"{sid}.npy", np.ascontiguousarray(bold.T, dtype=np.float32))
            (out / f"{sid}.json").write_text(json.dumps({"RepetitionTime": float(t_r)}))
            continue
        stem = out / sid / "func" / f"{sid}_task-rest_bold"
        write_subject_image(bold, atlas, float(t_r), Path(f"{stem}.nii.gz"), [plan.seed, 2, i], plan.model)
        if per_subject_tr:
            Path(f"{stem}.json").write_text(json.dumps({"RepetitionTime": float(t_r)}))


def _write_block(subjects: np.ndarray, plan: ScanPlan, out: Path, layout: CohortLayout,
                 atlas: Atlas | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Make and write one block of subjects (a worker's job); returns their participants and
    latents rows."""
    scans = simulate_scans(subjects, plan)
    _write_subjects(scans, out, layout, atlas, plan)
    return scans.participants, scans.latents


def _write_tables(out: Path, tables, plan: ScanPlan, layout: CohortLayout) -> None:
    """participants.tsv, the latents, the sites and the cohort's sidecar."""
    participants, latents = (pd.concat(t, ignore_index=True) for t in zip(*tables, strict=True))
    participants.to_csv(out / "participants.tsv", sep="\t", index=False)
    (out / LATENTS).parent.mkdir(exist_ok=True)
    latents.to_csv(out / LATENTS, sep="\t", index=False)
    if plan.sites is not None:
        sites = plan.sites.effects(plan.n_rois, plan.seed, plan.t_r)
        sites_table(sites).to_csv(out / "simulation" / "sites.tsv", sep="\t", index=False)
    if layout == "bids":
        sidecar = {"TaskName": "rest", "RepetitionTime": plan.t_r}
        if plan.sites is not None and plan.sites.t_rs is not None:
            del sidecar["RepetitionTime"]  # each run's own sidecar has it
        (out / "task-rest_bold.json").write_text(json.dumps(sidecar))


def _write_cohort(out: Path, n_subjects: int, plan: ScanPlan, layout: CohortLayout,
                  atlas: Atlas | None, n_jobs: int, progress: bool) -> None:
    """Everything but the marker: the regions, the subjects block by block, the tables."""
    if atlas is not None:
        write_atlas(out, atlas)
    else:
        (out / "simulation").mkdir(exist_ok=True)
        labels_table(network_modules(plan.n_rois, plan.n_modules)).to_csv(
            out / "simulation" / "atlas_labels.tsv", sep="\t", index=False)
    blocks = [np.arange(b, min(b + BLOCK, n_subjects)) for b in range(0, n_subjects, BLOCK)]
    jobs = (delayed(_write_block)(block, plan, out, layout, atlas) for block in blocks)
    tables = []
    with tqdm(total=n_subjects, desc="subjects written", disable=not progress) as bar:
        for block, table in zip(blocks, Parallel(n_jobs=n_jobs, return_as="generator")(jobs), strict=True):
            tables.append(table)
            bar.update(len(block))
    _write_tables(out, tables, plan, layout)


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
    layout: CohortLayout = "bids",
    sites: SiteSpec | None = None,
) -> CohortSummary:
    """Write a simulated cohort; a no-op when ``out_dir`` already holds it complete.

    ``bids``: ``atlas.nii.gz`` and a NIfTI per subject. ``arrays``: ``sub-XXXX.npy`` (``[T, R]``
    float32, percent signal change) and ``sub-XXXX.json`` (``RepetitionTime``) per subject, as
    ``--data.layout arrays`` reads them, and the regions in ``simulation/atlas_labels.tsv``.
    Both write ``participants.tsv`` (with ``site`` when ``sites`` is given) and each subject's
    true latent parameters in ``simulation/latents.tsv``, which no loader reads as phenotypes.
    ``out_dir/.complete`` (the parameters as JSON) is written last, so a half-written cohort is
    regenerated by the next call. Blocks of subjects are made and written by ``n_jobs`` worker
    processes; the output does not depend on ``n_jobs``.
    """
    start, out = time.perf_counter(), Path(out_dir)
    params = {"version": SIMULATOR_VERSION, "n_subjects": n_subjects, "n_rois": n_rois,
              "n_volumes": n_volumes, "t_r": t_r, "grid": list(grid), "seed": seed,
              "voxel_size_mm": voxel_size_mm, "n_modules": n_modules, "model": model.key()}
    params |= ({"layout": layout} if layout != "bids" else {}) | ({"sites": sites.key()} if sites else {})
    complete = _prepare_out_dir(out, params, overwrite)
    if not complete:
        plan = ScanPlan(n_rois, n_volumes, t_r, seed, n_modules, model, sites)
        atlas = make_atlas(n_rois, grid, voxel_size_mm, n_modules) if layout == "bids" else None
        _write_cohort(out, n_subjects, plan, layout, atlas, n_jobs, progress)
        (out / MARKER).write_text(json.dumps(params, indent=2))
    n_bytes = sum(path.stat().st_size for path in out.rglob("*") if path.is_file())
    seconds = time.perf_counter() - start
    log.info("%s %d subjects in %s (%.1f s)", "Found" if complete else "Wrote", n_subjects, out,
             seconds)
    return CohortSummary(out, n_subjects, n_rois, n_volumes, t_r, tuple(grid), voxel_size_mm, seed,
                         not complete, seconds, n_bytes, layout)

"""Find one resting-state run per subject and its phenotypes under a dataset root.

Layouts: BIDS raw, fMRIPrep derivatives, a Cam-CAN release tree (fMRIPrep derivatives plus
``standard_data.csv`` and ``Cattell_summary.txt``) and folders of pre-extracted ROI time series
(:mod:`brainlit.data.arrays`). Problems that concern the whole cohort (a missing root or
phenotype file, arrays stored the other way round, confounds files that cannot serve the
strategy) are found here, once, before any subject is processed.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pandas as pd

from brainlit.data.arrays import (
    ARRAY_SUFFIXES,
    ArrayLayout,
    as_time_by_roi,
    cohort_looks_transposed,
    cohort_roi_count,
    is_brainlit_output,
    sidecar_path,
    stored_shape,
)
from brainlit.data.confounds import Confounds, check_cohort_confounds
from brainlit.errors import BrainlitConfigError, BrainlitDataError

log = logging.getLogger(__name__)

Layout = Literal["auto", "bids", "fmriprep", "arrays"]
FMRIPREP_GLOBS = ("sub-*/**/func/sub-*_task-*_space-*_desc-preproc_bold.nii*",)
BIDS_GLOBS = ("sub-*/**/func/sub-*_task-*_bold.nii*",)
PHENOTYPE_FILES = ("participants.tsv", "standard_data.csv", "participant_data.csv")
CATTELL = "cc700-scored/Cattell/release001/summary/Cattell_summary.txt"
ID_COLUMNS = ("participant_id", "ccid", "observations", "subject_id", "subject")
RENAMES = {"totalscore": "fluid_intelligence", "cattell": "fluid_intelligence", "gender": "sex"}
SEX_CODES = {"m": 1.0, "male": 1.0, "f": 0.0, "female": 0.0}
SITE = "site"  # kept as text: the scanner a subject was scanned on (harmonisation, per-site summaries)


@dataclass(frozen=True)
class SubjectRecord:
    """One subject's run and phenotypes.

    Args:
        subject_id: BIDS-style id, always ``sub-<label>`` (``CC110033`` -> ``sub-CC110033``).
        bold_path: 4-D BOLD NIfTI, or None for pre-extracted series.
        confounds_path: fMRIPrep confounds TSV next to the run, if any.
        timeseries_path: Pre-extracted ROI time series file, if any.
        phenotypes: Phenotype values; NaN where missing (never 0).
        sidecar_path: BIDS-style ``<stem>.json`` next to an array file (its TR), if any.
        cohort_n_rois: ROI count most of the cohort's arrays share, for the orientation check
            (see :mod:`brainlit.data.arrays`); None when unknown.
    """

    subject_id: str
    bold_path: Path | None = None
    confounds_path: Path | None = None
    timeseries_path: Path | None = None
    phenotypes: dict[str, float | str] = field(default_factory=dict)
    sidecar_path: Path | None = None
    cohort_n_rois: int | None = None

    @property
    def source(self) -> Path:
        """The file the subject's time series comes from."""
        return self.bold_path or self.timeseries_path  # type: ignore[return-value]

    @property
    def input_files(self) -> list[Path]:
        """Every file the subject's cached series depends on."""
        paths = (self.bold_path, self.confounds_path, self.timeseries_path, self.sidecar_path)
        return [p for p in paths if p is not None]


def subject_id(raw: object) -> str:
    """Normalise ``CC110033``, ``sub-CC110033`` or ``110033`` to ``sub-<label>``."""
    label = str(raw).strip()
    label = label[4:] if label.startswith("sub-") else label
    return f"sub-{label}"


def _column(name: str) -> str:
    snake = re.sub(r"[^0-9a-zA-Z]+", "_", str(name)).strip("_").lower()
    return RENAMES.get(snake, snake)


def _numeric(series: pd.Series, name: str) -> pd.Series:
    """Numbers stay numbers; ``n/a``, empty and other text become NaN; sex codes map to 1/0."""
    if name == "sex":
        text = series.astype(str).str.strip().str.lower()
        mapped = text.map(SEX_CODES)
        return mapped.fillna(pd.to_numeric(series, errors="coerce"))
    return pd.to_numeric(series, errors="coerce")


def tidy_phenotypes(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """Index by ``subject_id``, snake-case columns, numeric values with NaN for missing.

    Sex is coded 1 = male, 0 = female (from M/F/male/female; numeric codes are kept as given).
    """
    table = table.rename(columns=_column)
    id_column = next((c for c in ID_COLUMNS if c in table and _looks_like_ids(table[c])), None)
    if id_column is None:
        raise BrainlitDataError(
            f"{path}: no subject id column (one of {', '.join(ID_COLUMNS)}) found; "
            "add a participant_id column."
        )
    ids = table[id_column].map(subject_id)
    values = {c: _site(table[c]) if c == SITE else _numeric(table[c], c) for c in table.columns if c not in ID_COLUMNS}
    frame = pd.DataFrame({c: v.to_numpy() for c, v in values.items()}, index=pd.Index(ids, name="subject_id"))
    return frame.loc[:, frame.notna().any()]


def _site(column: pd.Series) -> pd.Series:
    """Site labels as text, NaN where empty or ``n/a``."""
    text = column.astype(str).str.strip()
    return text.where(~text.str.lower().isin(["", "n/a", "na", "nan"]))


def _looks_like_ids(column: pd.Series) -> bool:
    if column.name == "participant_id":
        return True
    text = column.dropna().astype(str)
    return len(text) > 0 and not text.str.fullmatch(r"\d+").all()


def read_cattell_summary(path: Path) -> pd.DataFrame:
    """Cam-CAN ``Cattell_summary.txt``: skip the preamble and footer, keep ``TotalScore``.

    The header row is found as the line holding ``CCID``; records are lines that start with
    a CC id, so a footer or blank lines are ignored.
    """
    lines = path.read_text(errors="replace").splitlines()
    header = next((i for i, line in enumerate(lines) if "CCID" in line.split("\t")), None)
    if header is None:
        raise BrainlitDataError(f"{path}: no header row with a CCID column; is this a Cattell summary?")
    columns = lines[header].split("\t")
    rows = [line.split("\t") for line in lines[header + 1 :] if re.match(r"^\s*CC\d+", line)]
    rows = [row + [""] * (len(columns) - len(row)) for row in rows]
    table = pd.DataFrame([row[: len(columns)] for row in rows], columns=columns)
    return tidy_phenotypes(table[["CCID", "TotalScore"]], path)


def read_phenotype_table(path: Path) -> pd.DataFrame:
    """A TSV/CSV phenotype table (BIDS ``participants.tsv``, Cam-CAN ``standard_data.csv``...)."""
    if path.name == "Cattell_summary.txt":
        return read_cattell_summary(path)
    sep = "\t" if path.suffix in (".tsv", ".txt") else ","
    try:
        table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise BrainlitDataError(f"{path}: cannot read the phenotype table ({error}).") from error
    return tidy_phenotypes(table, path)


def load_phenotypes(root: Path, phenotypes_path: str | Path | None = None) -> pd.DataFrame:
    """Join every phenotype file found under ``root`` (or the one given) on subject_id."""
    if phenotypes_path and not Path(phenotypes_path).is_file():
        raise BrainlitConfigError(
            f"phenotype file {phenotypes_path} not found: set --data.phenotypes_path to an existing "
            f"TSV/CSV, or leave it unset to use {', '.join(PHENOTYPE_FILES)} under the data root.")
    paths = [Path(phenotypes_path)] if phenotypes_path else [
        p for p in (*(root / n for n in PHENOTYPE_FILES), root / CATTELL) if p.is_file()
    ]
    frame = pd.DataFrame(index=pd.Index([], name="subject_id"))
    for path in paths:
        table = read_phenotype_table(path)
        table = table[~table.index.duplicated(keep="first")]
        frame = frame.join(table[[c for c in table if c not in frame]], how="outer")
        log.info("Phenotypes: %d rows from %s", len(table), path)
    return frame


def _bold_globs(root: Path, layout: Layout, bold_glob: str | None) -> tuple[list[Path], str]:
    if bold_glob:
        return sorted(root.glob(bold_glob)), bold_glob
    bases = [root / "derivatives" / "fmriprep", root]
    if layout in ("auto", "fmriprep"):
        found = sorted({p for b in bases for g in FMRIPREP_GLOBS for p in b.glob(g)})
        if found or layout == "fmriprep":
            return found, " or ".join(FMRIPREP_GLOBS)
    found = [p for g in BIDS_GLOBS for p in root.glob(g) if "rest" in _task(p).lower()]
    return sorted(set(found)), "sub-*/func/sub-*_task-*rest*_bold.nii[.gz]"


def _task(path: Path) -> str:
    match = re.search(r"_task-([^_]+)", path.name)
    return match.group(1) if match else ""


def _confounds(bold: Path) -> Path | None:
    """fMRIPrep's confounds TSV of a preprocessed run.

    Named without or with the space entity, ``_timeseries.tsv`` (fMRIPrep >= 20.2) or
    ``_regressors.tsv`` (older releases), as nilearn's ``load_confounds`` looks for it.
    """
    stem = bold.name.split("_desc-preproc")[0]
    for suffix in ("timeseries", "regressors"):
        for prefix in (re.sub(r"_space-[^_]+", "", stem), stem):
            candidate = bold.with_name(f"{prefix}_desc-confounds_{suffix}.tsv")
            if candidate.is_file():
                return candidate
    return None


def _runs_by_subject(root: Path, layout: Layout, bold_glob: str | None) -> tuple[dict[str, list[Path]], str]:
    runs: dict[str, list[Path]] = {}
    if layout == "arrays":
        not_runs = {"participants", "phenotypes", *(Path(n).stem for n in PHENOTYPE_FILES)}
        for path in sorted(root.iterdir()):
            if path.suffix in ARRAY_SUFFIXES and path.stem not in not_runs and not is_brainlit_output(path):
                runs.setdefault(subject_id(path.stem), []).append(path)
        return runs, " / ".join(f"*{s}" for s in ARRAY_SUFFIXES)
    paths, pattern = _bold_globs(root, layout, bold_glob)
    for path in paths:
        label = re.match(r"(sub-[^_/]+)", path.name)
        runs.setdefault(label.group(1) if label else subject_id(path.parent.name), []).append(path)
    return runs, pattern


def discover_subjects(
    root: str | Path,
    layout: Layout = "auto",
    bold_glob: str | None = None,
    phenotypes_path: str | Path | None = None,
    array_key: str | None = None,
    array_layout: ArrayLayout = "TR",
    confounds: Confounds = "none",
    global_signal: bool = False,
) -> list[SubjectRecord]:
    """One record per subject with a run, phenotypes attached (NaN where missing).

    A subject with several matching runs keeps the first in sorted order; the others are
    named in a warning. Raises :class:`BrainlitConfigError` when the root, the phenotype file
    or any run is missing, when the arrays look stored the other way round as a whole, or when
    no confounds file can serve ``confounds``; warns once when confounds columns are computed.

    Args:
        root: Dataset root.
        layout: ``auto``, ``bids``, ``fmriprep`` or ``arrays``.
        bold_glob: Glob under root for the BOLD runs; overrides the layout's patterns.
        phenotypes_path: One phenotype table to use instead of those found under root.
        array_key: Variable/dataset of ``.mat``/HDF5 arrays (see :mod:`brainlit.data.arrays`).
        array_layout: ``TR`` (``[T, R]``) or ``RT``: how the arrays are stored.
        confounds: The parcellator's confound strategy, checked against the confounds files.
        global_signal: Whether the global signal is regressed too.
    """
    root = Path(root)
    if not root.is_dir():
        raise BrainlitConfigError(f"data root {root} is not a folder: set --data.root to your dataset.")
    runs, pattern = _runs_by_subject(root, layout, bold_glob)
    if not runs:
        raise BrainlitConfigError(
            f"no runs found under {root} (layout {layout!r}, searched {pattern}); "
            "check --data.root, or give --data.bold_glob / --data.layout arrays."
        )
    phenotypes = load_phenotypes(root, phenotypes_path)
    for sid, paths in sorted(runs.items()):
        if len(paths) > 1:
            log.warning("%s: duplicate runs, using %s and ignoring %s", sid, paths[0],
                        ", ".join(map(str, paths[1:])))
    first = {sid: paths[0] for sid, paths in sorted(runs.items())}
    if layout == "arrays":
        records = _array_records(root, first, phenotypes, array_key, array_layout)
    else:
        records = [SubjectRecord(sid, path, _confounds(path), phenotypes=_values(phenotypes, sid))
                   for sid, path in first.items()]
        check_cohort_confounds([r.confounds_path for r in records], confounds, global_signal)
    log.info("Found %d subjects under %s", len(records), root)
    return records


def _values(phenotypes: pd.DataFrame, sid: str) -> dict[str, float | str]:
    """A subject's known phenotype values: numbers, and the text ``site``."""
    values = phenotypes.loc[sid].to_dict() if sid in phenotypes.index else {}
    return {k: v if k == SITE else float(v) for k, v in values.items() if not pd.isna(v)}


def _array_records(root: Path, runs: dict[str, Path], phenotypes: pd.DataFrame,
                   array_key: str | None, array_layout: ArrayLayout) -> list[SubjectRecord]:
    """Records of array files, with the ROI count the cohort shares (orientation sign a)."""
    shapes = {}
    for sid, path in runs.items():
        try:
            shape = stored_shape(path, array_key)
        except (OSError, ValueError, KeyError):  # reported when the subject is parcellated
            continue
        if len(shape) == 2:
            shapes[sid] = as_time_by_roi(shape, array_layout)
    if cohort_looks_transposed(list(shapes.values())):
        n_t = next(iter(shapes.values()))[0]
        other = "RT" if array_layout == "TR" else "TR"
        raise BrainlitConfigError(
            f"the arrays under {root} look transposed: read as [T, R] (data.array_layout "
            f"{array_layout}) every one has {n_t} time points while their ROI counts differ, but "
            f"an atlas gives every subject the same ROI count; set data.array_layout: {other}.")
    n_rois = cohort_roi_count(list(shapes.values()))
    return [SubjectRecord(sid, timeseries_path=path, phenotypes=_values(phenotypes, sid),
                          sidecar_path=sidecar_path(path), cohort_n_rois=n_rois)
            for sid, path in runs.items()]

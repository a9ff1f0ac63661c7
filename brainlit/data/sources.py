"""Find one resting-state run per subject and its phenotypes under a dataset root.

Layouts: BIDS raw, fMRIPrep derivatives, a Cam-CAN release tree (fMRIPrep derivatives plus
``standard_data.csv`` and ``Cattell_summary.txt``) and folders of pre-extracted ROI time series.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd

from brainlit.errors import BrainlitDataError

log = logging.getLogger(__name__)

Layout = Literal["auto", "bids", "fmriprep", "arrays"]
FMRIPREP_GLOBS = ("sub-*/**/func/sub-*_task-*_space-*_desc-preproc_bold.nii*",)
BIDS_GLOBS = ("sub-*/**/func/sub-*_task-*_bold.nii*",)
ARRAY_SUFFIXES = (".npy", ".tsv", ".csv")
PHENOTYPE_FILES = ("participants.tsv", "standard_data.csv", "participant_data.csv")
CATTELL = "cc700-scored/Cattell/release001/summary/Cattell_summary.txt"
ID_COLUMNS = ("participant_id", "ccid", "observations", "subject_id", "subject")
RENAMES = {"totalscore": "fluid_intelligence", "cattell": "fluid_intelligence", "gender": "sex"}
SEX_CODES = {"m": 1.0, "male": 1.0, "f": 0.0, "female": 0.0}


@dataclass(frozen=True)
class SubjectRecord:
    """One subject's run and phenotypes.

    Args:
        subject_id: BIDS-style id, always ``sub-<label>`` (``CC110033`` -> ``sub-CC110033``).
        bold_path: 4-D BOLD NIfTI, or None for pre-extracted series.
        confounds_path: fMRIPrep confounds TSV next to the run, if any.
        timeseries_path: Pre-extracted ``[T, R]`` array file, if any.
        phenotypes: Phenotype values; NaN where missing (never 0).
    """

    subject_id: str
    bold_path: Path | None = None
    confounds_path: Path | None = None
    timeseries_path: Path | None = None
    phenotypes: dict[str, float] = field(default_factory=dict)

    @property
    def source(self) -> Path:
        """The file the subject's time series comes from."""
        return self.bold_path or self.timeseries_path  # type: ignore[return-value]


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
    values = {c: _numeric(table[c], c) for c in table.columns if c not in ID_COLUMNS}
    frame = pd.DataFrame(values).set_index(pd.Index(ids, name="subject_id"))
    return frame.loc[:, frame.notna().any()]


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
    """fMRIPrep's confounds TSV of a preprocessed run (named without or with the space entity)."""
    stem = bold.name.split("_desc-preproc")[0]
    for prefix in (re.sub(r"_space-[^_]+", "", stem), stem):
        candidate = bold.with_name(f"{prefix}_desc-confounds_timeseries.tsv")
        if candidate.is_file():
            return candidate
    return None


def _runs_by_subject(root: Path, layout: Layout, bold_glob: str | None) -> tuple[dict[str, list[Path]], str]:
    runs: dict[str, list[Path]] = {}
    if layout == "arrays":
        for path in sorted(root.iterdir()):
            if path.suffix in ARRAY_SUFFIXES and path.stem not in ("participants", "phenotypes"):
                runs.setdefault(subject_id(path.stem), []).append(path)
        return runs, "*.npy / *.tsv / *.csv"
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
) -> list[SubjectRecord]:
    """One record per subject with a run, phenotypes attached (NaN where missing).

    A subject with several matching runs keeps the first in sorted order; the others are
    named in a warning. Raises :class:`BrainlitDataError` when no run is found.
    """
    root = Path(root)
    if not root.is_dir():
        raise BrainlitDataError(f"data root {root} is not a folder: set --data.root to your dataset.")
    runs, pattern = _runs_by_subject(root, layout, bold_glob)
    if not runs:
        raise BrainlitDataError(
            f"no runs found under {root} (layout {layout!r}, searched {pattern}); "
            "check --data.root, or give --data.bold_glob / --data.layout arrays."
        )
    phenotypes = load_phenotypes(root, phenotypes_path)
    records = []
    for sid, paths in sorted(runs.items()):
        if len(paths) > 1:
            log.warning("%s: duplicate runs, using %s and ignoring %s", sid, paths[0],
                        ", ".join(map(str, paths[1:])))
        values = phenotypes.loc[sid].to_dict() if sid in phenotypes.index else {}
        values = {k: float(v) for k, v in values.items() if not (isinstance(v, float) and math.isnan(v))}
        path = paths[0]
        arrays = layout == "arrays"
        records.append(SubjectRecord(
            sid, None if arrays else path, None if arrays else _confounds(path),
            path if arrays else None, values,
        ))
    log.info("Found %d subjects under %s", len(records), root)
    return records


def load_array_timeseries(path: Path) -> np.ndarray:
    """A pre-extracted ``[T, R]`` series from ``.npy``, ``.tsv`` or ``.csv``, as float32."""
    if path.suffix == ".npy":
        return np.load(path).astype(np.float32)
    sep = "\t" if path.suffix == ".tsv" else ","
    table = pd.read_csv(path, sep=sep, header=None)
    if not np.issubdtype(table.dtypes.iloc[0], np.number):  # a header row
        table = pd.read_csv(path, sep=sep)
    return table.to_numpy(dtype=np.float32)

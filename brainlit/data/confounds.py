"""fMRIPrep confounds through nilearn's interface, with the expansion columns fMRIPrep defines.

``data.confounds`` names a nilearn strategy (``nilearn.interfaces.fmriprep``); nilearn chooses
the columns, demeans them and, for scrubbing, gives the sample mask of the volumes kept:

==========  ====================================================  ==============================
value       nilearn call                                          regressors
==========  ====================================================  ==============================
none        (no regression)
motion      ``load_confounds(strategy=("high_pass", "motion"),    6 motion + derivatives (12),
            motion="derivatives")``                               cosines
simple      ``load_confounds_strategy("simple")``                 motion + derivatives + squares
                                                                  (24), WM, CSF, cosines
scrubbing   ``load_confounds_strategy("scrubbing")``              24 motion, WM/CSF with
                                                                  expansions (8), cosines; volumes
                                                                  with FD > 0.5 mm or std DVARS >
                                                                  1.5 (and segments of < 5) removed
compcor     ``load_confounds_strategy("compcor")``                24 motion, cosines, every
                                                                  anatomical CompCor component
                                                                  (needs the confounds JSON)
==========  ====================================================  ==============================

``global_signal`` adds the global signal to any of them. The values are those brainlit had
before; ``motion`` keeps its 12 regressors, ``simple`` and ``scrubbing`` now follow nilearn's
published definitions (before: 14 regressors, and FD-only scrubbing without segment pruning).

Older fMRIPrep releases and custom pipelines write the base columns only. A missing
``<base>_derivative1`` (backward difference, n/a at the first volume), ``<base>_power2``
(square) or ``<base>_derivative1_power2`` (square of the difference) is computed from its base
column as fMRIPrep defines it, and ``framewise_displacement`` from the motion parameters
(Power et al. 2012, 50 mm head radius); a missing ``std_dvars`` leaves scrubbing on framewise
displacement alone. :func:`check_cohort_confounds` says so once for the cohort.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections import Counter
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from nilearn.interfaces.fmriprep import load_confounds, load_confounds_strategy
from nilearn.interfaces.fmriprep.load_confounds_strategy import preset_strategies

from brainlit.errors import BrainlitConfigError
from brainlit.logs import log_once

log = logging.getLogger(__name__)

Confounds = Literal["none", "motion", "simple", "scrubbing", "compcor"]
MOTION = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
MOTION_ONLY = {"strategy": ("high_pass", "motion"), "motion": "derivatives"}
SUFFIXES = {"basic": (), "derivatives": ("derivative1",), "power2": ("power2",),
            "full": ("derivative1", "power2", "derivative1_power2")}
FAMILIES = {"motion": MOTION, "wm_csf": ("csf", "white_matter"), "global_signal": ("global_signal",)}
HEAD_RADIUS_MM = 50.0
STEM = "sub-run"  # names of the private copy nilearn reads; only the entities matter


def nilearn_parameters(strategy: Confounds, global_signal: bool) -> dict:
    """The ``load_confounds`` arguments a strategy stands for (nilearn's presets, or motion)."""
    params = dict(MOTION_ONLY if strategy == "motion" else preset_strategies[strategy])
    params.pop("global_signal", None)
    if global_signal:
        params.update(strategy=(*params["strategy"], "global_signal"), global_signal="basic")
    return params


def needed_columns(strategy: Confounds, global_signal: bool) -> list[str]:
    """Columns of the confounds table the strategy reads (CompCor's come from the JSON)."""
    if strategy == "none":
        return []
    params = nilearn_parameters(strategy, global_signal)
    columns = []
    for family, bases in FAMILIES.items():
        if family in params["strategy"]:
            suffixes = SUFFIXES[params[family]]
            columns += [*bases, *(f"{b}_{s}" for b in bases for s in suffixes)]
    if "scrub" in params["strategy"]:
        columns += ["framewise_displacement", "std_dvars"]
    return columns


def _derivation(column: str, present: set[str]) -> str | None:
    """What a missing column is computed from (``base`` or ``motion``), or None if it cannot be."""
    if column == "framewise_displacement":
        return "motion" if set(MOTION) <= present else None
    if column == "std_dvars":
        return "n/a"
    for suffix in ("_derivative1_power2", "_derivative1", "_power2"):
        if column.endswith(suffix):
            return "base" if column[: -len(suffix)] in present else None
    return None


def _computed(table: pd.DataFrame, column: str) -> pd.Series | float:
    """A missing column from its base column(s); :func:`_derivation` said it can be."""
    if column == "framewise_displacement":
        delta = table[list(MOTION)].diff().abs()
        return delta.iloc[:, :3].sum(1, skipna=False) + HEAD_RADIUS_MM * delta.iloc[:, 3:].sum(1, skipna=False)
    if column == "std_dvars":
        return np.nan
    if column.endswith("_derivative1_power2"):
        return table[column.removesuffix("_derivative1_power2")].diff() ** 2
    if column.endswith("_derivative1"):
        return table[column.removesuffix("_derivative1")].diff()
    return table[column.removesuffix("_power2")] ** 2


def complete_columns(table: pd.DataFrame, needed: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The table with the missing columns of ``needed`` computed as fMRIPrep defines them."""
    present = set(table.columns)
    added = {c: _computed(table, c) for c in needed if c not in present and _derivation(c, present)}
    return table.assign(**added), list(added)


def load_run_confounds(confounds_path: Path, strategy: Confounds,
                       global_signal: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Regressors ``[T, K]`` and the sample mask (None: keep every volume) of one run.

    nilearn finds a confounds table from the image's file name; it is handed the table
    discovery found, completed, under canonical names in a private folder. So the columns,
    the demeaning and the scrubbing are nilearn's, while the file used is the one brainlit
    reports (and ``.nii`` runs or fMRIPrep's older ``_regressors.tsv`` name work too).
    Raises ``ValueError`` with nilearn's reason when the table cannot serve the strategy.
    """
    table = pd.read_csv(confounds_path, sep="\t", na_values=["n/a"])
    table, added = complete_columns(table, needed_columns(strategy, global_signal))
    if added:
        log.debug("%s: computed %s", confounds_path, ", ".join(added))
    with tempfile.TemporaryDirectory(prefix="brainlit-confounds-") as tmp:
        folder = Path(tmp)
        table.to_csv(folder / f"{STEM}_desc-confounds_timeseries.tsv", sep="\t", index=False, na_rep="n/a")
        if confounds_path.with_suffix(".json").is_file():  # CompCor components are listed there
            shutil.copy(confounds_path.with_suffix(".json"), folder / f"{STEM}_desc-confounds_timeseries.json")
        image = str(folder / f"{STEM}_desc-preproc_bold.nii.gz")  # only its name is read
        if strategy == "motion":
            regressors, sample_mask = load_confounds(image, **nilearn_parameters(strategy, global_signal))
        else:
            regressors, sample_mask = load_confounds_strategy(
                image, strategy, global_signal="basic" if global_signal else None)
    return regressors.to_numpy(float), sample_mask


def _header(path: Path) -> set[str] | None:
    try:
        return set(pd.read_csv(path, sep="\t", nrows=0).columns)
    except (OSError, ValueError):  # reported when the subject is parcellated
        return None


def check_cohort_confounds(paths: list[Path | None], strategy: Confounds, global_signal: bool) -> None:
    """Say once for the cohort what its confounds files lack, before any subject is processed.

    Columns brainlit computes (see the module docs) give one warning for the whole cohort. A
    column the strategy needs that no file has and none can be computed from is a
    :class:`BrainlitConfigError`; runs without a confounds file are named in one warning.
    """
    if strategy == "none":
        return
    missing_files = sum(p is None for p in paths)
    if missing_files:
        log_once(log, logging.WARNING, "%d of %d subjects have no fMRIPrep confounds file next to "
                 "their run: they are not denoised (data.confounds %s).", missing_files, len(paths), strategy)
    headers = {p: h for p in paths if p is not None and (h := _header(p)) is not None}
    computed, absent = Counter(), Counter()
    for columns in headers.values():
        for column in needed_columns(strategy, global_signal):
            if column not in columns:
                (computed if _derivation(column, columns) else absent)[column] += 1
    unusable = sorted(c for c, n in absent.items() if n == len(headers))
    if unusable:
        raise BrainlitConfigError(
            f"no confounds file of the cohort has {unusable}, which data.confounds {strategy} needs "
            f"(e.g. {next(iter(headers))}); choose another data.confounds (none, motion, simple, "
            "scrubbing, compcor) or regenerate the confounds with fMRIPrep.")
    if computed:
        _warn_computed(computed, headers, strategy)


def _warn_computed(computed: Counter, headers: dict[Path, set[str]], strategy: Confounds) -> None:
    columns = list(computed)  # in the strategy's order
    lacking = [p for p, h in headers.items() if not set(columns) <= h]
    shown = ", ".join(columns[:6]) + (f" ... ({len(columns)} columns)" if len(columns) > 6 else "")
    fd = "; framewise_displacement: Power et al. 2012, 50 mm head" if "framewise_displacement" in computed else ""
    dvars = " std_dvars is missing: scrubbing uses framewise displacement only." if "std_dvars" in computed else ""
    log_once(
        log, logging.WARNING,
        "The confounds files of %d of %d subjects (e.g. %s) lack columns data.confounds %s uses "
        "(%s): computed from the base columns as fMRIPrep defines them (_derivative1: backward "
        "difference; _power2: square; _derivative1_power2: square of the difference%s).%s",
        len(lacking), len(headers), lacking[0], strategy, shown, fd, dvars)

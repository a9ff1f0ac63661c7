"""Parcellate 4-D BOLD runs into ROI time series with nilearn maskers, validating every input."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
import pandas as pd
from nilearn import signal
from nilearn.maskers import NiftiLabelsMasker, NiftiMapsMasker, NiftiSpheresMasker

from brainlit.data.sources import SubjectRecord, load_array_timeseries
from brainlit.errors import BrainlitDataError

log = logging.getLogger(__name__)

Confounds = Literal["none", "motion", "simple", "scrubbing"]
MOTION = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
BUNDLED_COORDS = ("power264", "dosenbach160", "seitzman300")
FD_THRESHOLD_MM = 0.5


def bundled_coordinates(name: str) -> np.ndarray:
    """ROI centres ``[R, 3]`` (MNI mm) from the coordinate tables bundled with nilearn (offline)."""
    from nilearn import datasets

    if name == "power264":
        rois = datasets.fetch_coords_power_2011().rois
        return rois[["x", "y", "z"]].to_numpy(float)
    if name == "dosenbach160":
        return np.asarray(datasets.fetch_coords_dosenbach_2010().rois[["x", "y", "z"]], float)
    if name == "seitzman300":
        return np.asarray(datasets.fetch_coords_seitzman_2018().rois[["x", "y", "z"]], float)
    raise BrainlitDataError(f"unknown coordinate set {name!r}: use one of {BUNDLED_COORDS}.")


def read_tr(path: Path) -> float:
    """Repetition time in seconds from a NIfTI header (milliseconds are converted)."""
    header = nib.load(str(path)).header
    zooms = header.get_zooms()
    tr = float(zooms[3]) if len(zooms) > 3 else float("nan")
    unit = header.get_xyzt_units()[1]
    return tr / 1000.0 if unit == "msec" or tr > 100 else tr


class Parcellator:
    """Turns one subject's run into a cleaned ``[R, T]`` float32 ROI time series.

    Args:
        atlas: Labels NIfTI (integers, 0 = background), probabilistic 4-D maps NIfTI, a
            CSV/TSV of x,y,z sphere centres, or one of ``power264``/``dosenbach160``/
            ``seitzman300`` (bundled with nilearn). None means ``power264``.
        sphere_radius: Sphere radius in mm for coordinate atlases.
        confounds: Regressors from the fMRIPrep confounds file when there is one: ``motion``
            (6 parameters + derivatives), ``simple`` (motion + WM + CSF), ``scrubbing``
            (simple, and volumes with framewise displacement > 0.5 mm are removed).
        global_signal: Also regress out the global signal.
        detrend: Remove linear trends.
        standardize: z-score each ROI series over time.
        low_pass: Low-pass cut-off in Hz (None: off).
        high_pass: High-pass cut-off in Hz (None: off).
        t_r: Expected TR in seconds; a run whose header TR differs by more than 1 % is
            rejected. None takes each run's header TR.
        min_timepoints: Runs with fewer volumes are rejected.
    """

    def __init__(
        self,
        atlas: str | None = None,
        sphere_radius: float = 5.0,
        confounds: Confounds = "none",
        global_signal: bool = False,
        detrend: bool = True,
        standardize: bool = True,
        low_pass: float | None = None,
        high_pass: float | None = None,
        t_r: float | None = None,
        min_timepoints: int = 100,
    ) -> None:
        self.atlas = atlas or "power264"
        self.params = {
            "atlas": self.atlas, "sphere_radius": sphere_radius, "confounds": confounds,
            "global_signal": global_signal, "detrend": detrend, "standardize": standardize,
            "low_pass": low_pass, "high_pass": high_pass, "t_r": t_r, "min_timepoints": min_timepoints,
        }
        self.t_r, self.min_timepoints = t_r, min_timepoints

    @property
    def atlas_kind(self) -> Literal["labels", "maps", "coords"]:
        """What kind of atlas was given."""
        if self.atlas in BUNDLED_COORDS or Path(self.atlas).suffix in (".csv", ".tsv", ".txt"):
            return "coords"
        if not Path(self.atlas).is_file():
            raise BrainlitDataError(f"atlas {self.atlas} not found: give a NIfTI, a coordinates table or {BUNDLED_COORDS}.")
        return "maps" if len(nib.load(self.atlas).shape) == 4 else "labels"

    def fingerprint(self) -> str:
        """Hash of the atlas file bytes and every masker parameter: the cache key."""
        digest = hashlib.sha256(json.dumps(self.params, sort_keys=True).encode())
        if Path(self.atlas).is_file():
            digest.update(Path(self.atlas).read_bytes())
        return digest.hexdigest()

    def coordinates(self) -> np.ndarray:
        """ROI centres ``[R, 3]`` in world mm, for brain maps."""
        from nilearn import plotting

        kind = self.atlas_kind
        if kind == "labels":
            return np.asarray(plotting.find_parcellation_cut_coords(self.atlas), float)
        if kind == "maps":
            return np.asarray(plotting.find_probabilistic_atlas_cut_coords(self.atlas), float)
        if self.atlas in BUNDLED_COORDS:
            return bundled_coordinates(self.atlas)
        table = pd.read_csv(self.atlas, sep=None, engine="python")
        return table[[c for c in table.columns if c.lower() in ("x", "y", "z")]].to_numpy(float)

    def _masker(self, t_r: float):  # noqa: ANN202 - one of three nilearn maskers
        p = self.params
        common = dict(
            detrend=p["detrend"], standardize="zscore_sample" if p["standardize"] else False,
            low_pass=p["low_pass"], high_pass=p["high_pass"], t_r=t_r,
        )
        kind = self.atlas_kind
        if kind == "labels":
            return NiftiLabelsMasker(labels_img=self.atlas, keep_masked_labels=False, **common)
        if kind == "maps":
            return NiftiMapsMasker(maps_img=self.atlas, **common)
        return NiftiSpheresMasker(seeds=self.coordinates(), radius=p["sphere_radius"], **common)

    def transform(self, record: SubjectRecord, expected_tr: float | None = None) -> tuple[np.ndarray, float]:
        """Cleaned ROI series ``[R, T]`` and the run's TR; :class:`BrainlitDataError` if bad."""
        expected_tr = self.t_r or expected_tr
        if record.timeseries_path is not None:
            series, t_r = self._from_array(record, expected_tr)
        else:
            series, t_r = self._from_nifti(record, expected_tr)
        if not np.isfinite(series).all():
            raise BrainlitDataError(_msg(record, "the extracted series has NaN/Inf values", "check the run's brain coverage against the atlas"))
        return series.T.astype(np.float32), t_r

    def _from_nifti(self, record: SubjectRecord, expected_tr: float | None) -> tuple[np.ndarray, float]:
        img = load_bold(record)
        t_r = read_tr(record.bold_path)
        self._check_run(record, img.shape[3], t_r, expected_tr)
        confounds, sample_mask = self._confounds(record)
        masker = self._masker(expected_tr or t_r)
        try:
            return masker.fit_transform(img, confounds=confounds, sample_mask=sample_mask), t_r
        except ValueError as error:  # e.g. spheres outside the run's field of view
            detail = " ".join(str(error).split())[:160]  # nilearn lists every empty sphere
            raise BrainlitDataError(_msg(
                record, f"atlas {self.atlas} does not fit this run ({detail})",
                "give data.atlas in the runs' space (same template, covering the brain)",
            )) from error

    def _from_array(self, record: SubjectRecord, expected_tr: float | None) -> tuple[np.ndarray, float]:
        try:
            series = load_array_timeseries(record.timeseries_path)
        except (OSError, ValueError) as error:
            raise BrainlitDataError(_msg(record, f"unreadable array ({error})", "re-export it as [T, R]")) from error
        if series.ndim != 2:
            raise BrainlitDataError(_msg(record, f"array of shape {series.shape}, expected [T, R]", "re-export it as [T, R]"))
        if not np.isfinite(series).all():
            raise BrainlitDataError(_msg(record, "NaN/Inf in the series", "fix or drop this subject"))
        t_r = expected_tr or float("nan")
        self._check_run(record, series.shape[0], t_r, expected_tr)
        p = self.params
        cleaned = signal.clean(
            series, detrend=p["detrend"], standardize="zscore_sample" if p["standardize"] else False,
            low_pass=p["low_pass"], high_pass=p["high_pass"], t_r=expected_tr,
        )
        return cleaned, t_r

    def _check_run(self, record: SubjectRecord, n_volumes: int, t_r: float, expected_tr: float | None) -> None:
        if n_volumes < self.min_timepoints:
            raise BrainlitDataError(_msg(record, f"run too short: {n_volumes} volumes < min_timepoints {self.min_timepoints}", "lower data.min_timepoints or drop this subject"))
        if expected_tr and not abs(t_r - expected_tr) <= 0.01 * expected_tr:
            raise BrainlitDataError(_msg(record, f"TR {t_r:.3f} s differs from the cohort's {expected_tr:.3f} s", "resample the run or set data.t_r"))

    def _confounds(self, record: SubjectRecord) -> tuple[np.ndarray | None, np.ndarray | None]:
        strategy = self.params["confounds"]
        if strategy == "none" or record.confounds_path is None:
            if strategy != "none":
                log.warning("%s: no confounds file next to %s; not denoised", record.subject_id, record.bold_path)
            return None, None
        table = pd.read_csv(record.confounds_path, sep="\t", na_values=["n/a"])
        columns = [*MOTION, *(f"{m}_derivative1" for m in MOTION)]
        columns += ["white_matter", "csf"] if strategy in ("simple", "scrubbing") else []
        columns += ["global_signal"] if self.params["global_signal"] else []
        missing = [c for c in columns if c not in table]
        if missing:
            raise BrainlitDataError(_msg(record, f"confounds file {record.confounds_path} lacks {missing}", "use data.confounds: none or regenerate confounds"))
        sample_mask = None
        if strategy == "scrubbing" and "framewise_displacement" in table:
            sample_mask = np.flatnonzero(~(table["framewise_displacement"].fillna(0) > FD_THRESHOLD_MM).to_numpy())
        return table[columns].fillna(0.0).to_numpy(float), sample_mask


def load_bold(record: SubjectRecord) -> nib.Nifti1Image:
    """Load and check a 4-D run: readable, 4-D, finite."""
    path = record.bold_path
    try:
        img = nib.load(str(path))
        data = np.asanyarray(img.dataobj)
    except Exception as error:  # nibabel raises many types for corrupt files
        raise BrainlitDataError(_msg(record, f"cannot read NIfTI ({type(error).__name__}: {error})", "re-export or re-download the file")) from error
    if data.ndim != 4:
        raise BrainlitDataError(_msg(record, f"image is {data.ndim}-D {data.shape}, expected 4-D BOLD", "point data.bold_glob at the BOLD runs"))
    if not np.isfinite(data).all():
        raise BrainlitDataError(_msg(record, "NaN/Inf voxel values", "fix the preprocessing output"))
    return nib.Nifti1Image(data, img.affine, img.header)


def _msg(record: SubjectRecord, problem: str, action: str) -> str:
    return f"{record.subject_id} ({record.source}): {problem}; {action}."

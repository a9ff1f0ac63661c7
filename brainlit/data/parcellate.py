"""Parcellate 4-D BOLD runs into ROI time series with nilearn maskers, validating every input."""

from __future__ import annotations

import hashlib
import json
import logging
from fractions import Fraction
from pathlib import Path
from typing import Literal

import nibabel as nib
import numpy as np
import pandas as pd
from nilearn import signal
from nilearn.maskers import NiftiLabelsMasker, NiftiMapsMasker, NiftiSpheresMasker
from scipy import ndimage
from scipy.signal import resample_poly

from brainlit.data.arrays import (
    ArrayFileError,
    ArrayLayout,
    load_roi_array,
    orientation_problem,
    sidecar_tr,
    transposed_message,
)
from brainlit.data.confounds import Confounds, load_run_confounds
from brainlit.data.sources import SubjectRecord
from brainlit.errors import BrainlitConfigError, BrainlitDataError

log = logging.getLogger(__name__)

BUNDLED_COORDS = ("power264", "dosenbach160", "seitzman300")


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


def run_tr(record: SubjectRecord) -> float | None:
    """The TR a run declares: its NIfTI header, or its array's sidecar; None if neither says."""
    if record.bold_path is not None:
        return read_tr(record.bold_path)
    return sidecar_tr(record.sidecar_path) if record.sidecar_path is not None else None


def tr_differs(t_r: float, expected_tr: float | None) -> bool:
    """Whether a run's TR is more than 1 % from the cohort's (never, without a cohort TR)."""
    return bool(expected_tr) and not abs(t_r - expected_tr) <= 0.01 * expected_tr


def resample_series(series: np.ndarray, t_r: float, to_tr: float) -> np.ndarray:
    """``[T, R]`` series sampled every ``t_r`` s, resampled to one sample every ``to_tr`` s.

    scipy's polyphase resampling by the rational ratio nearest ``t_r / to_tr`` (denominator at
    most 100: a TR within 0.05 % for TRs of 0.5-3 s): its anti-aliasing low-pass keeps what lies
    below the slower rate's Nyquist frequency; the ends are padded by a fitted line.
    """
    ratio = Fraction(t_r / to_tr).limit_denominator(100)
    return resample_poly(series, ratio.numerator, ratio.denominator, axis=0, padtype="line")


def label_centres(atlas: str | Path) -> np.ndarray:
    """ROI centres ``[R, 3]`` (world mm) of a labels atlas, one per label the masker extracts.

    NiftiLabelsMasker extracts every label but the background 0, in sorted order; each centre
    is the centre of mass of that label's voxels. (nilearn's ``find_parcellation_cut_coords``
    drops the smallest label instead of label 0 when an atlas has no background.)
    """
    img = nib.load(str(atlas))
    data = np.asanyarray(img.dataobj).reshape(img.shape[:3])
    labels = np.unique(data[data != 0])
    index = np.where(data != 0, np.searchsorted(labels, data) + 1, 0)
    voxels = ndimage.center_of_mass(np.ones(data.shape), index, np.arange(1, len(labels) + 1))
    return nib.affines.apply_affine(img.affine, np.asarray(voxels, float).reshape(-1, 3))


class Parcellator:
    """Turns one subject's run into a cleaned ``[R, T]`` float32 ROI time series.

    Args:
        atlas: Labels NIfTI (integers, 0 = background), probabilistic 4-D maps NIfTI, a
            CSV/TSV of x,y,z sphere centres, or one of ``power264``/``dosenbach160``/
            ``seitzman300`` (bundled with nilearn). None means ``power264``.
        sphere_radius: Sphere radius in mm for coordinate atlases.
        confounds: Regressors from the fMRIPrep confounds file when there is one, chosen by
            nilearn: ``motion`` (6 parameters + derivatives), ``simple``, ``scrubbing``
            (volumes with high motion removed) or ``compcor``; the mapping is in
            :mod:`brainlit.data.confounds`.
        global_signal: Also regress out the global signal.
        detrend: Remove linear trends.
        standardize: z-score each ROI series over time.
        low_pass: Low-pass cut-off in Hz (None: off).
        high_pass: High-pass cut-off in Hz (None: off).
        t_r: Expected TR in seconds; a run whose TR (NIfTI header, or the ``RepetitionTime``
            of an array's sidecar JSON) differs by more than 1 % is rejected, or resampled.
            None takes each run's own TR.
        resample_tr: Resample a run of another TR to the expected one instead of rejecting it:
            cleaned (filtered) at its own TR, resampled (:func:`resample_series`), z-scored
            again when ``standardize``. A run resampled from a longer TR has nothing above its
            own Nyquist frequency. With ``confounds: scrubbing`` the kept volumes are treated
            as evenly spaced. Off by default: a model then sees only runs at its own TR.
        min_timepoints: Runs with fewer volumes are rejected.
        array_key: Variable/dataset holding the series in ``.mat``/HDF5 arrays; None takes
            the file's only numeric matrix.
        array_layout: How arrays are stored: ``TR`` (time points x ROIs) or ``RT``. An array
            that looks stored the other way round is rejected with a message that says so
            (the rule is in :mod:`brainlit.data.arrays`).
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
        array_key: str | None = None,
        array_layout: ArrayLayout = "TR",
        resample_tr: bool = False,
    ) -> None:
        self.atlas = atlas or "power264"
        self.params = {
            "atlas": self.atlas, "sphere_radius": sphere_radius, "confounds": confounds,
            "global_signal": global_signal, "detrend": detrend, "standardize": standardize,
            "low_pass": low_pass, "high_pass": high_pass, "t_r": t_r, "min_timepoints": min_timepoints,
            "array_key": array_key, "array_layout": array_layout, "resample_tr": resample_tr,
        }
        self.t_r, self.min_timepoints = t_r, min_timepoints

    def check_atlas(self) -> None:
        """Raise :class:`BrainlitConfigError` now if the atlas is not a bundled name or a file."""
        if self.atlas not in BUNDLED_COORDS and not Path(self.atlas).is_file():
            raise BrainlitConfigError(
                f"atlas {self.atlas} not found: set --data.atlas to a labels or maps NIfTI, a "
                f"coordinates table (x, y, z columns) or one of {', '.join(BUNDLED_COORDS)}.")

    @property
    def atlas_kind(self) -> Literal["labels", "maps", "coords"]:
        """What kind of atlas was given."""
        if self.atlas in BUNDLED_COORDS or Path(self.atlas).suffix in (".csv", ".tsv", ".txt"):
            return "coords"
        self.check_atlas()
        return "maps" if len(nib.load(self.atlas).shape) == 4 else "labels"

    def fingerprint(self) -> str:
        """Hash of the atlas file bytes and every masker parameter: the cache key.

        Checks the atlas first: a cache is never keyed on, or built from, a missing one.
        """
        self.check_atlas()
        digest = hashlib.sha256(json.dumps(self.params, sort_keys=True).encode())
        if Path(self.atlas).is_file():
            digest.update(Path(self.atlas).read_bytes())
        return digest.hexdigest()

    def discovery_options(self) -> dict:
        """What :func:`~brainlit.data.sources.discover_subjects` checks the cohort against."""
        return {k: self.params[k] for k in ("array_key", "array_layout", "confounds", "global_signal")}

    def coordinates(self) -> np.ndarray:
        """ROI centres ``[R, 3]`` in world mm, one per extracted ROI in the same order."""
        from nilearn import plotting

        kind = self.atlas_kind
        if kind == "labels":
            return label_centres(self.atlas)
        if kind == "maps":
            return np.asarray(plotting.find_probabilistic_atlas_cut_coords(self.atlas), float)
        if self.atlas in BUNDLED_COORDS:
            return bundled_coordinates(self.atlas)
        table = pd.read_csv(self.atlas, sep=None, engine="python")
        return table[[c for c in table.columns if c.lower() in ("x", "y", "z")]].to_numpy(float)

    def _masker(self, t_r: float):  # noqa: ANN202 - one of three nilearn maskers
        p = self.params
        common = dict(
            detrend=p["detrend"], standardize="zscore_sample" if p["standardize"] else None,
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
        if self.params["resample_tr"] and tr_differs(t_r, expected_tr):
            series, t_r = self._resampled(series, t_r, expected_tr), expected_tr
        if not np.isfinite(series).all():
            raise BrainlitDataError(_msg(record, "the extracted series has NaN/Inf values", "check the run's brain coverage against the atlas"))
        return series.T.astype(np.float32), t_r

    def _resampled(self, series: np.ndarray, t_r: float, to_tr: float) -> np.ndarray:
        resampled = resample_series(series, t_r, to_tr)
        if not self.params["standardize"]:
            return resampled
        return (resampled - resampled.mean(0)) / np.maximum(resampled.std(0, ddof=1), np.finfo(float).tiny)

    def _filter_tr(self, t_r: float, expected_tr: float | None) -> float:
        """The TR the cleaning filters at: the run's own where it is resampled afterwards."""
        return t_r if self.params["resample_tr"] and tr_differs(t_r, expected_tr) else expected_tr or t_r

    def _from_nifti(self, record: SubjectRecord, expected_tr: float | None) -> tuple[np.ndarray, float]:
        img = load_bold(record)
        t_r = read_tr(record.bold_path)
        self._check_run(record, img.shape[3], t_r, expected_tr)
        confounds, sample_mask = self._confounds(record, img.shape[3])
        masker = self._masker(self._filter_tr(t_r, expected_tr))
        try:
            return masker.fit_transform(img, confounds=confounds, sample_mask=sample_mask), t_r
        except ValueError as error:  # e.g. spheres outside the run's field of view
            detail = " ".join(str(error).split())[:160]  # nilearn lists every empty sphere
            raise BrainlitDataError(_msg(
                record, f"atlas {self.atlas} does not fit this run ({detail})",
                "give data.atlas in the runs' space (same template, covering the brain)",
            )) from error

    def _from_array(self, record: SubjectRecord, expected_tr: float | None) -> tuple[np.ndarray, float]:
        series, sidecar_t_r = self._read_array(record)
        self._check_orientation(record, series.shape)
        if not np.isfinite(series).all():
            raise BrainlitDataError(_msg(record, "NaN/Inf in the series", "fix or drop this subject"))
        t_r = sidecar_t_r or expected_tr or float("nan")
        self._check_run(record, series.shape[0], t_r, expected_tr)
        p = self.params
        cleaned = signal.clean(
            series, detrend=p["detrend"], standardize="zscore_sample" if p["standardize"] else None,
            low_pass=p["low_pass"], high_pass=p["high_pass"],
            t_r=self._filter_tr(sidecar_t_r, expected_tr) if sidecar_t_r else expected_tr,
        )
        return cleaned, t_r

    def _read_array(self, record: SubjectRecord) -> tuple[np.ndarray, float | None]:
        """The ``[T, R]`` series of an array file and its sidecar TR (None without one)."""
        try:
            series = load_roi_array(record.timeseries_path, self.params["array_key"], self.params["array_layout"])
            return series, sidecar_tr(record.sidecar_path) if record.sidecar_path else None
        except ArrayFileError as error:
            raise BrainlitDataError(f"{_where(record)}: {error}.") from error
        except (OSError, ValueError) as error:
            raise BrainlitDataError(_msg(record, f"unreadable array ({error})", "re-export it as [T, R]")) from error

    def _check_orientation(self, record: SubjectRecord, shape: tuple[int, int]) -> None:
        reason = orientation_problem(shape, record.cohort_n_rois, self.min_timepoints)
        if reason:
            raise BrainlitDataError(f"{_where(record)}: {transposed_message(shape, self.params['array_layout'], reason)}.")
        if record.cohort_n_rois and shape[1] != record.cohort_n_rois:
            raise BrainlitDataError(_msg(
                record, f"{shape[1]} ROIs where the cohort's other arrays have {record.cohort_n_rois}",
                "re-export it with the cohort's atlas or drop this subject"))

    def _check_run(self, record: SubjectRecord, n_volumes: int, t_r: float, expected_tr: float | None) -> None:
        other_tr = tr_differs(t_r, expected_tr)
        resampled = other_tr and self.params["resample_tr"] and np.isfinite(t_r)
        kept = round(n_volumes * t_r / expected_tr) if resampled else n_volumes
        if kept < self.min_timepoints:
            at = f" ({kept} at the cohort's TR {expected_tr:.3f} s)" if resampled else ""
            raise BrainlitDataError(_msg(record, f"run too short: {n_volumes} volumes{at} < min_timepoints {self.min_timepoints}", "lower data.min_timepoints or drop this subject"))
        if other_tr and not resampled:
            source = f" (RepetitionTime in {record.sidecar_path})" if record.bold_path is None else ""
            raise BrainlitDataError(_msg(record, f"TR {t_r:.3f} s{source} differs from the cohort's {expected_tr:.3f} s", "set data.resample_tr true to resample it, fix its TR or set data.t_r"))

    def _confounds(self, record: SubjectRecord, n_volumes: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """nilearn's regressors and sample mask for the run (see :mod:`brainlit.data.confounds`)."""
        strategy = self.params["confounds"]
        if strategy == "none" or record.confounds_path is None:
            if strategy != "none":  # the cohort's count is in discovery's warning
                log.debug("%s: no confounds file next to %s; not denoised", record.subject_id, record.bold_path)
            return None, None
        try:
            regressors, sample_mask = load_run_confounds(record.confounds_path, strategy, self.params["global_signal"])
        except (OSError, ValueError, KeyError) as error:
            detail = " ".join(str(error).split())[:240]
            raise BrainlitDataError(_msg(record, f"confounds file {record.confounds_path} cannot serve data.confounds {strategy} ({detail})", "choose another data.confounds or regenerate the confounds")) from error
        if len(regressors) != n_volumes:
            raise BrainlitDataError(_msg(record, f"confounds file {record.confounds_path} has {len(regressors)} rows for {n_volumes} volumes", "use the confounds of this run"))
        if sample_mask is not None and len(sample_mask) < self.min_timepoints:
            raise BrainlitDataError(_msg(record, f"scrubbing keeps {len(sample_mask)} of {n_volumes} volumes, under min_timepoints {self.min_timepoints}", "drop this subject or lower data.min_timepoints"))
        return regressors, sample_mask


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


def _where(record: SubjectRecord) -> str:
    return f"{record.subject_id} ({record.source})"


def _msg(record: SubjectRecord, problem: str, action: str) -> str:
    return f"{_where(record)}: {problem}; {action}."

"""Pre-extracted ROI time series as people have them: ``.npy``, ``.tsv``/``.csv``, MATLAB ``.mat``, HDF5.

Each file holds one subject's run as a matrix, ``[T, R]`` (time points x ROIs, ``array_layout:
TR``, the default) or ``[R, T]`` (``array_layout: RT``). In a ``.mat`` or HDF5 file the matrix
is the variable/dataset named by ``array_key``; without one, the file must hold exactly one
numeric matrix (both sides > 1, so a stored TR scalar or a label vector does not count), else
the error lists what it holds. MATLAB v7.3 files are HDF5 inside and are read with h5py; MATLAB
stores column-major, so their datasets are transposed back to the shape MATLAB shows.

The run's TR comes from a BIDS-style sidecar ``<stem>.json`` (``RepetitionTime``, seconds)
next to the file, when there is one.

**When an array looks transposed.** Read in the declared layout, an array has ``T`` rows (time
points) and ``R`` columns (ROIs). Nothing in a matrix says which side is time, so only these
signs are used, each reliable on its own:

a. *The cohort disagrees.* An atlas gives every subject the same ROI count, while run lengths
   may differ. When more than half of the cohort's arrays share one column count ``R*``, an
   array with ``R != R*`` columns but ``R*`` rows is transposed (with neither, it holds another
   ROI count, which is an error of its own). When no column count is shared by more than half
   of the arrays but every array has the same number of rows, the whole cohort is transposed.
b. *The run would be too short, the other way round not.* ``T < min_timepoints <= R``.
c. *Far more ROIs than time points.* ``R >= 8 T``: no resting-state run is that short for its
   atlas (100 volumes would take 800 ROIs), while ``[R, T]`` exports of long runs (94 ROIs x
   1200 volumes) are common.

A cohort stored the other way round whose arrays all have the same shape, with both sides of at
least ``min_timepoints`` and less than 8 apart, shows none of these signs: check the ROI count
the cache reports.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Literal

import h5py
import numpy as np
import pandas as pd
import scipy.io

ARRAY_SUFFIXES = (".npy", ".tsv", ".csv", ".mat", ".h5", ".hdf5")
ArrayLayout = Literal["TR", "RT"]
TRANSPOSED_RATIO = 8
NUMERIC_MAT_CLASSES = {"double", "single", "int8", "uint8", "int16", "uint16", "int32", "uint32",
                       "int64", "uint64", "logical"}


class ArrayFileError(ValueError):
    """An array or sidecar file that cannot be used; the message says what to do."""


def sidecar_path(path: Path) -> Path | None:
    """The BIDS-style sidecar ``<stem>.json`` next to an array file, if there is one."""
    sidecar = path.with_suffix(".json")
    return sidecar if sidecar.is_file() else None


def sidecar_tr(path: Path) -> float | None:
    """``RepetitionTime`` (seconds) of a sidecar JSON; None when it has none."""
    try:
        value = json.loads(path.read_text()).get("RepetitionTime")
    except (OSError, ValueError, AttributeError) as error:
        raise ArrayFileError(f"sidecar {path} is not a readable JSON object ({error}); fix or remove it") from error
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ArrayFileError(f"sidecar {path}: RepetitionTime {value!r} is not a positive number of seconds; fix it")
    return float(value)


def _is_matrix(shape: tuple[int, ...], dtype: np.dtype) -> bool:
    return len(shape) == 2 and min(shape) > 1 and np.issubdtype(dtype, np.number)


def _choose(path: Path, found: dict[str, tuple[tuple[int, ...], np.dtype]], key: str | None) -> str:
    """The variable to read: ``key``, else the only numeric matrix in the file."""
    listing = ", ".join(f"{name} {list(shape)}" for name, (shape, _) in found.items()) or "nothing"
    if key is not None:
        if key not in found:
            raise ArrayFileError(f"{path} has no array {key!r} (it holds {listing}); set data.array_key to one of them")
        return key
    matrices = [name for name, (shape, dtype) in found.items() if _is_matrix(shape, dtype)]
    if len(matrices) != 1:
        raise ArrayFileError(f"{path} holds {len(matrices)} numeric matrices ({listing}); "
                             "set data.array_key to the one with the ROI time series")
    return matrices[0]


def _hdf5_datasets(h5: h5py.File) -> dict[str, h5py.Dataset]:
    """Every dataset, by path (MATLAB's ``#refs#`` bookkeeping left out)."""
    datasets: dict[str, h5py.Dataset] = {}

    def keep(name: str, obj: h5py.HLObject) -> None:  # a non-None return would stop the visit
        if isinstance(obj, h5py.Dataset) and not name.startswith("#"):
            datasets[name] = obj

    h5.visititems(keep)
    return datasets


def _read_hdf5(path: Path, key: str | None, matlab: bool, shape_only: bool) -> np.ndarray | tuple[int, ...]:
    with h5py.File(path, "r") as h5:
        datasets = _hdf5_datasets(h5)
        found = {n: (d.shape[::-1] if matlab else d.shape, d.dtype) for n, d in datasets.items()}
        name = _choose(path, found, key)
        if shape_only:
            return found[name][0]
        data = datasets[name][()]
    return data.T if matlab else data


def _read_mat(path: Path, key: str | None, shape_only: bool) -> np.ndarray | tuple[int, ...]:
    try:
        if shape_only:
            found = {n: (s, np.dtype(np.float64 if c in NUMERIC_MAT_CLASSES else object))
                     for n, s, c in scipy.io.whosmat(str(path))}
            return found[_choose(path, found, key)][0]
        variables = {n: v for n, v in scipy.io.loadmat(str(path)).items() if not n.startswith("__")}
    except NotImplementedError:  # MATLAB v7.3: an HDF5 file
        return _read_hdf5(path, key, matlab=True, shape_only=shape_only)
    found = {n: (np.shape(v), np.asarray(v).dtype) for n, v in variables.items()}
    return variables[_choose(path, found, key)]


def _read_table(path: Path) -> np.ndarray:
    sep = "\t" if path.suffix == ".tsv" else ","
    table = pd.read_csv(path, sep=sep, header=None)
    if not np.issubdtype(table.dtypes.iloc[0], np.number):  # a header row
        table = pd.read_csv(path, sep=sep)
    return table.to_numpy(dtype=np.float64)


def stored_shape(path: Path, key: str | None = None) -> tuple[int, ...]:
    """The shape of the matrix a file holds, as stored, read from its header where it can be."""
    if path.suffix == ".npy":
        return np.load(path, mmap_mode="r").shape
    if path.suffix == ".mat":
        return tuple(_read_mat(path, key, shape_only=True))
    if path.suffix in (".h5", ".hdf5"):
        return tuple(_read_hdf5(path, key, matlab=False, shape_only=True))
    return _read_table(path).shape


def load_roi_array(path: Path, key: str | None = None, layout: ArrayLayout = "TR") -> np.ndarray:
    """The ``[T, R]`` float32 series a file holds (transposed when ``layout`` is ``RT``).

    Raises :class:`ArrayFileError` (a ``ValueError``) for a missing or ambiguous key, and
    ``OSError``/``ValueError`` from the readers for files they cannot parse.
    """
    if path.suffix == ".npy":
        data = np.load(path)
    elif path.suffix == ".mat":
        data = _read_mat(path, key, shape_only=False)
    elif path.suffix in (".h5", ".hdf5"):
        data = _read_hdf5(path, key, matlab=False, shape_only=False)
    else:
        data = _read_table(path)
    data = np.asarray(data)
    if not np.issubdtype(data.dtype, np.number) or data.ndim != 2:
        raise ArrayFileError(f"{path} holds a {data.dtype} array of shape {list(data.shape)}, "
                             "not a numeric matrix; re-export it as [T, R]")
    return (data.T if layout == "RT" else data).astype(np.float32)


def as_time_by_roi(shape: tuple[int, ...], layout: ArrayLayout) -> tuple[int, int]:
    """``(T, R)`` of a stored 2-D shape read in ``layout``."""
    rows, cols = shape[:2]
    return (cols, rows) if layout == "RT" else (rows, cols)


def cohort_roi_count(shapes: list[tuple[int, int]]) -> int | None:
    """``R*``: the ROI count more than half of the cohort's ``(T, R)`` shapes share, else None."""
    if not shapes:
        return None
    count, n = Counter(r for _, r in shapes).most_common(1)[0]
    return count if n > len(shapes) / 2 else None


def cohort_looks_transposed(shapes: list[tuple[int, int]]) -> bool:
    """Sign (a) for a whole cohort: no shared ROI count, but one shared run length."""
    return (len(shapes) > 1 and cohort_roi_count(shapes) is None
            and len({t for t, _ in shapes}) == 1)


def orientation_problem(shape: tuple[int, int], cohort_rois: int | None, min_timepoints: int) -> str | None:
    """Why an array read as ``(T, R)`` looks transposed (signs a-c of the module docs), or None."""
    n_t, n_r = shape
    if cohort_rois and n_r != cohort_rois and n_t == cohort_rois:
        return f"its {n_t} rows match the {cohort_rois} ROIs of the cohort's other arrays"
    if n_t < min_timepoints <= n_r:
        return f"{n_t} time points is under data.min_timepoints {min_timepoints}, {n_r} is not"
    if n_r >= TRANSPOSED_RATIO * n_t:
        return f"{n_r} ROIs is at least {TRANSPOSED_RATIO} times its {n_t} time points"
    return None


def transposed_message(shape: tuple[int, int], layout: ArrayLayout, reason: str) -> str:
    """The error text for an array that looks transposed, naming the option to set."""
    other = "RT" if layout == "TR" else "TR"
    return (f"the array looks transposed: read as [T, R] (data.array_layout {layout}) it has "
            f"{shape[0]} time points and {shape[1]} ROIs, but {reason}; if the file is stored "
            f"as {'[R, T]' if other == 'RT' else '[T, R]'}, set data.array_layout: {other}")


def is_brainlit_output(path: Path) -> bool:
    """A file brainlit wrote itself (a cache or its skip report), not a subject's array."""
    if path.name.endswith(".skipped.tsv"):
        return True
    if path.suffix not in (".h5", ".hdf5"):
        return False
    try:
        with h5py.File(path, "r") as h5:
            return "meta" in h5 and "fingerprint" in h5["meta"].attrs
    except OSError:
        return False

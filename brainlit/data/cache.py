"""Content-keyed, crash-safe HDF5 cache of ROI time series and phenotypes.

Layout::

    /meta                      attrs: format_version, fingerprint (atlas + masker), masker_params
    /meta/roi_coordinates      [R, 3] float64, when the atlas has coordinates
    /phenotypes                JSON table (subject_id index)
    /subjects/<id>/timeseries  [R, T] float32; attrs t_r, source, source_fingerprint, complete

A subject is written under ``/tmp-<id>`` and moved into ``/subjects`` only when complete, so a
killed build leaves nothing that reads as valid; the next build deletes leftovers and resumes.
A file HDF5 cannot open at all is moved aside to ``<name>.corrupt-<time>`` and rebuilt.
"""

from __future__ import annotations

import errno
import fcntl
import io
import json
import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TextIO

import h5py
import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from brainlit.data.parallel import Backend, Progress, parallel_backend
from brainlit.data.parcellate import Parcellator, run_tr, tr_differs
from brainlit.data.sources import SubjectRecord
from brainlit.errors import BrainlitDataError, BrainlitError, BrainlitOutputError
from brainlit.logs import log_once

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


@dataclass
class CacheReport:
    """What a cache build did."""

    path: Path
    built: int = 0
    reused: int = 0
    skipped: list[tuple[str, str, str]] = field(default_factory=list)  # (subject, file, reason)

    def summary(self) -> str:
        """Human-readable summary, with every skipped subject and why."""
        lines = [f"Cache {self.path}: {self.built + self.reused} subjects "
                 f"({self.built} built, {self.reused} reused), {len(self.skipped)} skipped"]
        lines += [f"  skipped {reason}" for _, _, reason in self.skipped]
        return "\n".join(lines)


def source_fingerprint(record: SubjectRecord) -> str:
    """Size and modification time of every input file of a subject."""
    paths = record.input_files
    return ";".join(f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in paths)


# errors that say the file is busy or not writable, not that it is damaged
NOT_WRITABLE = (errno.EAGAIN, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT)


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One builder at a time for a cache file; a second one says it waits, then finds it built.

    Without a lock file (a read-only folder) an up-to-date cache is still read. Errors writing
    the cache or its reports (read-only, full disk) name it; what it held stays valid.
    """
    lock = None
    try:
        lock = _acquire(path)
        yield
    except OSError as error:
        if isinstance(error, BrainlitError) or not str(error.filename or path).startswith(str(path)):
            raise  # not about the cache, e.g. an input file
        raise _not_writable(path, error) from error
    finally:
        if lock is not None:
            lock.close()


def _acquire(path: Path) -> TextIO | None:
    """An exclusive flock on ``<path>.lock``; None where the folder is read-only."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = open(f"{path}.lock", "w")  # closed by _locked
    except OSError as error:
        if error.errno in NOT_WRITABLE:
            return None
        raise
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.info("Another process is building %s: waiting for it (lock %s.lock)", path, path)
        fcntl.flock(lock, fcntl.LOCK_EX)
    return lock


def _not_writable(path: Path, error: OSError) -> BrainlitOutputError:
    return BrainlitOutputError(
        f"cannot write the cache {path} ({error}): make its folder writable and free some space, "
        "or set data.cache_path elsewhere. What the cache holds is kept."
    )


def _open_for_writing(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "a")
    except OSError as error:
        if error.errno == errno.EAGAIN or "already open" in str(error):
            raise BrainlitOutputError(
                f"cache {path} is open elsewhere (a running fit, a notebook?) and needs an "
                "update: close it there and run again."
            ) from error
        if error.errno in NOT_WRITABLE:
            raise _not_writable(path, error) from error
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}")
        path.rename(aside)
        log.warning("Cache %s was unreadable (%s): moved to %s and rebuilding", path, error, aside)
        return h5py.File(path, "a")


def _reset_if_stale(h5: h5py.File, parcellator: Parcellator) -> None:
    meta = h5.require_group("meta")
    key = parcellator.fingerprint()
    if meta.attrs.get("fingerprint") == key and meta.attrs.get("format_version") == FORMAT_VERSION:
        return
    if "subjects" in h5:
        log.info("Atlas, masker parameters or cache format changed: rebuilding every subject")
        del h5["subjects"]
    meta.attrs.update(fingerprint=key, format_version=FORMAT_VERSION,
                      masker_params=json.dumps(parcellator.params, sort_keys=True))
    if "roi_coordinates" in meta:
        del meta["roi_coordinates"]
    try:
        meta["roi_coordinates"] = parcellator.coordinates()
    except Exception as error:  # plots fall back to a heatmap without coordinates
        log.warning("No ROI coordinates for %s: %s", parcellator.atlas, error)


def _drop_leftovers(h5: h5py.File, keep: set[str]) -> None:
    for name in [n for n in h5 if n.startswith("tmp-")]:
        del h5[name]
    subjects = h5.require_group("subjects")
    for sid in list(subjects):
        if sid not in keep or not subjects[sid].attrs.get("complete", False):
            del subjects[sid]


def _extract(parcellator: Parcellator, record: SubjectRecord, expected_tr: float | None):  # noqa: ANN202
    try:
        series, t_r = parcellator.transform(record, expected_tr)
        return record, series, t_r, None
    except BrainlitDataError as error:
        return record, None, None, str(error)


def _write(h5: h5py.File, record: SubjectRecord, series: np.ndarray, t_r: float) -> None:
    tmp = f"tmp-{record.subject_id}"
    group = h5.create_group(tmp)
    group.create_dataset("timeseries", data=series, dtype="float32")
    group.attrs.update(t_r=t_r, source=str(record.source), source_fingerprint=source_fingerprint(record))
    group.attrs["complete"] = True
    if record.subject_id in h5["subjects"]:  # an outdated entry: replaced only once the new one is whole
        del h5["subjects"][record.subject_id]
    h5.move(tmp, f"subjects/{record.subject_id}")
    h5.flush()


def declared_trs(records: list[SubjectRecord]) -> Counter:
    """How many runs declare each TR (header or array sidecar, to the ms)."""
    trs = Counter()
    for record in records:
        try:
            trs[round(run_tr(record), 3)] += 1
        except Exception:  # unreadable runs, and arrays without a TR, are reported when parcellated
            continue
    return trs


def cohort_tr(records: list[SubjectRecord], t_r: float | None) -> float | None:
    """The configured TR, else the most common TR the runs declare (header or array sidecar)."""
    if t_r:
        return t_r
    trs = declared_trs(records)
    return trs.most_common(1)[0][0] if trs else None


def build_cache(
    records: list[SubjectRecord],
    parcellator: Parcellator,
    cache_path: str | Path,
    phenotypes: pd.DataFrame,
    n_jobs: int = 1,
    on_error: Literal["skip", "raise"] = "skip",
    backend: Backend = "loky",
    scheduler: str | None = None,
) -> CacheReport:
    """Parcellate what is new or changed, reuse the rest, write the skip report.

    Subjects that failed before with unchanged files and settings are not retried: they stay
    in the skip report. When nothing changed the file is only opened read-only, so readers
    in the same process can keep their handles.

    Args:
        records: Subjects found by :func:`~brainlit.data.sources.discover_subjects`.
        parcellator: Atlas and cleaning; its fingerprint keys the whole cache.
        cache_path: The HDF5 file.
        phenotypes: Phenotype table indexed by subject_id, stored beside the series.
        n_jobs: Worker processes for parcellation (one writer: this process).
        on_error: ``skip`` logs and lists bad subjects; ``raise`` stops at the first.
        backend: ``loky`` (local processes) or ``dask`` (a Dask cluster; see
            :mod:`brainlit.data.parallel`). Either way only this process writes the file.
        scheduler: Dask scheduler address or scheduler file; None starts a LocalCluster.
    """
    path = Path(cache_path)
    with _locked(path):  # the skip report too is read under the lock: another builder writes it
        known_failures = _known_failures(path, records, parcellator.fingerprint())
        if on_error == "raise" and known_failures:
            raise BrainlitDataError(known_failures[0][2])
        failed = {sid for sid, _, _ in known_failures}
        report = _current_report(path, records, parcellator, phenotypes, failed)
        if report is None:
            report = _update(path, [r for r in records if r.subject_id not in failed],
                             parcellator, phenotypes, on_error, (backend, scheduler, n_jobs))
        report.skipped = known_failures + report.skipped
        _write_skip_report(path, report, records, parcellator.fingerprint())
    head, *skipped = report.summary().splitlines()
    log.info(head)
    for line in skipped:  # an experiment opens the cache once per run: list each skip once
        log_once(log, logging.INFO, line)
    return report


def _current_report(path: Path, records: list[SubjectRecord], parcellator: Parcellator,
                    phenotypes: pd.DataFrame, failed: set[str]) -> CacheReport | None:
    """A report if the cache already holds exactly these subjects and phenotypes, else None."""
    if not path.is_file():
        return None
    try:
        with h5py.File(path, "r") as h5:
            meta = dict(h5["meta"].attrs) if "meta" in h5 else {}
            if meta.get("fingerprint") != parcellator.fingerprint() or "phenotypes" not in h5:
                return None
            wanted = [r for r in records if r.subject_id not in failed]
            stored = set(h5["subjects"]) if "subjects" in h5 else set()
            if stored != {r.subject_id for r in wanted} or any(n.startswith("tmp-") for n in h5):
                return None
            if not all(_reusable(h5, r) for r in wanted):
                return None
            if _as_text(h5["phenotypes"][()]) != phenotypes.to_json(orient="split"):
                return None
    except OSError:
        return None
    return CacheReport(path, reused=len(records) - len(failed))


def _update(path: Path, records: list[SubjectRecord], parcellator: Parcellator,
            phenotypes: pd.DataFrame, on_error: str, workers: tuple[Backend, str | None, int]) -> CacheReport:
    report = CacheReport(path)
    with _open_for_writing(path) as h5:
        h5.flush()  # flushed whenever it changed: a killed build leaves a file that opens and resumes
        _reset_if_stale(h5, parcellator)
        _drop_leftovers(h5, {r.subject_id for r in records})
        h5.flush()
        todo = [r for r in records if not _reusable(h5, r)]
        report.reused = len(records) - len(todo)
        if todo:
            expected_tr = cohort_tr(records, parcellator.t_r)
            if parcellator.params["resample_tr"]:
                _log_resampling(todo, expected_tr)
            with parallel_backend(*workers):
                _parcellate(h5, todo, expected_tr, parcellator, report, on_error, n_jobs=workers[2])
        _write_phenotypes(h5, phenotypes)
    return report


def _log_resampling(todo: list[SubjectRecord], expected_tr: float | None) -> None:
    for t_r, n in sorted(declared_trs(todo).items()):
        if tr_differs(t_r, expected_tr):
            log.info("%d runs at TR %.3g s: resampled to the cohort's %.3g s", n, t_r, expected_tr)


def _parcellate(h5: h5py.File, todo: list[SubjectRecord], expected_tr: float | None,
                parcellator: Parcellator, report: CacheReport, on_error: str, n_jobs: int) -> None:
    """Parcellate ``todo`` on the workers; this process writes each result as it arrives."""
    jobs = (delayed(_extract)(parcellator, r, expected_tr) for r in todo)
    results = Parallel(n_jobs=n_jobs, return_as="generator_unordered")(jobs)
    with Progress(len(todo), "Parcellating") as progress:
        for record, series, t_r, error in results:
            if error is not None:
                if on_error == "raise":
                    raise BrainlitDataError(error)
                log.warning("Skipping %s", error)
                report.skipped.append((record.subject_id, str(record.source), error))
            else:
                _write(h5, record, series, t_r)
                report.built += 1
            progress.update(built=report.built, reused=report.reused, skipped=len(report.skipped))


def _reusable(h5: h5py.File, record: SubjectRecord) -> bool:
    group = h5["subjects"].get(record.subject_id)
    return group is not None and group.attrs.get("source_fingerprint") == source_fingerprint(record)


def _write_phenotypes(h5: h5py.File, phenotypes: pd.DataFrame) -> None:
    if "phenotypes" in h5:
        del h5["phenotypes"]
    h5["phenotypes"] = phenotypes.to_json(orient="split")


def _as_text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw


def _write_skip_report(path: Path, report: CacheReport, records: list[SubjectRecord], key: str) -> None:
    """``<cache>.skipped.tsv``: subject, file, reason, plus what identifies the failed input."""
    by_id = {r.subject_id: r for r in records}
    rows = [(s, f, r, source_fingerprint(by_id[s]), key) for s, f, r in report.skipped]
    columns = ["subject_id", "file", "reason", "source_fingerprint", "cache_key"]
    text = pd.DataFrame(rows, columns=columns).to_csv(sep="\t", index=False)
    report_path, tmp = Path(f"{path}.skipped.tsv"), Path(f"{path}.skipped.tsv.tmp")
    if not report_path.is_file() or report_path.read_text() != text:  # else nothing to write (read-only folders)
        tmp.write_text(text)
        tmp.replace(report_path)


def _known_failures(path: Path, records: list[SubjectRecord], key: str) -> list[tuple[str, str, str]]:
    """Earlier failures whose input files and settings have not changed since."""
    report = Path(f"{path}.skipped.tsv")
    if not report.is_file() or not path.is_file():
        return []
    table = pd.read_csv(report, sep="\t", dtype=str, keep_default_na=False)
    by_id = {r.subject_id: r for r in records}
    return [
        (row.subject_id, row.file, row.reason) for row in table.itertuples()
        if row.subject_id in by_id and row.cache_key == key
        and row.source_fingerprint == source_fingerprint(by_id[row.subject_id])
    ]


class CacheReader:
    """Read-only access to a cache; the HDF5 handle opens lazily in each process.

    h5py handles must not cross ``fork``: a pickled reader (DataLoader workers) drops its
    handle and reopens on first use.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._h5: h5py.File | None = None

    @property
    def h5(self) -> h5py.File:
        """The open file (opened on first access)."""
        if self._h5 is None:
            if not self.path.is_file():
                raise BrainlitDataError(f"cache {self.path} does not exist: run `python -m brainlit cache`.")
            self._h5 = h5py.File(self.path, "r")
        return self._h5

    def close(self) -> None:
        """Release the file (before the cache is rebuilt in this process)."""
        if self._h5 is not None:
            self._h5.close()
            self._h5 = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "_h5": None}

    @property
    def subject_ids(self) -> list[str]:
        """Every complete subject, sorted."""
        subjects = self.h5.get("subjects", {})
        return sorted(s for s in subjects if subjects[s].attrs.get("complete", False))

    def timeseries(self, subject_id: str) -> np.ndarray:
        """The ``[R, T]`` float32 series of one subject."""
        return self.h5["subjects"][subject_id]["timeseries"][()]

    def window(self, subject_id: str, start: int, length: int) -> np.ndarray:
        """``[R, length]`` float32 from time point ``start`` of one subject, read alone from disk:
        a corpus of any size is streamed a training window at a time."""
        return self.h5["subjects"][subject_id]["timeseries"][:, start : start + length]

    def n_timepoints(self, subject_id: str) -> int:
        """T of one subject without reading the data."""
        return int(self.h5["subjects"][subject_id]["timeseries"].shape[1])

    @property
    def n_rois(self) -> int:
        """R, shared by every subject."""
        ids = self.subject_ids
        if not ids:
            skipped = Path(f"{self.path}.skipped.tsv")
            first = pd.read_csv(skipped, sep="\t")["reason"].head(1).tolist() if skipped.is_file() else []
            raise BrainlitDataError(
                f"cache {self.path} holds no valid subject; every run was skipped "
                f"(first reason: {first[0] if first else 'none found'}). Full list: {skipped}."
            )
        return int(self.h5["subjects"][ids[0]]["timeseries"].shape[0])

    @property
    def phenotypes(self) -> pd.DataFrame:
        """Phenotype table indexed by subject_id."""
        raw = self.h5["phenotypes"][()]
        frame = pd.read_json(io.StringIO(_as_text(raw)), orient="split")
        frame.index.name = "subject_id"
        return frame

    @property
    def roi_coordinates(self) -> np.ndarray | None:
        """ROI centres ``[R, 3]`` in mm, if the atlas has them."""
        meta = self.h5["meta"]
        return meta["roi_coordinates"][()] if "roi_coordinates" in meta else None

    @property
    def meta(self) -> dict:
        """Fingerprint, format version and masker parameters."""
        return dict(self.h5["meta"].attrs)

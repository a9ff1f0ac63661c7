"""Where the cache's parcellation runs (local processes or a Dask cluster), and its progress.

``loky`` runs ``n_jobs`` local worker processes. ``dask`` hands the same joblib calls to a
``dask.distributed`` cluster through joblib's dask backend: the cluster at ``scheduler`` (an
address such as ``tcp://10.0.0.5:8786``, or the JSON file ``dask scheduler --scheduler-file``
writes), or a :class:`~distributed.LocalCluster` of ``n_jobs`` single-threaded workers when
no scheduler is given. On SLURM, PBS, SGE or LSF start the cluster with dask-jobqueue
(``SLURMCluster(...).scale(jobs=...)``) or ``dask scheduler`` / ``dask worker`` in batch jobs,
and pass its address. Either way the workers only parcellate: every series comes back to the
driver, the only process that writes the HDF5 file.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal

from joblib import parallel_config
from tqdm.auto import tqdm

from brainlit.errors import BrainlitDataError

log = logging.getLogger(__name__)
Backend = Literal["loky", "dask"]


@contextmanager
def parallel_backend(backend: Backend, scheduler: str | None, n_jobs: int) -> Iterator[None]:
    """Route the joblib ``Parallel`` calls made inside the block to ``backend``.

    Args:
        backend: ``loky`` (local processes) or ``dask`` (a ``dask.distributed`` cluster).
        scheduler: Dask scheduler address or scheduler file; None starts a LocalCluster.
        n_jobs: Local processes (``loky``), or LocalCluster workers when no scheduler is given
            (``-1``: one per core).
    """
    if backend == "loky":
        yield
        return
    if backend != "dask":
        raise ValueError(f"data.backend must be 'loky' or 'dask', got {backend!r}.")
    if scheduler is None and n_jobs == 1:
        log.warning(
            "data.backend dask without data.scheduler starts a LocalCluster of "
            "data.n_jobs=1 worker: set data.n_jobs or data.scheduler."
        )
    with _dask_client(scheduler, n_jobs) as client:
        log.info(
            "Parcellating on the Dask cluster at %s (%d worker threads)",
            client.scheduler.address,
            sum(client.ncores().values()),
        )
        with parallel_config(backend="dask"):
            yield


@contextmanager
def _dask_client(scheduler: str | None, n_jobs: int) -> Iterator:
    try:
        from distributed import Client, LocalCluster
    except ImportError as error:
        raise BrainlitDataError(
            "data.backend dask needs dask.distributed: `pip install 'brainlit[cluster]'`."
        ) from error
    if scheduler is None:
        workers = n_jobs if n_jobs > 0 else None
        with LocalCluster(
            n_workers=workers, threads_per_worker=1, dashboard_address=None
        ) as cluster:
            with Client(cluster) as client:
                yield client
        return
    is_file = Path(scheduler).is_file()
    try:
        client = Client(scheduler_file=scheduler) if is_file else Client(scheduler)
    except OSError as error:
        raise BrainlitDataError(
            f"data.scheduler {scheduler}: no Dask scheduler answered ({error}). Start one (e.g. "
            "`dask scheduler`, or dask-jobqueue's SLURMCluster) and pass its address or "
            "scheduler file, or leave data.scheduler empty for a local cluster."
        ) from error
    with client:
        yield client


class Progress:
    """Progress of a loop: a tqdm bar on a terminal, plain log lines elsewhere.

    A bar in a CI or SLURM log becomes hundreds of carriage-return updates, so when stderr is
    not a terminal the bar is disabled and an INFO line is logged every ``every_s`` seconds
    (and at every tenth of the total), plus one at the end.

    Args:
        total: Number of items.
        desc: What is counted, e.g. ``Parcellating``.
        unit: Name of one item.
        every_s: Seconds between log lines when not on a terminal.
    """

    def __init__(self, total: int, desc: str, unit: str = "subject", every_s: float = 60.0) -> None:
        self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
        self.interactive = sys.stderr.isatty()
        self.done, self.start = 0, time.monotonic()
        self.last_logged, self.last_step = self.start, 0
        self.step = max(1, -(-total // 10))  # a line at every tenth of the total
        self.bar = tqdm(total=total, desc=desc, unit=unit, disable=not (total and self.interactive))

    def update(self, **postfix: int) -> None:
        """One more item done; ``postfix`` counts (built=..., skipped=...) go on the bar or line."""
        self.done += 1
        self.bar.update()
        self.bar.set_postfix(postfix)
        now = time.monotonic()
        if self.interactive:
            return
        if (
            self.done == self.total
            or self.done // self.step > self.last_step
            or now - self.last_logged >= self.every_s
        ):
            self.last_step, self.last_logged = self.done // self.step, now
            counts = ", ".join(f"{k} {v}" for k, v in postfix.items())
            elapsed, counts = now - self.start, f"; {counts}" if counts else ""
            log.info("%s: %d/%d %ss (%.0f s)%s", self.desc, self.done, self.total, self.unit,
                     elapsed, counts)  # fmt: skip

    def close(self) -> None:
        """Close the bar."""
        self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

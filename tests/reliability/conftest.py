"""Fault injection: a small cohort, the command line as a subprocess, processes killed on cue."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from brainlit.data.datamodule import FMRIDataModule
from brainlit.data.simulate import simulate_cohort
from tests.conftest import REPO


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Eight simulated subjects in BIDS (8 regions, 60 volumes at TR 2 s), atlas at the root."""
    root = tmp_path_factory.mktemp("cohort")
    simulate_cohort(root, n_subjects=8, n_rois=8, n_volumes=60, seed=3)
    return root


def data_args(root: Path, cache: Path, *extra: str) -> list[str]:
    """``--data.*`` arguments of the cache command for ``root``."""
    return ["--data.root", str(root), "--data.atlas", str(root / "atlas.nii.gz"),
            "--data.cache_path", str(cache), "--data.min_timepoints", "50", *extra]


def datamodule(root: Path, cache: Path, **kwargs) -> FMRIDataModule:
    """The datamodule the cache command builds from :func:`data_args`."""
    return FMRIDataModule(str(root), str(cache), atlas=str(root / "atlas.nii.gz"), min_timepoints=50, **kwargs)


def brainlit(*args: str, prefix: tuple[str, ...] = (), timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m brainlit ARGS`` as a user runs it (``prefix`` e.g. drops privileges)."""
    cmd = [*prefix, sys.executable, "-m", "brainlit", *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout)


def kill_when(args: list[str], appears: Path, pattern: str, delay: float = 0.0, timeout: float = 300) -> None:
    """Start ``python -m brainlit ARGS`` and SIGKILL it once a file matching ``pattern`` appears
    under ``appears`` (plus ``delay`` seconds). Fails if the command ends before that."""
    proc = subprocess.Popen([sys.executable, "-m", "brainlit", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    try:
        while not any(appears.glob(pattern)):
            assert proc.poll() is None, f"finished (status {proc.returncode}) before {pattern} appeared"
            assert time.monotonic() < deadline, f"{pattern} did not appear within {timeout} s"
            time.sleep(0.01)
        time.sleep(delay)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def read_only_prefix() -> tuple[str, ...]:
    """What makes a read-only folder read-only for a subprocess: nothing, or for root (who
    writes anywhere) ``setpriv`` dropping the capability to override file permissions."""
    if os.geteuid() != 0:
        return ()
    prefix = ("setpriv", "--bounding-set=-dac_override,-dac_read_search")
    if shutil.which("setpriv") and subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
        return prefix
    pytest.skip("running as root without setpriv: read-only folders cannot be simulated")


def make_read_only(folder: Path) -> None:
    """Remove write permission from ``folder`` and everything in it."""
    for path in [folder, *folder.rglob("*")]:
        path.chmod(path.stat().st_mode & ~0o222)

"""Shared fixtures: tiny cohorts written by the same simulator the demo uses."""

from pathlib import Path

import pytest
import torch

from brainlit.data.simulate import simulate_cohort, write_camcan_tree

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def tiny_bids(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20-subject BIDS cohort: 16 regions, 80 volumes at TR 2 s, labels atlas at root."""
    root = tmp_path_factory.mktemp("bids")
    simulate_cohort(root, n_subjects=20, n_rois=16, n_volumes=80, seed=1)
    return root


@pytest.fixture(scope="session")
def tiny_camcan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Cam-CAN-shaped tree of 16 subjects (110 volumes at TR 1.97 s), the last one's BOLD file corrupt."""
    root = tmp_path_factory.mktemp("camcan")
    write_camcan_tree(root, n_subjects=16, n_rois=16, n_volumes=110, seed=2, corrupt_subjects=1)
    return root


@pytest.fixture
def one_thread():
    """Tiny steps on a shared 2-core machine: a second thread only waits for the first."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

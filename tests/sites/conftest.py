"""One BLAS thread for the site estimators' tests."""

import pytest
from threadpoolctl import threadpool_limits


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Their many small SVDs gain nothing from a second thread, which on a busy 2-core machine
    only spins (one fit measured 35 s with two OpenBLAS threads, 0.2 s with one)."""
    with threadpool_limits(1):
        yield

"""Thread-pool limits for code that splits work over Python threads itself."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def one_thread_per_kernel() -> Iterator[None]:
    """torch and BLAS kernels on one thread each while Python threads split the work: two thread pools (torch's
    OpenMP and OpenBLAS, or several OpenMP teams) taking turns on two cores spin against each other. Threads
    started inside the block inherit the limit."""
    from threadpoolctl import threadpool_limits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        torch.set_num_threads(threads)

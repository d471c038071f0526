"""Guarding the process's thread counts against libraries that change them (FFCV)."""
from __future__ import annotations

import contextlib


@contextlib.contextmanager
def keep_thread_counts():
    """FFCV sets torch's (and numba's) thread count on import, in Loader() and per epoch;
    put back what the caller had."""
    # Imported here: `fastcifar prepare` (torch-free) reaches this module through the
    # FFCV shard writer, and must not load torch and numba unless it writes FFCV shards.
    import numba
    import torch

    torch_threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(torch_threads)
        numba.set_num_threads(numba_threads)

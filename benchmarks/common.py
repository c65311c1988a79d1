"""Shared timing helpers for the benchmarks: thread pinning, median step times, a table printer.

Run benchmarks by hand (never as tests), e.g. ``python benchmarks/bench_mlp.py --threads 2``. Set the
thread count *before* NumPy is imported: ``configure_threads`` must be called first thing.
"""

from __future__ import annotations

import os
import platform
import statistics
import time


def configure_threads(threads: int) -> None:
    """Pin BLAS and OpenMP thread pools (NumPy's and PyTorch's) to ``threads``; call before importing NumPy."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def interleaved_times(named_steps: dict, warmup: int, repeats: int) -> dict:
    """(median, min) ms of each step, timing them in turn, round after round, so that all see the same
    machine. On a machine shared with other work the minimum is the better estimate of the step's cost.

    The warm-up also runs every step in turn, as a GAN's training loop does: the process's malloc then
    reuses the memory that the largest arrays freed instead of mapping fresh pages for every step
    (first-touch page faults are costly on some virtual machines).
    """
    for _ in range(warmup):
        for step in named_steps.values():
            step()
    times = {name: [] for name in named_steps}
    for _ in range(repeats):
        for name, step in named_steps.items():
            start = time.perf_counter()
            step()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def try_import_torch(threads: int):
    """PyTorch if it is installed (it is never required), pinned to ``threads``; else None."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch

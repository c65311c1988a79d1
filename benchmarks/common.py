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


def time_step(step, warmup: int = 5, repeats: int = 30) -> float:
    """Median wall time of ``step()`` in milliseconds, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        step()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


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


def print_table(title: str, rows) -> None:
    """rows: (name, milliseconds, note) tuples; the first row is the reference for the ratio column."""
    print(title)
    reference = rows[0][1]
    for name, ms, note in rows:
        print(f"  {name:<34} {ms:9.2f} ms   {ms / reference:5.2f}x   {note}")

"""Shared helpers for the benchmarks: thread pinning, the backend flag, median step times, the machine.

Run benchmarks by hand (never as tests), e.g. ``python benchmarks/bench_mlp.py --threads 2``. Set the
thread count *before* NumPy is imported: ``configure_threads`` must be called first thing, so this module
imports neither NumPy nor scratchgen at the top.

Every benchmark that times scratchgen takes ``--backend numpy|cupy|strict`` (:func:`add_backend_flag`,
then :func:`apply_backend` once the threads are pinned). On ``cupy`` the GPU runs its kernels while
Python goes on, so a step's time means something only if the step ends by waiting for the device:
:func:`interleaved_times` calls scratchgen's ``backend.synchronize()`` after every step (a no-op on
NumPy). ``strict`` is the test backend of :mod:`scratchgen._strict`: NumPy underneath, but it refuses
host/device mixes as CuPy would, so a benchmark that runs on it has no hidden host copies (its times
mean nothing).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

BACKENDS = ("numpy", "cupy", "strict")


def configure_threads(threads: int) -> None:
    """Pin BLAS and OpenMP thread pools (NumPy's and PyTorch's) to ``threads``; call before importing NumPy."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(threads)


def add_backend_flag(parser) -> None:
    """``--backend numpy|cupy|strict`` (default numpy): where scratchgen's arrays live during the run; and
    ``--malloc keep|default`` (default keep): whether the C allocator keeps freed memory, as in the demos."""
    parser.add_argument("--backend", choices=BACKENDS, default="numpy",
                        help="scratchgen's array backend: numpy (CPU), cupy (NVIDIA GPU), or strict (a check "
                             "that no host array leaks into device code; its times mean nothing)")
    parser.add_argument("--malloc", choices=("keep", "default"), default="keep",
                        help="keep: glibc's malloc keeps freed memory for the next arrays, for every library in "
                             "the process (scratchgen.backend.keep_freed_memory, as the demos run); default: "
                             "leave malloc as it is, giving big blocks back to the kernel when freed")


def add_times_flag(parser) -> None:
    """``--times-json PATH``: also write the measured step times there, for :mod:`pairs` to read."""
    parser.add_argument("--times-json", metavar="PATH",
                        help="also write each library's median and minimum step time (ms) to PATH as JSON "
                             "(what benchmarks/pairs.py reads)")


def save_times(path: str | None, times: dict) -> None:
    """Write ``times``, {(library, step): (median ms, min ms)}, to ``path`` as a JSON list (nothing if
    ``path`` is None). The library is "scratchgen", "PyTorch ..." or the hand-written NumPy step's name."""
    if path is None:
        return
    rows = [{"library": library, "step": step, "median_ms": median, "min_ms": fastest}
            for (library, step), (median, fastest) in times.items()]
    Path(path).write_text(json.dumps(rows, indent=1))


def apply_backend(name: str, malloc: str = "keep") -> str:
    """Switch scratchgen to backend ``name`` and set the allocator as ``--malloc`` says; call after
    :func:`configure_threads`. Returns a line for the output saying what runs where (PyTorch, when
    compared, always runs on the CPU) and how memory is allocated."""
    import scratchgen  # here, not at the top: the threads must be pinned before NumPy loads

    scratchgen.set_backend(name)
    kept = malloc == "keep" and scratchgen.backend.keep_freed_memory()
    memory = "; malloc keeps freed memory (both libraries)" if kept else "; malloc as the C library has it"
    if name == "cupy":
        return ("backend cupy: scratchgen on the GPU, timed to the end of each step; PyTorch (if compared) on the CPU"
                + memory)
    if name == "strict":
        return ("backend strict: a host/device leak check, not a timing (NumPy underneath, CuPy's rules at the "
                "boundary)" + memory)
    return "backend numpy: everything on the CPU" + memory


def host_memory_measured(name: str) -> bool:
    """Whether host memory measures (tracemalloc, the resident set) say anything about scratchgen's arrays
    on backend ``name``: not on cupy, whose arrays live in GPU memory, which neither sees."""
    return name != "cupy"


HOST_MEMORY_NOTE = ("memory: not measured for scratchgen on cupy: tracemalloc and the resident set see host "
                    "memory only, and its arrays live on the GPU")


def synchronize() -> None:
    """Wait until the device has finished the work queued so far: scratchgen's ``backend.synchronize()``
    once scratchgen is imported (nothing to wait for on NumPy), else nothing."""
    backend = sys.modules.get("scratchgen.backend")
    if backend is not None:
        backend.synchronize()


def interleaved_times(named_steps: dict, warmup: int, repeats: int, synchronize=synchronize) -> dict:
    """(median, min) ms of each step, timing them in turn, round after round, so that all see the same
    machine. On a machine shared with other work the minimum is the better estimate of the step's cost.

    Each step is followed by ``synchronize()`` (by default scratchgen's, a no-op on NumPy) inside its
    time: on a GPU a step returns as soon as its kernels are queued, and without the wait its time would
    be the time to queue them, with the work itself billed to whichever step comes next.

    The warm-up also runs every step in turn, as a GAN's training loop does: the process's malloc then
    reuses the memory that the largest arrays freed instead of mapping fresh pages for every step
    (first-touch page faults are costly on some virtual machines).

    A caution on a machine with few cores: OpenBLAS keeps its threads spinning for about 0.1 s after each
    matrix product, so a PyTorch step that follows scratchgen's shares the cores with them, and its
    median can be several times its time alone (docs/benchmarks.md measures it). Compare medians from
    ``--only`` runs made one right after the other (``benchmarks/pairs.py`` does it), or set
    ``OPENBLAS_THREAD_TIMEOUT=4`` (the threads sleep at once), before reading a ratio from the
    interleaved ones.
    """
    for _ in range(warmup):
        for step in named_steps.values():
            step()
            synchronize()
    times = {name: [] for name in named_steps}
    for _ in range(repeats):
        for name, step in named_steps.items():
            start = time.perf_counter()
            step()
            synchronize()
            times[name].append((time.perf_counter() - start) * 1e3)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def floor_label(backend_name: str) -> str:
    """The name under which a script times its step written by hand in NumPy: the floor, which always
    runs on the CPU, as the label says where scratchgen runs elsewhere."""
    return "hand-written NumPy (floor)" if backend_name != "cupy" else "hand-written NumPy, CPU"


def adam_by_hand(params, grads, exp_avg, exp_avg_sq, step: int, lr: float, betas=(0.9, 0.999), eps=1e-8):
    """One Adam step on plain NumPy arrays, in place, for the hand-written floors of ``bench_mlp.py`` and
    ``bench_dcgan.py``: the same arithmetic as ``scratchgen.optim.Adam`` (one scratch array per parameter,
    the bias corrections folded into two scalars), so that the floors and scratchgen differ only in what
    the autograd and the layers add. ``step`` counts from 1."""
    import numpy as np  # here, not at the top: configure_threads must run before NumPy is imported

    beta1, beta2 = betas
    for p, g, m, v in zip(params, grads, exp_avg, exp_avg_sq):
        scratch = g * (1 - beta1)
        m *= beta1
        m += scratch  # m ← β1·m + (1-β1)·g
        np.multiply(g, g, out=scratch)
        scratch *= 1 - beta2
        v *= beta2
        v += scratch  # v ← β2·v + (1-β2)·g²
        np.sqrt(v, out=scratch)
        scratch *= 1 / math.sqrt(1 - beta2**step)  # a Python float: np.sqrt would give float64
        scratch += eps
        np.divide(m, scratch, out=scratch)
        scratch *= lr / (1 - beta1**step)
        p -= scratch


def host_reads_line(named_steps: dict) -> str:
    """On the strict backend: how many values each step reads back to the host (``.item()``, ``float()``,
    ``to_numpy``...), one run of each. Not leaks (those raise), but each is a wait for the GPU on CuPy."""
    from scratchgen import backend

    counts = []
    for name, step in named_steps.items():
        backend.strict_host_reads(reset=True)
        step()
        counts.append(f"{name if isinstance(name, str) else ' '.join(name)} {backend.strict_host_reads(reset=True)}")
    return "host reads per step (each a wait for the GPU on cupy): " + ", ".join(counts)


def machine() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def try_import_torch(threads: int):
    """PyTorch if it is installed (it is never required), pinned to ``threads``; else None. The benchmarks
    run it on the CPU whatever scratchgen's backend."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def require_torch(threads: int):
    """PyTorch, pinned to ``threads``, for a script whose whole point is a PyTorch reference (the toy flows',
    the toy diffusion's); without it, the script exits saying so."""
    torch = try_import_torch(threads)
    if torch is None:
        sys.exit(f"{Path(sys.argv[0]).name} needs PyTorch: it is the reference (pip install torch, in a venv of "
                 "its own: scratchgen never depends on it)")
    return torch

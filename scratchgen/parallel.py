"""Independent jobs shared among processes, one per core: for sampling a trained model in batches.

One Python process keeps one core busy. NumPy's matrix products can use more (OpenBLAS starts a thread per
core), but everything else a network does, the elementwise ops, the norms, the copies into a
convolution's columns and the autograd's bookkeeping, runs on one. Work made of independent parts, such
as drawing 2,000 samples in batches of 250, goes faster when processes each take a share of the batches,
each with one BLAS thread: they do not wait for each other, and nothing is shared but the inputs sent and
the results returned. On the 2-core VM of ``docs/benchmarks.md``, the diffusion demo's 2,000 DDIM samples
took 318 s in one process with two BLAS threads and 181 s in two processes with one each.

:func:`map_in_processes` does that with the standard library's process pool. Each worker is a fresh
interpreter (the "spawn" start method, the same on Linux, macOS and Windows), started with one BLAS thread
and the caller's backend. The function it runs must be importable by name, a function at the top level of
a module (a demo script's own functions count: the worker imports the script as a module, without running
its ``if __name__ == "__main__":`` block), and its arguments and results travel by pickle, so send arrays,
numbers and state dicts (``module.state_dict()``), not live objects. Results come back in the jobs'
order, so the outcome does not depend on the number of processes, up to the rounding of sums that the
number of BLAS threads changes. On the GPU (``cupy``) there is one device to share, and the jobs run one
after another in the calling process.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from scratchgen import backend

__all__ = ["map_in_processes", "default_processes"]

_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def default_processes() -> int:
    """The cores this process may run on (its CPU affinity where the system says, else the CPU count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def map_in_processes(function, jobs, processes: int | None = None) -> list:
    """``[function(*job) for job in jobs]``, computed by up to ``processes`` worker processes.

    Args:
        function: a function at the top level of an importable module (see the module docstring).
        jobs: a list of argument tuples, one call each; picklable.
        processes: at most this many workers (default: :func:`default_processes`); 1, a single job, or the
            cupy backend runs the calls here, one after another.

    Returns:
        The results, in the order of ``jobs``.
    """
    jobs = [tuple(job) for job in jobs]
    processes = min(processes or default_processes(), len(jobs))
    if processes <= 1 or backend.get_backend() == "cupy":
        return [function(*job) for job in jobs]
    # The workers read these when they start: one BLAS thread each, and the caller's backend.
    settings = dict.fromkeys(_THREAD_VARIABLES, "1")
    settings["SCRATCHGEN_BACKEND"] = backend.get_backend()
    with _environment(settings), ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("spawn"),
                                                     initializer=backend.keep_freed_memory) as pool:
        return list(pool.map(_call, [(function, job) for job in jobs]))


def _call(function_and_job):
    function, job = function_and_job
    return function(*job)


@contextlib.contextmanager
def _environment(settings: dict):
    """The environment variables ``settings`` for the block (for the workers it starts), restored after."""
    saved = {name: os.environ.get(name) for name in settings}
    os.environ.update(settings)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

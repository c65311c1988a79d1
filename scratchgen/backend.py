"""The backend seam: the one module that knows NumPy from CuPy.

Every array in scratchgen lives on the *active backend*: NumPy arrays on the CPU (the default) or CuPy
arrays on an NVIDIA GPU. Choose it with the environment variable ``SCRATCHGEN_BACKEND=cupy``, with
``scratchgen.set_backend("cupy")``, or for one block with ``with scratchgen.use_backend("cupy"): ...``.

Other modules never import ``cupy``. They write array code against :data:`xp`, a stand-in that forwards
every attribute to the active array module, so ``xp.exp(a)`` is ``numpy.exp(a)`` on the CPU and
``cupy.exp(a)`` on the GPU. The few things that differ between the two libraries live here as small
functions: moving arrays to and from the device, the random generator, scatter-add and strided views.

A third backend, ``strict``, is a test instrument: NumPy underneath, but its arrays refuse to turn into
NumPy arrays and its module has only CuPy's names, so host/device leaks fail on a machine without a GPU
(see :mod:`scratchgen._strict`).

This follows Chainer's ``get_array_module`` and needle's environment-variable backend.
"""

from __future__ import annotations

import contextlib
import functools
import os

import numpy

__all__ = [
    "xp", "set_backend", "get_backend", "use_backend", "is_array", "asarray", "to_numpy", "device_of", "scalar",
    "manual_seed", "rng", "bernoulli", "categorical", "fork_rng", "get_rng_state", "set_rng_state", "scatter_add",
    "as_strided", "synchronize", "nccl", "strict_host_reads", "keep_freed_memory", "BackendError", "DEFAULT_DTYPE",
]

DEFAULT_DTYPE = numpy.float32
"""Floating-point type of new parameters and of tensors made from Python numbers."""

_BACKENDS = ("numpy", "cupy", "strict")


class BackendError(RuntimeError):
    """Raised when a backend cannot be used, or when arrays from two devices meet."""


class _State:
    """The active backend: its name, array module, array type and random generator."""

    name = "numpy"
    module = numpy
    array_type = numpy.ndarray
    generator = numpy.random.default_rng(0)
    seed = 0


_state = _State()


class _ActiveArrayModule:
    """Forwards attribute access to the active array module: ``xp.zeros`` is ``numpy.zeros`` or ``cupy.zeros``."""

    def __getattr__(self, attr):
        return getattr(_state.module, attr)

    def __repr__(self):
        return f"<active array module: {_state.name}>"


xp = _ActiveArrayModule()


def _import_cupy():
    """Import CuPy and check that a GPU answers, or explain what to install."""
    try:
        import cupy
    except ImportError as err:
        raise BackendError(
            "The cupy backend needs CuPy, which is not installed. Install the prebuilt wheel that matches "
            "your CUDA version: `pip install cupy-cuda12x` (or `pip install -e .[gpu]`) for CUDA 12, "
            "`pip install cupy-cuda13x` for CUDA 13."
        ) from err
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDA driver missing or broken
        raise BackendError(f"CuPy is installed but no CUDA GPU could be used: {err}") from err
    if count == 0:
        raise BackendError("CuPy is installed but no CUDA GPU was found.")
    return cupy


def set_backend(name: str) -> None:
    """Make ``name`` ("numpy", "cupy" or "strict") the active backend for arrays created from now on.

    Tensors created before the switch keep their arrays; mixing them with new ones is an error that
    names both devices. The random generator is re-seeded with the last seed given to
    :func:`manual_seed` (0 by default), so a run is reproducible on each backend.

    Raises:
        ValueError: ``name`` is not a known backend.
        BackendError: "cupy" was asked for without CuPy or without a GPU.
    """
    name = name.lower()
    if name not in _BACKENDS:
        raise ValueError(f"set_backend: unknown backend {name!r}; expected one of {_BACKENDS}")
    if name == "numpy":
        _state.module, _state.array_type = numpy, numpy.ndarray
    elif name == "strict":  # imported here: only tests use it
        from scratchgen import _strict
        _state.module, _state.array_type = _strict.module, _strict.StrictArray
    else:
        cupy = _import_cupy()
        _state.module, _state.array_type = cupy, cupy.ndarray
    _state.name = name
    manual_seed(_state.seed)


def get_backend() -> str:
    """Name of the active backend: "numpy", "cupy" or "strict"."""
    return _state.name


@contextlib.contextmanager
def use_backend(name: str):
    """Switch to backend ``name`` for the body of a ``with`` block, then switch back.

    On leaving, the previous backend gets back its random generator exactly as it was, not re-seeded:
    draws after the block continue the stream from before it.
    """
    previous = (_state.name, _state.module, _state.array_type, _state.generator, _state.seed)
    set_backend(name)
    try:
        yield
    finally:
        _state.name, _state.module, _state.array_type, _state.generator, _state.seed = previous


def is_array(obj) -> bool:
    """True if ``obj`` is an array of the active backend."""
    return isinstance(obj, _state.array_type)


def device_of(array) -> str:
    """Where an array lives, in words: "cpu (numpy)", "gpu (cupy)" or "device (strict)"; for error messages."""
    if isinstance(array, numpy.ndarray):
        return "cpu (numpy)"
    module = type(array).__module__
    if module.split(".")[0] == "cupy":
        return "gpu (cupy)"
    return "device (strict)" if module == "scratchgen._strict" else f"{type(array).__name__} (not an array)"


def asarray(data, dtype=None):
    """Copy or move ``data`` (a NumPy or CuPy array, list or number) onto the active backend."""
    if _state.name == "numpy" and not isinstance(data, numpy.ndarray) and hasattr(data, "get"):
        data = data.get()  # a CuPy array coming back to the host
    return _state.module.asarray(data, dtype=dtype)


def to_numpy(x) -> numpy.ndarray:
    """The one way to bring data to the host: a NumPy array from an array of any backend, a Tensor
    (its data), a list or a number. No copy for a NumPy array; a device-to-host copy (``.get()``) for a
    CuPy or strict one."""
    if hasattr(x, "requires_grad"):  # a Tensor (this module sits below tensor.py and cannot import it)
        x = x.data
    if isinstance(x, numpy.ndarray):
        return x
    if hasattr(x, "get"):
        return x.get()
    return numpy.asarray(x)


def scalar(value, dtype=None):
    """A 0-d array of the active backend holding the Python number ``value``, made once and then reused.

    ``x * 2.0`` needs 2.0 as an array. Making a new one on every call would copy a number to the GPU
    each time (a small transfer that waits for the host), so the last few hundred are kept, keyed by
    backend, dtype and the value's bytes (so -0.0 and 0.0 stay apart). Shared arrays must never be
    written into: on NumPy they are read-only, so an op that tried would fail in the tests; CuPy arrays
    have no such flag.

    Args:
        value: a Python (or NumPy) number. dtype: its dtype; None infers it as ``numpy.asarray`` does.
    """
    host = numpy.asarray(value, dtype=dtype)
    return _cached_scalar(_state.name, host.dtype.str, host.tobytes())


@functools.lru_cache(maxsize=512)
def _cached_scalar(name: str, dtype: str, payload: bytes):
    array = _state.module.asarray(numpy.frombuffer(payload, dtype=dtype).reshape(()))
    if name == "numpy":
        array = array.copy()
        array.flags.writeable = False
    return array


def strict_host_reads(reset: bool = False) -> int:
    """How many values the strict backend has read back to the host so far: each ``.get()`` (so each
    :func:`to_numpy`), ``.item()``, ``.tolist()``, ``float()``, ``int()``, ``bool()`` or print of a strict array.
    On a GPU each is a copy the host waits for; a test counts them per training step. ``reset`` sets the
    count back to 0 after reading it."""
    from scratchgen import _strict

    count = _strict.host_reads
    if reset:
        _strict.host_reads = 0
    return count


def synchronize() -> None:
    """Wait for queued GPU work to finish (for timing); nothing to wait for on NumPy."""
    if _state.name == "cupy":
        _state.module.cuda.get_current_stream().synchronize()


def keep_freed_memory(largest: int = 32 * 2**20) -> bool:
    """Ask the C library's allocator to keep the memory of freed arrays for the next ones (Linux, glibc).

    Every op of a training step makes new arrays of a few MB and frees those of the last step. glibc's
    malloc serves blocks that big by asking the kernel for fresh pages (``mmap``) and gives them back on
    ``free``, so the next step's arrays touch new pages again, and the kernel fills each 4 KB page with
    zeros on its first touch: on the 2-core VM of ``docs/benchmarks.md`` that was about 340,000 page
    faults and a sixth of the CPU time of a U-Net training step. Two settings (``mallopt``) stop it:
    blocks up to ``largest`` bytes come from the heap rather than from ``mmap``, and freed memory stays
    in the heap instead of being trimmed off its top, so a step reuses the last step's pages (PyTorch's
    caching allocator does the same for its tensors). The price: the process keeps the memory of its
    largest step until it exits.

    The demos (:class:`scratchgen.experiment.Run`) and the benchmarks (for every library they time) call
    it; a script of your own may. It changes the whole process and cannot be undone, and does nothing on
    a C library without ``mallopt`` (macOS, musl) or off the CPU.

    Returns:
        whether the allocator took both settings.
    """
    if _state.name == "cupy":  # CuPy's memory pool already keeps the GPU's memory
        return False
    import ctypes  # here, not at the top: nothing else in scratchgen calls C directly

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (AttributeError, OSError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # glibc's <malloc.h>
    # The order matters: setting either one fixes both thresholds, which malloc otherwise adapts.
    return bool(mallopt(m_mmap_threshold, largest)) and bool(mallopt(m_trim_threshold, 2**31 - 1))


def nccl():
    """CuPy's NCCL binding (``cupy.cuda.nccl``), for :mod:`scratchgen.distributed`'s ``transport="nccl"``;
    ``import cupy`` does not load it, and only this module imports CuPy.

    Raises:
        BackendError: the active backend is not CuPy, or this CuPy was built without NCCL.
    """
    if _state.name != "cupy":
        raise BackendError("nccl: NCCL sums CuPy arrays; set_backend('cupy') first")
    try:
        from cupy.cuda import nccl as binding
    except ImportError as err:
        raise BackendError("nccl: this CuPy was built without NCCL (`python -c 'import cupy.cuda.nccl'` fails); "
                           "use SCRATCHGEN_MPI_TRANSPORT=host or cuda-aware") from err
    return binding


# --------------------------------------------------------------------------------------------- random


def manual_seed(seed: int) -> None:
    """Seed the random generator of the active backend (and remember the seed for a later switch).

    Every random draw in scratchgen (initialisers, dropout, noise, sampling) comes from :func:`rng`,
    so one call makes a run reproducible.
    """
    _state.seed = int(seed)
    _state.generator = _state.module.random.default_rng(_state.seed)


def rng():
    """The active backend's random generator (a ``numpy.random.Generator`` or CuPy's equivalent)."""
    return _state.generator


def bernoulli(probabilities):
    """A 0/1 draw for each entry, 1 with the given probability, in the probabilities' dtype, from :func:`rng`:
    the binary units of an RBM, the pixels of a sampler. (1 where a uniform draw falls below p.)"""
    return (rng().random(probabilities.shape, dtype=probabilities.dtype) < probabilities).astype(probabilities.dtype)


def categorical(weights, n: int, generator=None):
    """n indices drawn with probability weights[i] / Σ weights (weights ≥ 0, not all 0), from ``generator``
    (by default :func:`rng`): an integer array (n,) on the active device.

    The inverse of the cumulative distribution at n uniform draws, as CuPy's generator has no ``choice``
    with probabilities. ``side="right"`` never returns an index of weight 0: its cumulative sum equals
    its predecessor's.
    """
    xp = _state.module
    cumulative = xp.cumsum(weights.astype(numpy.float64))
    u = (rng() if generator is None else generator).random(n) * cumulative[-1]
    return xp.minimum(xp.searchsorted(cumulative, u, side="right"), len(weights) - 1).astype(xp.int64)


@contextlib.contextmanager
def fork_rng(seed: int):
    """Draw from a generator of its own, seeded with ``seed``, inside a ``with`` block; then give the
    caller's generator back exactly as it was, on either backend.

    PyTorch's ``torch.random.fork_rng()`` followed by ``manual_seed(seed)``, in one call. Nothing is
    copied or re-seeded on the way out: the caller's generator object is put aside during the block and
    put back after it, so draws after the block continue the caller's stream (CuPy's generator state
    cannot be saved, but it need not be), and the seed :func:`manual_seed` remembered for a later
    :func:`set_backend` is the caller's again.
    """
    saved = _state.generator, _state.seed
    manual_seed(seed)
    try:
        yield
    finally:
        _state.generator, _state.seed = saved


def get_rng_state() -> dict:
    """The generator's state as plain JSON-ready data, for checkpoints (NumPy backend only)."""
    if _state.name != "numpy":
        raise BackendError("get_rng_state: saving the random state is supported on the numpy backend only")
    return _state.generator.bit_generator.state


def set_rng_state(state: dict) -> None:
    """Restore a state returned by :func:`get_rng_state`."""
    if _state.name != "numpy":
        raise BackendError("set_rng_state: restoring the random state is supported on the numpy backend only")
    _state.generator.bit_generator.state = state


# ------------------------------------------------------------------ functions that differ between libraries


def scatter_add(target, indices, values) -> None:
    """``target[indices] += values`` where repeated indices add up (NumPy's ``add.at``), in place.

    On CuPy this is :func:`_scatter_add_by_bincount`, not CuPy's own ``cupyx.scatter_add`` (nor
    ``cupy.add.at``, which runs the same kernel): its documentation lists float32, int32, uint32 and
    uint64 as the types it supports with integer-array indices, and the gradient checks run in float64.
    ``bincount`` takes weights of any real dtype and sums them in float64, on both libraries.
    """
    if _state.name == "numpy":
        numpy.add.at(target, indices, values)
    else:
        _scatter_add_by_bincount(_state.module, target, indices, values)


def _scatter_add_by_bincount(xp, target, indices, values) -> None:
    """``target[indices] += values`` with repeats adding up, for any floating dtype, with array module ``xp``.

    Number the elements of ``target`` 0, 1, 2, ... and index those numbers as ``target`` would be
    indexed: that gives, for every element of ``target[indices]``, its flat position in ``target``, for
    any mix of slices, integer arrays (negative or repeated), masks and new axes. ``bincount`` with the
    values as weights then sums the values that land on each position, in float64 whatever the dtype.
    It costs two scratch arrays of ``target.size`` elements, which NumPy's ``add.at`` does not need, so
    NumPy keeps ``add.at``; the tests run this function with NumPy against it.
    """
    positions = xp.arange(target.size).reshape(target.shape)[indices]
    weights = xp.broadcast_to(xp.asarray(values), positions.shape)
    sums = xp.bincount(positions.reshape(-1), weights=weights.reshape(-1), minlength=target.size)
    target += sums.reshape(target.shape).astype(target.dtype, copy=False)


def as_strided(array, shape, strides):
    """A view of ``array``'s memory with the given shape and byte strides (no copy; only read from it).

    Both libraries have it as ``lib.stride_tricks.as_strided``; convolution builds its windows with it.
    """
    return _state.module.lib.stride_tricks.as_strided(array, shape=tuple(shape), strides=tuple(strides))


def _backend_from_environment() -> None:
    name = os.environ.get("SCRATCHGEN_BACKEND", "numpy").strip() or "numpy"
    if name.lower() != "numpy":
        set_backend(name)


_backend_from_environment()

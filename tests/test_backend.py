"""The backend seam: choosing a backend, clear errors without CuPy, and seeding."""

import ctypes
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import scratchgen as sg


def test_numpy_is_the_default_backend():
    """In a fresh interpreter without SCRATCHGEN_BACKEND (this one may run the suite on strict)."""
    environment = {name: value for name, value in os.environ.items() if name != "SCRATCHGEN_BACKEND"}
    probe = "import numpy, scratchgen as sg; print(sg.get_backend(), isinstance(sg.zeros(2).data, numpy.ndarray))"
    out = subprocess.run([sys.executable, "-c", probe], env=environment, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["numpy", "True"]


def test_the_strict_backend_is_chosen_by_name():
    with sg.use_backend("strict"):
        assert sg.get_backend() == "strict" and sg.backend.device_of(sg.zeros(2).data) == "device (strict)"


def test_unknown_backend_is_refused():
    with pytest.raises(ValueError, match="unknown backend 'torch'"):
        sg.set_backend("torch")


def test_asking_for_cupy_without_it_says_what_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_cupy(name, *args, **kwargs):
        if name == "cupy" or name.startswith("cupy."):
            raise ImportError("No module named 'cupy'")
        return real_import(name, *args, **kwargs)

    before = sg.get_backend()
    monkeypatch.setattr(builtins, "__import__", no_cupy)
    with pytest.raises(sg.backend.BackendError, match=r"pip install cupy-cuda12x.*cupy-cuda13x"):
        sg.set_backend("cupy")
    assert sg.get_backend() == before


def test_use_backend_restores_the_previous_backend_even_on_error():
    before = sg.get_backend()
    with pytest.raises(ZeroDivisionError):
        with sg.use_backend("strict" if before == "numpy" else "numpy"):
            1 / 0
    assert sg.get_backend() == before


def test_manual_seed_makes_draws_repeatable(backend):
    sg.manual_seed(7)
    a = sg.randn(5).numpy()
    sg.manual_seed(7)
    b = sg.randn(5).numpy()
    sg.manual_seed(8)
    c = sg.randn(5).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert sg.randn(3).dtype == np.float32


def test_rng_state_round_trip_on_numpy_and_a_clear_refusal_on_a_device():
    with sg.use_backend("numpy"):
        sg.manual_seed(3)
        state = sg.backend.get_rng_state()
        a = sg.rand(4).numpy()
        sg.backend.set_rng_state(state)
        np.testing.assert_array_equal(a, sg.rand(4).numpy())
    with sg.use_backend("strict"), pytest.raises(sg.backend.BackendError, match="numpy backend only"):
        sg.backend.get_rng_state()


def test_ops_run_on_each_backend(backend):
    x = sg.tensor(np.array([[1.0, 2.0], [3.0, 4.0]]), requires_grad=True)
    assert sg.backend.is_array(x.data)
    (x @ x).sum().backward()
    np.testing.assert_allclose(sg.backend.to_numpy(x.grad), [[7.0, 11.0], [9.0, 13.0]])


# ------------------------------------------------------------------------- scatter-add on CuPy


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape, index, values_shape", [
    ((5,), (np.array([0, 2, 2, 4, 0, 2]),), (6,)),  # repeats add up
    ((5,), (np.array([-1, 4, -5]),), (3,)),  # negative indices name the same elements as positive ones
    ((4, 3), (np.array([1, 1, 3]), np.array([0, 0, 2])), (3,)),  # one index array per axis
    ((4, 3), (np.array([[0, 1], [1, 0]]),), (2, 2, 3)),  # a 2-D index array picks whole rows
    ((4, 3), (slice(None), np.array([2, 2, 0])), (4, 3)),  # a slice beside an index array
    ((4, 3, 2), (Ellipsis, np.array([1, 1])), (4, 3, 2)),
    ((4, 3), (np.array([True, False, True, True]),), (3, 3)),  # a mask
    ((4, 3), (np.array([0, 0]), None), (2, 1, 3)),  # a new axis
    ((4, 3), (np.array([3, 3, 3]),), (3,)),  # values broadcast over the indexed rows
])
def test_the_cupy_scatter_add_algorithm_matches_numpy_add_at(shape, index, values_shape, dtype, rng):
    """backend.scatter_add on CuPy is _scatter_add_by_bincount, for float64 as well as float32 (CuPy's own
    scatter-add is documented for float32, int32, uint32, uint64 only). It is written against an array
    module passed in, so the same function runs here with NumPy, against numpy.add.at."""
    start = rng.standard_normal(shape).astype(dtype)
    values = rng.standard_normal(values_shape).astype(dtype)
    expected = start.copy()
    np.add.at(expected, index, values)
    result = start.copy()
    sg.backend._scatter_add_by_bincount(np, result, index, values)
    assert result.dtype == dtype
    np.testing.assert_allclose(result, expected, rtol=1e-6 if dtype == np.float32 else 1e-12)


def test_indexing_gradients_on_the_cupy_path_are_right_in_float64(monkeypatch):
    """The whole CuPy path of backend.scatter_add, run with NumPy arrays: the backend's name is made
    "cupy" (its module stays NumPy), so scatter_add takes its CuPy branch, which used to call
    cupyx.scatter_add. A float64 gradcheck through indexing with repeated indices must pass."""
    monkeypatch.setattr(sg.backend._state, "name", "cupy")
    x = sg.tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    assert x.dtype == np.float64
    rows = np.array([0, 2, 2, 0, 1])
    assert sg.gradcheck(lambda t: (t[rows] * t[rows]).sum(), [x])
    (x[rows]).sum().backward()
    np.testing.assert_array_equal(sg.backend.to_numpy(x.grad), [[2, 2], [1, 1], [2, 2]])


# ------------------------------------------------------------------------------------ random


def test_fork_rng_gives_back_the_callers_stream_and_seed():
    """Draws after the block continue the caller's stream, and the seed that set_backend re-seeds from
    is the caller's, not the block's."""
    sg.manual_seed(123)
    first = sg.randn(3).numpy()
    uninterrupted = sg.randn(3).numpy()
    sg.manual_seed(123)
    sg.randn(3)
    with sg.backend.fork_rng(5):
        inside = sg.randn(3).numpy()
    np.testing.assert_array_equal(sg.randn(3).numpy(), uninterrupted)
    sg.manual_seed(5)
    np.testing.assert_array_equal(sg.randn(3).numpy(), inside)  # the block drew from seed 5
    sg.manual_seed(123)
    with sg.backend.fork_rng(5):
        pass
    sg.set_backend("numpy")  # re-seeds with the remembered seed
    np.testing.assert_array_equal(sg.randn(3).numpy(), first)


def test_fork_rng_needs_no_saved_state_so_it_works_with_cupys_generator(monkeypatch):
    """CuPy's generator has no state to save (no bit_generator.state); fork_rng puts the caller's generator
    object aside and back, so it never needs one. A generator with nothing but draws stands in for it."""

    class StatelessGenerator:
        def standard_normal(self, size, dtype):
            return np.full(size, 7.0, dtype=dtype)

    caller = StatelessGenerator()
    monkeypatch.setattr(sg.backend._state, "generator", caller)
    with sg.backend.fork_rng(0):
        assert not np.all(sg.randn(3).numpy() == 7.0)
    assert sg.backend.rng() is caller


# ------------------------------------------------------------------------------- constants


def test_a_python_number_operand_is_one_shared_read_only_array_not_a_new_one_per_call(monkeypatch):
    """``x * 2.0`` needs 2.0 as an array of the backend; on a GPU a new one per call is a copy from the host
    every time. Count the active module's asarray calls over ten products: one at most. The shared array
    is read-only on NumPy, so an op that wrote into it would fail here, not corrupt later products.
    (On NumPy: the counting module below is NumPy's.)"""
    sg.set_backend("numpy")  # the autouse fixture puts the session's backend back afterwards
    calls = []

    class CountingModule:
        def __getattr__(self, name):
            return getattr(np, name)

        def asarray(self, *args, **kwargs):
            calls.append(args)
            return np.asarray(*args, **kwargs)

    x = sg.tensor([1.0, 2.0], requires_grad=True)
    monkeypatch.setattr(sg.backend._state, "module", CountingModule())
    for _ in range(10):
        y = x * 2.75  # a number no other test uses, so not cached yet
    assert len(calls) <= 1
    np.testing.assert_array_equal(y.numpy(), [2.75, 5.5])
    constant = sg.backend.scalar(2.5, dtype=np.float32)
    assert constant.dtype == np.float32 and constant.shape == () and not constant.flags.writeable
    assert sg.backend.scalar(-0.0, np.float32) is not sg.backend.scalar(0.0, np.float32)
    assert np.signbit(sg.backend.scalar(-0.0, np.float32))


def test_categorical_draws_follow_the_weights_and_never_a_zero_weight():
    sg.manual_seed(0)
    weights = sg.backend.asarray(np.array([2.0, 0.0, 1.0, 1.0]))
    draws = sg.backend.to_numpy(sg.backend.categorical(weights, 40_000))
    shares = np.bincount(draws, minlength=4) / 40_000
    assert shares[1] == 0
    np.testing.assert_allclose(shares, [0.5, 0.0, 0.25, 0.25], atol=0.01)  # binomial sd at most 0.0025


def test_keep_freed_memory_lets_the_next_arrays_reuse_the_pages_of_the_last():
    """In a fresh process: after the call, arrays of a few MB made and freed over and over touch no new page."""
    probe = textwrap.dedent("""
        import resource, numpy as np, scratchgen as sg
        if not sg.backend.keep_freed_memory():
            print("unsupported"); raise SystemExit
        def one_round():  # arrays of 2 to 9 MB, every page written, three alive at a time, as a step's are
            alive = []
            for mb in (3, 5, 7, 9, 6, 4, 8, 2):
                alive.append(np.ones(mb * 2**18, dtype=np.float32))
                alive = alive[-3:]
        one_round()
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            one_round()
        print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
    """)
    environment = {name: value for name, value in os.environ.items() if name != "SCRATCHGEN_BACKEND"}  # on NumPy
    out = subprocess.run([sys.executable, "-c", probe], env=environment, capture_output=True, text=True,
                         check=True).stdout.split()
    if out == ["unsupported"]:  # macOS, musl: the call must say it did nothing, and only where there is no mallopt
        assert not hasattr(ctypes.CDLL(None), "mallopt"), "keep_freed_memory refused although mallopt exists"
        return
    pages_written = 44 * 2**20 // 4096  # per round: 11,264 (glibc's default gave back 2,442 faults per round)
    assert float(out[0]) < 0.01 * pages_written

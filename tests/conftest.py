"""Shared fixtures: the ``backend`` fixture runs a test on NumPy, on the strict device stand-in (see
``scratchgen/_strict.py``) and, where a GPU is present, on CuPy."""

import os

# The tests' matrices are small: one BLAS thread computes them as fast as two, and OpenBLAS's spinning
# threads slow down badly when the cores are shared (a CI machine, several test processes). Set before
# NumPy is imported; an explicit OPENBLAS_NUM_THREADS from the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import scratchgen as sg  # noqa: E402

sg.backend.keep_freed_memory()  # as the demos run: each test's arrays reuse the last one's pages


def _cupy_unavailable_reason():
    try:
        with sg.use_backend("cupy"):
            pass
    except sg.backend.BackendError as err:
        return str(err)
    return None


_CUPY_SKIP = _cupy_unavailable_reason()


@pytest.fixture(params=["numpy", "strict", "cupy"])
def backend(request):
    """Run the test once per backend: NumPy; strict, whose arrays refuse to become NumPy arrays as CuPy's
    do, so a host/device leak fails here without a GPU; CuPy, skipped with the reason where no GPU is
    present."""
    if request.param == "cupy" and _CUPY_SKIP:
        pytest.skip(f"no usable GPU for the cupy backend: {_CUPY_SKIP}")
    with sg.use_backend(request.param):
        sg.manual_seed(0)
        yield request.param


_SESSION_BACKEND = sg.get_backend()  # numpy, or what SCRATCHGEN_BACKEND names (strict, cupy)


def pytest_configure(config):
    config.addinivalue_line("markers", "numpy_only(reason): run this test on the numpy backend whatever the "
                                       "session's backend, for the reason given (something only NumPy offers)")


@pytest.fixture(autouse=True)
def _seeded(request):
    """Each test starts on the session's backend, from the same random state, and a test that switches
    backends (``set_backend``) leaves the next one where it found it.

    A test marked ``@pytest.mark.numpy_only("reason")`` starts on the numpy backend instead: it checks
    something only NumPy offers (saving the random state, for a bit-for-bit resume), so under
    ``SCRATCHGEN_BACKEND=strict`` it still runs, on NumPy, rather than being skipped."""
    marker = request.node.get_closest_marker("numpy_only")
    if marker is not None and not (marker.args and isinstance(marker.args[0], str)):
        raise pytest.UsageError(f"{request.node.nodeid}: @pytest.mark.numpy_only needs its reason, a string")
    with sg.use_backend("numpy" if marker is not None else _SESSION_BACKEND):
        sg.manual_seed(0)
        yield


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def t64(array, requires_grad=True):
    """A float64 tensor on the active backend, for gradcheck."""
    return sg.tensor(np.asarray(array, dtype=np.float64), requires_grad=requires_grad)


def host(x):
    """Values on the host, for NumPy's assertions: a Tensor (its data) or an array of any backend as a NumPy
    array (``backend.to_numpy``; a device-to-host copy on strict and CuPy, none on NumPy), and the same through
    lists and tuples; numbers and None as they are."""
    if type(x) in (list, tuple):
        return type(x)(host(v) for v in x)
    if x is None or isinstance(x, (int, float, complex, bool, np.generic)):
        return x
    return sg.backend.to_numpy(x)


DEMOS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "demos")


def load_demo(name: str):
    """The demo script ``demos/<name>.py`` as a namespace (``demo.main(argv)``), without running its
    ``__main__`` block: demos are scripts, not an importable package."""
    import runpy
    import types

    return types.SimpleNamespace(**runpy.run_path(os.path.join(DEMOS, f"{name}.py")))


def last_json_line(capsys) -> dict:
    """The final metrics a demo printed, as one JSON line, last."""
    import json

    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def run_then_resume(demo, argv, capsys) -> tuple:
    """Run a demo for one epoch, then ``--resume`` it for a second; returns (its final metrics as printed,
    its metrics.json), having checked that the two agree and that the history holds epochs 1 and 2.
    ``argv`` must hold ``--out DIR``."""
    import json

    demo.main(argv + ["--epochs", "1"])
    demo.main(argv + ["--epochs", "2", "--resume"])
    final = last_json_line(capsys)
    with open(os.path.join(argv[argv.index("--out") + 1], "metrics.json")) as file:
        report = json.load(file)
    assert report["final"] == final
    assert [record["epoch"] for record in report["history"]] == [1, 2]
    return final, report


class NoHostReads(np.ndarray):
    """A NumPy array that refuses the reads which, on a GPU, copy a value to the host and wait for it:
    ``int()``, ``float()``, ``bool()``, ``.item()``, ``.tolist()``. Results computed from it stay of this
    type, so a test can show that a code path never reads its values back (``a.view(NoHostReads)``)."""

    def _refuse(self, *args, **kwargs):
        raise AssertionError("a host read of a device value (int, float, bool, item or tolist)")

    __int__ = __float__ = __index__ = __bool__ = item = tolist = _refuse


class CuPyLikeArray:
    """What a CuPy array looks like from the host, for tests without a GPU: ``numpy.asarray(a)`` raises
    TypeError with CuPy's message, ``a.get()`` returns a NumPy copy; shape, dtype, indexing, ``astype``
    and division work (NumPy underneath), each result again a CuPyLikeArray."""

    __module__ = "cupy._core.core"  # so that backend.device_of names it as it names a CuPy array
    __array_priority__ = 100  # NumPy defers to its operators, as it does to CuPy's

    def __init__(self, array):
        self._array = np.asarray(array)

    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. "
                        "Please use `.get()` to construct a NumPy array explicitly.")

    def get(self):
        return self._array.copy()

    shape = property(lambda self: self._array.shape)
    dtype = property(lambda self: self._array.dtype)
    ndim = property(lambda self: self._array.ndim)
    size = property(lambda self: self._array.size)

    def __len__(self):
        return len(self._array)

    def __getitem__(self, index):
        return CuPyLikeArray(self._array[index])

    def astype(self, dtype, copy=True):
        return CuPyLikeArray(self._array.astype(dtype, copy=copy))

    def __truediv__(self, other):
        return CuPyLikeArray(self._array / other)

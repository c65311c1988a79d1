"""Shared fixtures: the ``backend`` fixture runs a test on NumPy and, where a GPU is present, on CuPy."""

import os

# The tests' matrices are small: one BLAS thread computes them as fast as two, and OpenBLAS's spinning
# threads slow down badly when the cores are shared (a CI machine, several test processes). Set before
# NumPy is imported; an explicit OPENBLAS_NUM_THREADS from the environment wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import scratchgen as sg  # noqa: E402


def _cupy_unavailable_reason():
    try:
        with sg.use_backend("cupy"):
            pass
    except sg.backend.BackendError as err:
        return str(err)
    return None


_CUPY_SKIP = _cupy_unavailable_reason()


@pytest.fixture(params=["numpy", "cupy"])
def backend(request):
    """Run the test once per backend; the CuPy run is skipped, with the reason, where no GPU is present."""
    if request.param == "cupy" and _CUPY_SKIP:
        pytest.skip(f"no usable GPU for the cupy backend: {_CUPY_SKIP}")
    with sg.use_backend(request.param):
        sg.manual_seed(0)
        yield request.param


@pytest.fixture(autouse=True)
def _seeded():
    """Each test starts from the same random state."""
    sg.manual_seed(0)
    yield


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def t64(array, requires_grad=True):
    """A float64 tensor on the active backend, for gradcheck."""
    return sg.tensor(np.asarray(array, dtype=np.float64), requires_grad=requires_grad)


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

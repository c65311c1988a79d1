"""The backend seam: choosing a backend, clear errors without CuPy, and seeding."""

import numpy as np
import pytest

import scratchgen as sg


def test_numpy_is_the_default_backend():
    assert sg.get_backend() == "numpy"
    assert isinstance(sg.zeros(2).data, np.ndarray)


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

    monkeypatch.setattr(builtins, "__import__", no_cupy)
    with pytest.raises(sg.backend.BackendError, match=r"pip install cupy-cuda12x.*cupy-cuda13x"):
        sg.set_backend("cupy")
    assert sg.get_backend() == "numpy"


def test_use_backend_restores_the_previous_backend_even_on_error():
    with pytest.raises(ZeroDivisionError):
        with sg.use_backend("numpy"):
            1 / 0
    assert sg.get_backend() == "numpy"


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


def test_rng_state_round_trip():
    sg.manual_seed(3)
    state = sg.backend.get_rng_state()
    a = sg.rand(4).numpy()
    sg.backend.set_rng_state(state)
    np.testing.assert_array_equal(a, sg.rand(4).numpy())


def test_ops_run_on_each_backend(backend):
    x = sg.tensor(np.array([[1.0, 2.0], [3.0, 4.0]]), requires_grad=True)
    assert sg.backend.is_array(x.data)
    (x @ x).sum().backward()
    np.testing.assert_allclose(sg.backend.to_numpy(x.grad), [[7.0, 11.0], [9.0, 13.0]])

"""Reductions: values against NumPy and gradients by gradcheck, for every axis form and keepdims."""

import numpy as np
import pytest

import scratchgen as sg
from conftest import host, t64

AXES = [None, 0, 1, -1, (0, 2), (1, 2)]


@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("axis", AXES, ids=str)
@pytest.mark.parametrize("name", ["sum", "mean", "max", "logsumexp"])
def test_reduction_matches_numpy_and_passes_gradcheck(name, axis, keepdims, rng):
    x = rng.normal(size=(2, 3, 4))
    tx = t64(x)
    got = getattr(tx, name)(axis=axis, keepdims=keepdims)
    if name == "logsumexp":
        m = x.max(axis=axis, keepdims=True)
        expected = m + np.log(np.exp(x - m).sum(axis=axis, keepdims=True))
        if not keepdims:
            expected = expected.squeeze(axis) if axis is not None else expected.reshape(())
    else:
        expected = getattr(np, name)(x, axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    assert sg.gradcheck(lambda t: getattr(t, name)(axis=axis, keepdims=keepdims), [tx])
    assert sg.gradgradcheck(lambda t: getattr(t, name)(axis=axis, keepdims=keepdims), [tx])


def test_max_shares_the_gradient_between_ties():
    x = t64([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]])
    x.max(axis=1).sum().backward()
    np.testing.assert_array_equal(host(x.grad), [[0, 0.5, 0.5], [1, 0, 0]])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_log_softmax_matches_formula_and_passes_gradcheck(axis, rng):
    x = rng.normal(size=(3, 5))
    tx = t64(x)
    expected = x - np.log(np.exp(x).sum(axis=axis, keepdims=True))
    np.testing.assert_allclose(tx.log_softmax(axis=axis).numpy(), expected, rtol=1e-12)
    assert sg.gradcheck(lambda t: t.log_softmax(axis=axis), [tx])
    assert sg.gradgradcheck(lambda t: t.log_softmax(axis=axis), [tx])


def test_logsumexp_and_log_softmax_stay_finite_for_huge_logits():
    x = sg.tensor(np.array([[100.0, -100.0, 0.0], [1000.0, 1000.0, -1000.0]], dtype=np.float32), requires_grad=True)
    lse = x.logsumexp(axis=1)
    np.testing.assert_allclose(lse.numpy(), [100.0, 1000.0 + np.log(2)], rtol=1e-6)
    (lse.sum() + x.log_softmax(axis=1).sum()).backward()
    assert np.all(np.isfinite(host(x.grad)))


@pytest.mark.filterwarnings("ignore:divide by zero")
def test_logsumexp_of_all_minus_infinity_is_minus_infinity():
    x = sg.tensor(np.full((2, 3), -np.inf, dtype=np.float32))
    assert np.all(x.logsumexp(axis=1).numpy() == -np.inf)


def test_bad_axis_names_the_op():
    with pytest.raises(ValueError, match=r"sum \(inputs of shapes \(2, 3\)\): axis 3 is out of range"):
        sg.zeros(2, 3).sum(axis=3)

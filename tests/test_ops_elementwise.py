"""Elementwise ops: forward against NumPy formulas, backward by gradcheck on broadcasting shapes."""

import numpy as np
import pytest

import scratchgen as sg
from conftest import host, t64

# Pairs of shapes that broadcast in both directions, with scalars and size-1 axes.
BROADCAST_PAIRS = [
    ((3, 4), (3, 4)),
    ((3, 4), (4,)),
    ((4,), (3, 4)),
    ((3, 1), (1, 4)),
    ((2, 3, 1), (3, 4)),
    ((), (2, 3)),
    ((2, 3), ()),
    ((1, 1), (5,)),
]

BINARY = {
    "add": (lambda a, b: a + b, lambda a, b: a + b),
    "sub": (lambda a, b: a - b, lambda a, b: a - b),
    "mul": (lambda a, b: a * b, lambda a, b: a * b),
    "div": (lambda a, b: a / b, lambda a, b: a / b),
    "pow": (lambda a, b: a**b, lambda a, b: a**b),
}


@pytest.mark.parametrize("name", BINARY)
@pytest.mark.parametrize("shapes", BROADCAST_PAIRS, ids=str)
def test_binary_op_forward_and_gradcheck(name, shapes, rng):
    op, reference = BINARY[name]
    a = rng.uniform(0.5, 2.0, shapes[0])  # positive, so pow's log(a) and div are defined
    b = rng.uniform(0.5, 2.0, shapes[1])
    ta, tb = t64(a), t64(b)
    np.testing.assert_allclose(op(ta, tb).numpy(), reference(a, b), rtol=1e-12)
    assert sg.gradcheck(op, [ta, tb])
    assert sg.gradgradcheck(op, [ta, tb])


@pytest.mark.parametrize("name", ["add", "sub", "mul", "div"])
def test_binary_op_with_python_number_on_either_side(name, rng):
    op, reference = BINARY[name]
    a = rng.uniform(0.5, 2.0, (3, 2))
    ta = t64(a)
    np.testing.assert_allclose(op(ta, 1.5).numpy(), reference(a, 1.5))
    np.testing.assert_allclose(op(1.5, ta).numpy(), reference(1.5, a))
    assert sg.gradcheck(lambda x: op(x, 1.5) + op(1.5, x), [ta])
    assert sg.gradgradcheck(lambda x: op(x, 1.5) + op(1.5, x), [ta])


def test_python_numbers_keep_float32():
    x = sg.tensor([1.0, 2.0])
    assert (x * 0.5 + 1 - 2.0 / x).dtype == np.float32
    assert (x**2).dtype == np.float32


UNARY = {
    "neg": (lambda x: -x, lambda x: -x, (-2, 2)),
    "exp": (lambda x: x.exp(), np.exp, (-2, 2)),
    "log": (lambda x: x.log(), np.log, (0.2, 3)),
    "sqrt": (lambda x: x.sqrt(), np.sqrt, (0.2, 3)),
    "abs": (lambda x: x.abs(), np.abs, (0.1, 2)),
    "tanh": (lambda x: x.tanh(), np.tanh, (-3, 3)),
    "sigmoid": (lambda x: x.sigmoid(), lambda x: 1 / (1 + np.exp(-x)), (-5, 5)),
    "relu": (lambda x: x.relu(), lambda x: np.maximum(x, 0), (-2, 2)),
    "leaky_relu": (lambda x: x.leaky_relu(0.2), lambda x: np.where(x > 0, x, 0.2 * x), (-2, 2)),
    "softplus": (lambda x: x.softplus(), lambda x: np.log1p(np.exp(x)), (-5, 5)),
    "silu": (lambda x: sg.nn.functional.silu(x), lambda x: x / (1 + np.exp(-x)), (-5, 5)),
    "pow_scalar": (lambda x: x**3, lambda x: x**3, (-2, 2)),
    "pow_half": (lambda x: x**0.5, np.sqrt, (0.2, 3)),
    "clip": (lambda x: x.clip(-0.5, 0.7), lambda x: np.clip(x, -0.5, 0.7), (-2, 2)),
}


def _away_from_kinks(x):
    """Move samples off the points where relu, abs and clip have no derivative."""
    for kink in (0.0, -0.5, 0.7):
        near = np.abs(x - kink) < 1e-3
        x[near] += 0.01
    return x


@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("shape", [(), (5,), (3, 1, 4)], ids=str)
def test_unary_op_forward_and_gradcheck(name, shape, rng):
    op, reference, (low, high) = UNARY[name]
    x = _away_from_kinks(np.asarray(rng.uniform(low, high, shape)))
    if name == "abs":
        x = x * rng.choice([-1, 1], shape)
    tx = t64(x)
    np.testing.assert_allclose(op(tx).numpy(), reference(x), rtol=1e-12, atol=1e-15)
    assert sg.gradcheck(op, [tx])
    assert sg.gradgradcheck(op, [tx])


def test_where_routes_values_and_gradients(rng):
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(4,))
    condition = rng.random((3, 4)) > 0.5
    ta, tb = t64(a), t64(b)
    out = sg.where(condition, ta, tb)
    np.testing.assert_array_equal(out.numpy(), np.where(condition, a, b))
    assert sg.gradcheck(lambda x, y: sg.where(condition, x, y), [ta, tb])
    assert sg.gradgradcheck(lambda x, y: sg.where(condition, x, y), [ta, tb])
    np.testing.assert_array_equal(sg.where(condition, ta, 0.0).numpy(), np.where(condition, a, 0.0))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sigmoid_and_softplus_are_finite_at_extreme_inputs(dtype):
    x = sg.tensor(np.array([-1000.0, -100.0, 0.0, 100.0, 1000.0], dtype=dtype), requires_grad=True)
    s, p = x.sigmoid(), x.softplus()
    (s + p).sum().backward()
    assert np.all(np.isfinite(s.numpy())) and np.all(np.isfinite(p.numpy()))
    assert np.all(np.isfinite(host(x.grad)))
    np.testing.assert_allclose(s.numpy(), [0, 0, 0.5, 1, 1], atol=1e-30)
    np.testing.assert_allclose(p.numpy(), np.logaddexp(np.array([-1000.0, -100, 0, 100, 1000]), 0), rtol=1e-6, atol=1e-30)
    assert s.dtype == dtype and p.dtype == dtype


def test_broadcast_mismatch_names_op_and_shapes():
    with pytest.raises(ValueError, match=r"add \(inputs of shapes \(3, 4\), \(5,\)\): operands could not be broadcast"):
        sg.zeros(3, 4) + sg.zeros(5)
    with pytest.raises(ValueError, match=r"mul \(inputs of shapes \(2, 3\), \(4, 3\)\)"):
        sg.zeros(2, 3) * sg.zeros(4, 3)


def test_integer_data_in_a_float_op_says_so():
    ints = sg.tensor(np.arange(6).reshape(2, 3))
    with pytest.raises(TypeError, match=r"exp: input 0 has dtype int64 .*floating-point"):
        ints.exp()
    with pytest.raises(TypeError, match="only floating-point tensors can require gradients"):
        sg.tensor(np.arange(3), requires_grad=True)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_silu_is_finite_at_extreme_inputs(dtype):
    x = sg.tensor(np.array([-1000.0, -100.0, 0.0, 100.0, 1000.0], dtype=dtype), requires_grad=True)
    y = sg.nn.functional.silu(x)
    y.sum().backward()
    np.testing.assert_allclose(y.numpy(), [0, 0, 0, 100, 1000], atol=1e-30)
    np.testing.assert_allclose(host(x.grad), [0, 0, 0.5, 1, 1], atol=1e-30)  # σ(x)(1 + x(1 - σ(x)))
    assert y.dtype == dtype and x.grad.dtype == dtype

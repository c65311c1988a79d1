"""The engine's classic traps: reuse, accumulation, deep graphs, no_grad, detach, and seeds of backward."""

import sys

import numpy as np
import pytest

import scratchgen as sg
from conftest import t64


def test_a_tensor_used_twice_gets_the_sum_of_both_uses():
    x = t64([1.0, -2.0, 3.0])
    (x * x).sum().backward()  # d/dx x² = 2x, from two uses of x
    np.testing.assert_allclose(x.grad, [2.0, -4.0, 6.0])


def test_residual_connection_adds_the_skip_path(rng):
    x = t64(rng.normal(size=(4, 3)))
    w = t64(rng.normal(size=(3, 3)))
    y = (x @ w).tanh() + x  # residual: dy/dx = (1 - tanh²)·wᵀ + identity
    y.sum().backward()
    expected = (1 - np.tanh(x.numpy() @ w.numpy()) ** 2) @ w.numpy().T + 1
    np.testing.assert_allclose(x.grad, expected, rtol=1e-12)
    assert sg.gradcheck(lambda a, b: (a @ b).tanh() + a, [x, w])


def test_weight_shared_by_two_layers_gets_both_gradients(rng):
    x, w = t64(rng.normal(size=(2, 3)), requires_grad=False), t64(rng.normal(size=(3, 3)))
    F = sg.nn.functional
    out = F.linear(F.linear(x, w).tanh(), w).sum()
    out.backward()
    grad_shared = w.grad.copy()
    # The same gradient computed from two separate copies of w, added up:
    w1, w2 = t64(w.numpy()), t64(w.numpy())
    F.linear(F.linear(x, w1).tanh(), w2).sum().backward()
    np.testing.assert_allclose(grad_shared, w1.grad + w2.grad, rtol=1e-12)


def test_gradients_accumulate_across_backward_calls_until_zeroed():
    x = t64([1.0, 2.0])
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, [6.0, 6.0])
    opt = sg.optim.SGD([x], lr=0.1)
    opt.zero_grad()
    assert x.grad is None
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad, [3.0, 3.0])


def test_a_graph_of_ten_thousand_nodes_needs_no_recursion():
    x = t64([0.5])
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    assert sys.getrecursionlimit() < 20_000
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001**10_000], rtol=1e-9)


def test_diamond_graph_visits_each_node_once():
    x = t64([2.0])
    a = x * 3.0
    b = a.exp() + a * a  # a feeds two branches that meet again
    b.sum().backward()
    np.testing.assert_allclose(x.grad, [3 * np.exp(6.0) + 2 * 6.0 * 3], rtol=1e-12)


def test_no_grad_records_nothing_and_detach_cuts_the_graph():
    x = t64([1.0, 2.0])
    with sg.no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.is_leaf
    z = (x * 2.0).detach() * x
    z.sum().backward()
    np.testing.assert_allclose(x.grad, [2.0, 4.0])  # only the path through the second factor


def test_backward_needs_a_scalar_or_an_explicit_gradient():
    x = t64([1.0, 2.0])
    y = x * 3.0
    with pytest.raises(RuntimeError, match="only for a tensor of one element"):
        y.backward()
    y.backward(np.array([1.0, 10.0]))
    np.testing.assert_allclose(x.grad, [3.0, 30.0])


def test_backward_of_a_constant_says_why_it_cannot():
    with pytest.raises(RuntimeError, match="does not require grad"):
        sg.tensor([1.0]).sum().backward()


def test_leaf_gradient_is_an_ordinary_writable_array():
    x = t64(np.ones((2, 3)))
    x.sum().backward()
    x.grad *= 2  # a broadcast view would refuse this
    np.testing.assert_array_equal(x.grad, 2 * np.ones((2, 3)))


def test_numpy_returns_a_copy_and_tensor_keeps_dtype():
    x = sg.tensor(np.array([1.0, 2.0]))
    assert x.dtype == np.float64
    assert sg.tensor([1.0, 2.0]).dtype == np.float32
    host = x.numpy()
    host[0] = 100
    assert x.numpy()[0] == 1.0


def test_mixing_a_gpu_array_into_a_cpu_graph_names_both_devices():
    class FakeCupyArray:  # stands in for a cupy.ndarray, which this test cannot assume
        __module__ = "cupy._core.core"
        shape, dtype, ndim = (2,), np.dtype("float32"), 1

    with pytest.raises(sg.backend.BackendError, match=r"add: input 1 is on gpu \(cupy\) but the active backend is numpy"):
        sg.ops.Add.apply(sg.tensor([1.0, 2.0]), sg.Tensor(FakeCupyArray()))

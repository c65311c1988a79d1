"""Gradients of gradients: scratchgen.grad, create_graph, gradgradcheck, Hessian-vector products.

The engine records the backward pass itself when asked (``create_graph=True``), so a gradient is a
Tensor that can be differentiated again. These tests check that against formulas: a third derivative,
an explicit Hessian, a Newton step; and that gradgradcheck catches a backward whose first derivative is
right but whose second is not.
"""

import numpy as np
import pytest

import scratchgen as sg
from scratchgen.autograd import Function, constant, once_differentiable
from conftest import host, t64
from test_gradcheck import Cube  # d/dx x³ = 3x², read from the input Tensor: twice differentiable

F = sg.nn.functional


# ------------------------------------------------------------------------------- sg.grad, first order


def test_grad_equals_what_backward_accumulates(rng):
    x, w = t64(rng.normal(size=(5, 3))), t64(rng.normal(size=(4, 3)))
    b = t64(rng.normal(size=4))

    def loss():
        return F.binary_cross_entropy_with_logits(F.linear(x, w, b).tanh(), np.full((5, 4), 0.3))

    grads = sg.grad(loss(), [x, w, b])
    assert all(t.grad is None for t in (x, w, b))  # grad() writes no .grad
    loss().backward()
    for t, g in zip((x, w, b), grads):
        assert g.shape == t.shape and not g.requires_grad
        np.testing.assert_allclose(g.numpy(), host(t.grad), rtol=1e-12)


def test_grad_of_an_input_that_was_not_used_is_an_error_unless_allowed():
    x, unused = t64([1.0, 2.0]), t64([3.0])
    y = (x * x).sum()
    with pytest.raises(RuntimeError, match=r"input 1 \(shape \(1,\)\) was not used"):
        sg.grad(y, [x, unused])
    gx, gu = sg.grad(y, [x, unused], allow_unused=True)
    np.testing.assert_allclose(gx.numpy(), [2.0, 4.0])
    assert gu is None


def test_grad_with_respect_to_an_intermediate_tensor_and_with_grad_outputs(rng):
    x = t64(rng.normal(size=(3, 2)))
    h = x.exp()
    y = h * 3.0
    seed = rng.normal(size=(3, 2))
    (gh,) = sg.grad(y, h, grad_outputs=sg.backend.asarray(seed))
    np.testing.assert_allclose(gh.numpy(), 3.0 * seed)
    with pytest.raises(RuntimeError, match="does not require grad"):
        sg.grad(y, t64([1.0], requires_grad=False))


# --------------------------------------------------------------------------- second and third order


def test_third_derivative_of_tanh_matches_its_formula():
    x = t64(np.linspace(-2.0, 2.0, 9))
    (d1,) = sg.grad(x.tanh().sum(), x, create_graph=True)
    (d2,) = sg.grad(d1.sum(), x, create_graph=True)
    (d3,) = sg.grad(d2.sum(), x)
    t = np.tanh(x.numpy())
    np.testing.assert_allclose(d1.numpy(), 1 - t**2, rtol=1e-12)
    np.testing.assert_allclose(d2.numpy(), -2 * t * (1 - t**2), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(d3.numpy(), -2 * (1 - t**2) * (1 - 3 * t**2), rtol=1e-10, atol=1e-14)


def _softplus_of_linear(a):
    """f(x) = Σ_i softplus(a_i·x): its Hessian is Aᵀ diag(σ(Ax)(1 - σ(Ax))) A, in closed form."""
    return lambda x: F.softplus(x @ a.T).sum()


def test_hessian_vector_product_equals_the_explicit_hessian_times_v(rng):
    a = t64(rng.normal(size=(6, 4)), requires_grad=False)
    x, v = t64(rng.normal(size=4)), rng.normal(size=4)
    f = _softplus_of_linear(a)
    (g,) = sg.grad(f(x), x, create_graph=True)
    (hv,) = sg.grad((g * sg.tensor(v)).sum(), x)  # H·v without ever forming H
    s = 1 / (1 + np.exp(-(a.numpy() @ x.numpy())))
    hessian = a.numpy().T @ np.diag(s * (1 - s)) @ a.numpy()
    np.testing.assert_allclose(hv.numpy(), hessian @ v, rtol=1e-10)


def test_a_newton_step_solves_a_quadratic_in_one_step(rng):
    """For f(x) = ½xᵀQx - bᵀx, x - H⁻¹∇f lands on the minimiser Q⁻¹b; a gradient step does not."""
    m = rng.normal(size=(3, 3))
    q, b = t64(m @ m.T + 3 * np.eye(3), False), t64(rng.normal(size=3), False)
    x = t64(np.zeros(3))
    f = 0.5 * (x @ (q @ x)) - (b * x).sum()
    (g,) = sg.grad(f, x, create_graph=True)
    hessian = np.stack([sg.grad(g[i], x)[0].numpy() for i in range(3)])  # one row per component of ∇f
    newton = x.numpy() - np.linalg.solve(hessian, g.numpy())
    np.testing.assert_allclose(newton, np.linalg.solve(q.numpy(), b.numpy()), rtol=1e-10)
    gradient_step = x.numpy() - 0.1 * g.numpy()
    assert np.linalg.norm(gradient_step - newton) > 1e6 * np.linalg.norm(newton - np.linalg.solve(q.numpy(), b.numpy()))


def test_backward_with_create_graph_leaves_differentiable_gradients():
    x = t64([0.5, -1.0])
    (x**3).sum().backward(create_graph=True)
    assert x.grad_tensor.requires_grad
    np.testing.assert_allclose(host(x.grad), 3 * x.numpy() ** 2)
    (gg,) = sg.grad(x.grad_tensor.sum(), x)
    np.testing.assert_allclose(gg.numpy(), 6 * x.numpy())


def test_gradient_penalty_through_a_conv_net_matches_finite_differences(rng):
    """The WGAN-GP pattern: a penalty on ‖∇ₓD(x)‖ backpropagated into D's weights (conv, leaky ReLU, linear)."""
    x = t64(rng.normal(size=(2, 1, 6, 6)))
    w1, w2 = t64(rng.normal(size=(3, 1, 3, 3)) * 0.5), t64(rng.normal(size=(1, 3 * 3 * 3)) * 0.3)

    def penalty(w1, w2):
        out = F.linear(F.leaky_relu(F.conv2d(x, w1, stride=2, padding=1), 0.2).tanh().flatten(1), w2)
        (gx,) = sg.grad(out.sum(), x, create_graph=True)
        return ((gx * gx).sum(axis=(1, 2, 3)).sqrt() - 1.0) ** 2

    assert sg.gradcheck(penalty, [w1, w2])


# ----------------------------------------------------------------------------------- gradgradcheck


class CubeWithConstantSlope(Function):
    """Right first derivative, wrong second: 3x² is kept as an array, a constant to the engine."""

    def forward(self, x):
        self.slope = 3 * x**2
        return x**3

    def backward(self, grad):
        return grad * constant(self.slope)


class DoubleIgnoringTheGradient(Function):
    """y = 2x with a backward that copies grad's values: right once, but its own backward is lost."""

    def forward(self, x):
        return 2 * x

    def backward(self, grad):
        return constant(2 * grad.data)


def test_gradgradcheck_accepts_correct_second_derivatives(rng):
    x = t64(rng.normal(size=(3, 4)))
    assert sg.gradgradcheck(Cube.apply, [x])


def test_gradgradcheck_catches_a_saved_value_treated_as_a_constant(rng):
    x = t64(rng.normal(size=(3, 4)))
    assert sg.gradcheck(CubeWithConstantSlope.apply, [x])  # the first derivative is right...
    with pytest.raises(sg.GradcheckError, match=r"gradgradcheck: the second derivative of input 0, shape \(3, 4\), "
                                                r"is wrong: at element \(\d, \d\) double backward gives 0 but"):
        sg.gradgradcheck(CubeWithConstantSlope.apply, [x])  # ...the second is not


def test_gradgradcheck_catches_a_backward_that_cuts_the_output_gradient(rng):
    x = t64(rng.normal(size=5))
    assert sg.gradcheck(DoubleIgnoringTheGradient.apply, [x])
    with pytest.raises(sg.GradcheckError, match=r"input 1 \(the output gradient v\)"):
        sg.gradgradcheck(DoubleIgnoringTheGradient.apply, [x])


def test_a_once_differentiable_backward_refuses_create_graph(rng):
    class ArrayCube(Function):
        def forward(self, x):
            self.x = x
            return x**3

        @once_differentiable
        def backward(self, grad):
            return grad * 3 * self.x**2

    x = t64(rng.normal(size=4))
    assert sg.gradcheck(ArrayCube.apply, [x])
    with pytest.raises(RuntimeError, match="arraycube.backward is once_differentiable"):
        sg.grad(ArrayCube.apply(x).sum(), x, create_graph=True)

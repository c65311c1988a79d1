"""gradcheck itself: it passes correct backwards and, just as important, rejects wrong ones."""

import re

import numpy as np
import pytest

import scratchgen as sg
from scratchgen.autograd import Function
from conftest import t64


class Cube(Function):
    """d/dx x³ = 3x²."""

    def forward(self, x):
        return x**3

    def backward(self, grad):
        (x,) = self.inputs
        return grad * 3 * x**2


class CubeOffByFactor(Cube):
    """A deliberately wrong backward: 2x² instead of 3x²."""

    def backward(self, grad):
        (x,) = self.inputs
        return grad * 2 * x**2


class TransposedMatMul(Function):
    """A classic mistake: the gradient of A·B with respect to A is G·Bᵀ, not G·B."""

    def forward(self, a, b):
        return a @ b

    def backward(self, grad):
        a, b = self.inputs
        return grad @ b, a.T @ grad


def test_gradcheck_accepts_a_correct_backward(rng):
    assert sg.gradcheck(Cube.apply, [t64(rng.normal(size=(4, 3)))])


def test_gradcheck_rejects_a_wrong_backward_naming_input_and_element(rng):
    x = t64(rng.normal(size=(4, 3)))
    with pytest.raises(sg.GradcheckError, match=r"input 0, shape \(4, 3\), is wrong: at element \(\d, \d\) backward gives .* finite differences give"):
        sg.gradcheck(CubeOffByFactor.apply, [x])


def test_gradcheck_names_the_wrong_input_of_several(rng):
    a, b = t64(rng.normal(size=(3, 3))), t64(rng.normal(size=(3, 3)))
    with pytest.raises(sg.GradcheckError, match="input 0"):
        sg.gradcheck(TransposedMatMul.apply, [a, b])
    b.grad = None
    sg.gradcheck(lambda x, y: TransposedMatMul.apply(x.detach(), y), [t64(a.numpy(), False), b])  # b's part is right


def test_gradcheck_reports_the_worst_element_and_both_values():
    x = t64([1.0, 2.0, 3.0])
    with pytest.raises(sg.GradcheckError) as info:
        sg.gradcheck(CubeOffByFactor.apply, [x])
    message = str(info.value)
    # Both values are of the gradient along gradcheck's random direction v, so check their ratio: 2x²/3x².
    match = re.search(r"at element \((\d),\) backward gives (\S+) but finite differences give (\S+) ", message)
    assert match, message
    analytic, numeric = float(match.group(2)), float(match.group(3))
    assert analytic / numeric == pytest.approx(2 / 3, rel=1e-6)


def test_gradcheck_insists_on_float64():
    x = sg.tensor(np.ones(3, dtype=np.float32), requires_grad=True)
    with pytest.raises(TypeError, match="float64"):
        sg.gradcheck(Cube.apply, [x])


def test_gradcheck_needs_an_input_requiring_grad():
    with pytest.raises(TypeError, match="nothing to check"):
        sg.gradcheck(Cube.apply, [t64([1.0], requires_grad=False)])


def test_gradcheck_handles_non_contiguous_inputs(rng):
    x = sg.tensor(rng.normal(size=(3, 4)).T, requires_grad=True)  # a transposed, non-contiguous view
    assert sg.gradcheck(lambda t: t.exp() @ t.T, [x])

"""Grader of assignment 1: the backward of softsign.

    python -m pytest coursework/01_backward                           # grades softsign.py in this folder
    python -m pytest coursework/01_backward --solution my_softsign.py   # grades another file

Checks, in the order a student meets them: the forward is intact; the backward returns one gradient,
a Tensor of the input's shape and dtype, without touching the gradient it receives; gradcheck;
agreement with autograd through the library's own ops; gradgradcheck (the gradient can be
differentiated again); a small network with softsign units learns XOR.
"""

import math

import numpy as np
import scratchgen as sg
from scratchgen import nn, optim
from scratchgen.backend import to_numpy
from scratchgen.nn import functional as F

STARTER = "softsign.py"
REQUIRED = ("Softsign", "softsign")

HINT = ("Hint: by the quotient rule, with d|x|/dx = sign(x), then simplify; the derivative is positive "
        "everywhere and equals 1 at x = 0.")
SECOND_HINT = (
    "Hint: if gradcheck passes, your first derivative is right but the engine cannot differentiate it: "
    "compute it with Tensor ops on x = self.inputs[0] (x.abs(), +, /, **). A factor computed from an array "
    "(an x kept in forward, x.data, xp.abs(...), constant(...)) is a constant to the engine, so the second "
    "derivative misses its derivative.")


def _inputs(shape=(4, 5), scale=2.0):
    return np.random.default_rng(0).standard_normal(shape) * scale


def _backward_of(solution, x, grad):
    """Run the op forward through the engine, then its backward on ``grad``, as the engine does.

    ``Softsign.apply`` records the op (its ``inputs``, its ``output``) in the output's ``_creator``; the
    engine then calls that op's ``backward`` with a Tensor, without recording it (no_grad) when no second
    derivative is wanted. Calling it here, rather than ``y.backward()``, lets the checks look at exactly
    what your backward returns.
    """
    y = solution.Softsign.apply(sg.tensor(x, requires_grad=True))
    with sg.no_grad():
        result = y._creator.backward(grad)
    if isinstance(result, (tuple, list)):
        assert len(result) == 1, f"Softsign has one input, so backward returns one gradient, got {len(result)}"
        result = result[0]
    return result


def test_forward_is_still_softsign(solution):
    x = np.linspace(-5.0, 5.0, 11)
    got = solution.softsign(sg.tensor(x)).numpy()
    np.testing.assert_allclose(got, x / (1 + np.abs(x)), rtol=1e-12,
                               err_msg="the forward no longer computes x / (1 + |x|): restore it from the starter")


def test_backward_returns_one_gradient_shaped_like_the_input(solution):
    x = _inputs()
    grad = _backward_of(solution, x, sg.tensor(np.ones_like(x)))
    assert grad is not None, "backward returned None: return dL/dx, a Tensor of x's shape"
    assert isinstance(grad, sg.Tensor), (
        f"backward returned a {type(grad).__name__}, not a Tensor: compute dL/dx with Tensor ops on grad and "
        f"x = self.inputs[0], so that the engine can record it")
    assert grad.shape == x.shape, (f"backward returned a Tensor of shape {grad.shape}; dL/dx has the input's "
                                   f"shape {x.shape}")


def test_backward_keeps_float32(solution):
    x = _inputs().astype(np.float32)
    grad = _backward_of(solution, x, sg.tensor(np.ones_like(x)))
    assert grad.dtype == np.float32, (
        f"a float32 gradient came back as {grad.dtype}: a float64 array or NumPy float64 scalar "
        f"(np.float64(1), np.sqrt(2.0)) promotes float32 data; use Python numbers and Tensor ops on x")


def test_backward_leaves_the_incoming_gradient_alone(solution):
    x = _inputs()
    incoming = sg.tensor(np.random.default_rng(1).standard_normal(x.shape))
    kept = incoming.numpy()
    _backward_of(solution, x, incoming)
    np.testing.assert_array_equal(incoming.numpy(), kept, err_msg=(
        "backward changed the gradient `grad` it was given (an in-place `grad.data *= ...`?). The engine may "
        "pass the same gradient to several ops: compute a new Tensor instead (grad * ...)"))


def test_gradcheck(solution):
    x = sg.tensor(_inputs(), requires_grad=True)  # float64, as finite differences need
    try:
        sg.gradcheck(solution.softsign, [x])
    except sg.GradcheckError as err:
        raise AssertionError(f"{err}\n{HINT}") from err


def test_same_derivative_as_autograd_through_the_library_ops(solution):
    data = _inputs((3, 7), scale=3.0)
    yours, library = sg.tensor(data, requires_grad=True), sg.tensor(data, requires_grad=True)
    solution.softsign(yours).sum().backward()  # the gradient of a sum is the elementwise derivative dy/dx
    (library / (1.0 + library.abs())).sum().backward()  # softsign built from the library's Div, Add and Abs
    assert yours.grad is not None, "no gradient reached x: does backward return it?"
    your_grad, library_grad = to_numpy(yours.grad), to_numpy(library.grad)  # to the host, to compare
    error = np.abs(your_grad - library_grad)
    worst = np.unravel_index(error.argmax(), error.shape)
    mine, theirs = float(your_grad[worst]), float(library_grad[worst])
    digits = _digits_to_tell_apart(mine, theirs)
    close = (f" The two agree to about {digits - 2} significant digits: a small constant (an eps added \"for "
             f"safety\", a rounded number) moves a derivative by that much; the exact one needs none."
             if abs(mine - theirs) < 1e-5 * abs(theirs) else f" {HINT}")
    assert error.max() < 1e-10, (
        f"at x = {data[worst]:.4g} your backward gives dy/dx = {mine:.{digits}g}, while autograd through "
        f"the library's ops (x / (1 + |x|)) gives {theirs:.{digits}g} (difference {mine - theirs:.3g}).{close}")


def _digits_to_tell_apart(a: float, b: float) -> int:
    """Significant digits that show a and b as different numbers: 6, or more when they agree further."""
    if a == b:
        return 6
    agree = -math.log10(abs(a - b) / max(abs(a), abs(b)))  # about this many leading digits are shared
    return min(17, max(6, math.ceil(agree) + 2))


def test_second_derivative_by_gradgradcheck(solution):
    x = sg.tensor(_inputs(), requires_grad=True)  # float64; no element near the kink of |x| at 0
    try:
        sg.gradgradcheck(solution.softsign, [x])
    except sg.GradcheckError as err:
        raise AssertionError(f"{err}\n{SECOND_HINT}") from err


class _SoftsignNet(nn.Module):
    def __init__(self, solution):
        super().__init__()
        self.hidden, self.out, self.act = nn.Linear(2, 8), nn.Linear(8, 1), solution.softsign

    def forward(self, x):
        return self.out(self.act(self.hidden(x)))


def test_a_network_of_softsign_units_learns_xor(solution):
    rng = np.random.default_rng(0)
    corners = rng.integers(0, 2, size=(256, 2))
    x = sg.tensor((2.0 * corners - 1.0 + 0.2 * rng.standard_normal((256, 2))).astype(np.float32))
    y = (corners[:, 0] ^ corners[:, 1]).astype(np.float32)[:, None]
    model = _SoftsignNet(solution)
    opt = optim.Adam(model.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        loss.backward()
        opt.step()
    accuracy = float(((model(x).numpy() > 0) == (y > 0.5)).mean())
    assert accuracy >= 0.95, (f"a 2-8-1 network with softsign units reached only {accuracy:.0%} on XOR after 150 "
                              f"Adam steps (loss {loss.item():.3f}); with a correct backward it reaches 100%")

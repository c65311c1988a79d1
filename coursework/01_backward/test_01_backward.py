"""Grader of assignment 1: the backward of softsign.

    python -m pytest coursework/01_backward                           # grades softsign.py in this folder
    python -m pytest coursework/01_backward --solution my_softsign.py   # grades another file

Checks, in the order a student meets them: the forward is intact; the backward returns one gradient of
the input's shape and dtype without touching the gradient it receives; gradcheck; agreement with
autograd through the library's own ops; a small network with softsign units learns XOR.
"""

import numpy as np
import scratchgen as sg
from scratchgen import nn, optim
from scratchgen.nn import functional as F

STARTER = "softsign.py"
REQUIRED = ("Softsign", "softsign")

HINT = ("Hint: by the quotient rule, with d|x|/dx = sign(x), then simplify; the derivative is positive "
        "everywhere and equals 1 at x = 0.")


def _inputs(shape=(4, 5), scale=2.0):
    return np.random.default_rng(0).standard_normal(shape) * scale


def _backward_of(solution, x, grad):
    """Run the op's forward and backward by hand, as the engine does, and return the one gradient."""
    fn = solution.Softsign()
    fn.needs_input_grad = (True,)
    fn.forward(x)
    result = fn.backward(grad)
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
    grad = _backward_of(solution, x, np.ones_like(x))
    assert grad is not None, "backward returned None: return dL/dx, an array of x's shape"
    assert np.shape(grad) == x.shape, (f"backward returned an array of shape {np.shape(grad)}; dL/dx has the "
                                       f"input's shape {x.shape}")


def test_backward_keeps_float32(solution):
    x = _inputs().astype(np.float32)
    grad = _backward_of(solution, x, np.ones_like(x))
    assert grad.dtype == np.float32, (
        f"a float32 gradient came back as {grad.dtype}: a NumPy float64 scalar (np.float64(1), np.sqrt(2.0)) "
        f"promotes float32 arrays; use Python numbers or the arrays' own dtype")


def test_backward_leaves_the_incoming_gradient_alone(solution):
    x = _inputs()
    incoming = np.random.default_rng(1).standard_normal(x.shape)
    kept = incoming.copy()
    _backward_of(solution, x, incoming)
    np.testing.assert_array_equal(incoming, kept, err_msg=(
        "backward changed the array `grad` it was given (an in-place `grad *= ...`?). The engine may pass "
        "the same array to several ops: compute a new array instead (grad * ...)"))


def test_gradcheck(solution):
    x = sg.tensor(_inputs(), requires_grad=True)  # float64, as finite differences need
    try:
        sg.gradcheck(solution.softsign, [x])
    except sg.GradcheckError as err:
        raise AssertionError(f"{err}\n{HINT}") from None


def test_same_derivative_as_autograd_through_the_library_ops(solution):
    data = _inputs((3, 7), scale=3.0)
    yours, library = sg.tensor(data, requires_grad=True), sg.tensor(data, requires_grad=True)
    solution.softsign(yours).sum().backward()  # the gradient of a sum is the elementwise derivative dy/dx
    (library / (1.0 + library.abs())).sum().backward()  # softsign built from the library's Div, Add and Abs
    assert yours.grad is not None, "no gradient reached x: does backward return it?"
    error = np.abs(yours.grad - library.grad)
    worst = np.unravel_index(error.argmax(), error.shape)
    assert error.max() < 1e-10, (
        f"at x = {data[worst]:.4g} your backward gives dy/dx = {yours.grad[worst]:.6g}, while autograd through "
        f"the library's ops (x / (1 + |x|)) gives {library.grad[worst]:.6g}. {HINT}")


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

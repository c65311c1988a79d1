"""gradcheck: test an op's backward against finite differences, as every test in scratchgen does.

For a function f of tensors, pick a fixed random direction v of f's output shape and look at the scalar
s(x) = Σ v ⊙ f(x). Its gradient ds/dx, computed by autograd, is exactly what backward produces for
the seed gradient v (a vector-Jacobian product). The same gradient estimated numerically, one input
element at a time, is the central difference

    ds/dx_i ≈ (s(x + ε·e_i) - s(x - ε·e_i)) / (2ε),

whose error is O(ε²). In float64 with ε = 1e-6 the two agree to about 1e-8 for a correct backward, so a
tolerance of 1e-5 catches real mistakes without false alarms. In float32 the finite difference is far too
noisy: gradcheck therefore insists on float64.

Checking your own op::

    class Cube(scratchgen.autograd.Function):
        '''d/dx x³ = 3x².'''
        def forward(self, x):
            self.x = x
            return x ** 3
        def backward(self, grad):
            return grad * 3 * self.x ** 2

    x = scratchgen.tensor(np.random.randn(4, 3), requires_grad=True)   # float64
    scratchgen.gradcheck(Cube.apply, [x])                              # True, or an error saying where
"""

from __future__ import annotations

import numpy

from scratchgen import backend
from scratchgen.autograd import no_grad
from scratchgen.tensor import Tensor

__all__ = ["gradcheck", "GradcheckError"]


class GradcheckError(AssertionError):
    """The analytic gradient of some input disagrees with its finite-difference estimate."""


def _output_tensor(fn, inputs) -> Tensor:
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: the function must return a Tensor, got {type(out).__name__}")
    return out


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3, seed: int = 0) -> bool:
    """Check the backward of ``fn`` at ``inputs`` against central finite differences in float64.

    Args:
        fn: a function of the inputs returning a Tensor (any shape).
        inputs: list of arguments for ``fn``. Tensors with ``requires_grad=True`` are checked and must be
            float64; other arguments are passed through unchanged.
        eps: the finite-difference step ε.
        atol, rtol: element i passes when |analytic_i - numeric_i| ≤ atol + rtol·|numeric_i|.
        seed: seed of the random output direction v.

    Returns:
        True when every checked input passes.

    Raises:
        GradcheckError: names the input, the worst element, the analytic and the numeric value (both are
            entries of the gradient of Σ v ⊙ f, for the fixed random direction v).
        TypeError: a checked input is not float64, or no input requires a gradient.
    """
    inputs = list(inputs)
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise TypeError("gradcheck: no input has requires_grad=True, so there is nothing to check")
    for i in checked:
        if inputs[i].dtype != numpy.float64:
            raise TypeError(
                f"gradcheck: input {i} has dtype {inputs[i].dtype}; finite differences need float64 "
                f"(make it with scratchgen.tensor(array.astype('float64'), requires_grad=True))"
            )
        inputs[i].grad = None

    # The analytic vector-Jacobian product, for a random direction v of the output's shape.
    out = _output_tensor(fn, inputs)
    direction = numpy.random.default_rng(seed).standard_normal(out.shape)
    v = backend.asarray(direction, dtype=out.dtype)
    (out * Tensor(v)).sum().backward()

    def s() -> float:
        with no_grad():
            return float((_output_tensor(fn, inputs).data * v).sum())

    for i in checked:
        x = inputs[i]
        x.data = backend.xp.ascontiguousarray(x.data)  # so that reshape(-1) below is a view, not a copy
        analytic = numpy.zeros(x.shape) if x.grad is None else backend.to_numpy(x.grad)
        numeric = numpy.zeros(x.shape)
        flat = x.data.reshape(-1)  # a view: writing into it perturbs the input in place
        for k in range(flat.size):
            original = flat[k].item()
            flat[k] = original + eps
            plus = s()
            flat[k] = original - eps
            minus = s()
            flat[k] = original
            numeric.flat[k] = (plus - minus) / (2 * eps)
        error = numpy.abs(analytic - numeric)
        excess = error - (atol + rtol * numpy.abs(numeric))
        if excess.size and excess.max() > 0:
            worst = tuple(int(k) for k in numpy.unravel_index(int(excess.argmax()), x.shape))
            name = f" ({x.name})" if x.name else ""
            raise GradcheckError(
                f"gradcheck: the gradient of input {i}{name}, shape {x.shape}, is wrong: at element {worst} "
                f"backward gives {analytic[worst]:.6g} but finite differences give {numeric[worst]:.6g} "
                f"(difference {error[worst]:.3g}; tolerance atol={atol:g} + rtol={rtol:g}·|numeric|). "
                f"{int((excess > 0).sum())} of {excess.size} elements are out of tolerance."
            )
    return True

"""gradcheck and gradgradcheck: test an op's derivatives against finite differences, as every test in
scratchgen does.

**First derivatives.** For a function f of tensors, pick a fixed random direction v of f's output shape
and look at the scalar s(x) = Σ v ⊙ f(x). Its gradient ds/dx, computed by autograd, is exactly what
backward produces for the seed gradient v (a vector-Jacobian product). The same gradient estimated
numerically, one input element at a time, is the central difference

    ds/dx_i ≈ (s(x + ε·e_i) - s(x - ε·e_i)) / (2ε),

whose error is O(ε²). In float64 with ε = 1e-6 the two agree to about 1e-8 for a correct backward, so a
tolerance of 1e-5 catches real mistakes without false alarms. In float32 the finite difference is far too
noisy: gradcheck therefore insists on float64.

**Second derivatives.** gradgradcheck applies the same test to the *first derivative*: it treats
g(x) = ds/dx, computed by autograd with ``create_graph=True``, as the function to check. Its gradient
along a second random direction u, d(Σ u ⊙ g)/dx = H·u (a Hessian-vector product), comes from
differentiating the backward pass; its finite difference from evaluating g at x ± ε·e_i. A backward
that treats a saved value as a constant although it depends on the input has the right first
derivative and the wrong second one: only this check sees it.

Checking your own op::

    class Cube(scratchgen.autograd.Function):
        '''d/dx x³ = 3x².'''
        def forward(self, x):
            return x ** 3
        def backward(self, grad):
            x, = self.inputs
            return grad * 3 * x ** 2

    x = scratchgen.tensor(np.random.randn(4, 3), requires_grad=True)   # float64
    scratchgen.gradcheck(Cube.apply, [x])       # True, or an error saying where
    scratchgen.gradgradcheck(Cube.apply, [x])   # the same for d²/dx² x³ = 6x
"""

from __future__ import annotations

import numpy

from scratchgen import backend
from scratchgen.autograd import enable_grad, grad
from scratchgen.ops import concatenate
from scratchgen.tensor import Tensor, zeros_like

__all__ = ["gradcheck", "gradgradcheck", "GradcheckError"]


class GradcheckError(AssertionError):
    """The analytic gradient of some input disagrees with its finite-difference estimate."""


def _output_tensor(fn, inputs, caller: str) -> Tensor:
    out = fn(*inputs)
    if not isinstance(out, Tensor):
        raise TypeError(f"{caller}: the function must return a Tensor, got {type(out).__name__}")
    return out


def _checked_inputs(inputs, caller: str) -> list:
    """Indices of the inputs to check: the Tensors that require grad, which must be float64."""
    checked = [i for i, t in enumerate(inputs) if isinstance(t, Tensor) and t.requires_grad]
    if not checked:
        raise TypeError(f"{caller}: no input has requires_grad=True, so there is nothing to check")
    for i in checked:
        if inputs[i].dtype != numpy.float64:
            raise TypeError(
                f"{caller}: input {i} has dtype {inputs[i].dtype}; finite differences need float64 "
                f"(make it with scratchgen.tensor(array.astype('float64'), requires_grad=True))"
            )
    return checked


def _compare(fn, inputs, checked, eps, atol, rtol, seed, caller: str, what: str, analytic_name: str,
             numeric_name: str) -> bool:
    """The check both functions share: the gradient of s(x) = Σ v ⊙ fn(x) by autograd and by differences."""
    out = _output_tensor(fn, inputs, caller)
    direction = numpy.random.default_rng(seed).standard_normal(out.shape)
    v = backend.asarray(direction, dtype=out.dtype)
    targets = [inputs[i] for i in checked]
    if out.requires_grad:  # a function that is constant in the inputs (a linear map's gradient) has none
        analytic = grad((out * Tensor(v)).sum(), targets, allow_unused=True)
    else:
        analytic = [None] * len(targets)

    def s() -> float:
        # Not under no_grad: fn may itself differentiate (a gradient penalty calls grad inside).
        return float((_output_tensor(fn, inputs, caller).data * v).sum())

    for i, g in zip(checked, analytic):
        x = inputs[i]
        x.data = backend.xp.ascontiguousarray(x.data)  # so that reshape(-1) below is a view, not a copy
        analytic_i = numpy.zeros(x.shape) if g is None else backend.to_numpy(g.data)
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
        error = numpy.abs(analytic_i - numeric)
        excess = error - (atol + rtol * numpy.abs(numeric))
        if excess.size and excess.max() > 0:
            worst = tuple(int(k) for k in numpy.unravel_index(int(excess.argmax()), x.shape))
            name = f" ({x.name})" if x.name else ""
            raise GradcheckError(
                f"{caller}: the {what} of input {i}{name}, shape {x.shape}, is wrong: at element {worst} "
                f"{analytic_name} gives {analytic_i[worst]:.6g} but {numeric_name} give {numeric[worst]:.6g} "
                f"(difference {error[worst]:.3g}; tolerance atol={atol:g} + rtol={rtol:g}·|numeric|). "
                f"{int((excess > 0).sum())} of {excess.size} elements are out of tolerance."
            )
    return True


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
        True when every checked input passes. No input's ``.grad`` is touched.

    Raises:
        GradcheckError: names the input, the worst element, the analytic and the numeric value (both are
            entries of the gradient of Σ v ⊙ f, for the fixed random direction v).
        TypeError: a checked input is not float64, or no input requires a gradient.
    """
    inputs = list(inputs)
    checked = _checked_inputs(inputs, "gradcheck")
    return _compare(fn, inputs, checked, eps, atol, rtol, seed, "gradcheck", "gradient", "backward",
                    "finite differences")


def gradgradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-5, rtol: float = 1e-3, seed: int = 0) -> bool:
    """Check the second derivatives of ``fn`` at ``inputs``: the backward of its backward, in float64.

    The first derivative g(x, v) = d(Σ v ⊙ fn(x))/dx, for a random output gradient v, is computed by
    autograd with ``create_graph=True``; then g is checked as :func:`gradcheck` checks a function, with
    respect to x and to v (as PyTorch's gradgradcheck does): its gradient along a random direction, by
    differentiating the backward pass, against central differences of g.

    Args:
        fn, inputs, eps, atol, rtol, seed: as for :func:`gradcheck`.

    Returns:
        True when every checked input passes.

    Raises:
        GradcheckError: names the input and the worst element of the second derivative, with the value
            from double backward and the value from finite differences of the first derivative.
        TypeError: a checked input is not float64, or no input requires a gradient.
    """
    inputs = list(inputs)
    checked = _checked_inputs(inputs, "gradgradcheck")
    out = _output_tensor(fn, inputs, "gradgradcheck")
    direction = numpy.random.default_rng(seed).standard_normal(out.shape)
    v = Tensor(backend.asarray(direction, dtype=out.dtype), requires_grad=True, name="the output gradient v")

    def first_derivative(*args):
        """All of d(Σ v ⊙ fn)/dx for the checked inputs, flattened into one differentiable vector."""
        *args, v = args
        with enable_grad():
            targets = [args[i] for i in checked]
            grads = grad((_output_tensor(fn, args, "gradgradcheck") * v).sum(), targets, create_graph=True,
                         allow_unused=True)
            parts = [(zeros_like(t) if g is None else g).reshape(-1) for g, t in zip(grads, targets)]
            return concatenate(parts)

    # v is checked as an input too: the first derivative is linear in v, and its derivative in v is the
    # backward of the backward, which for a linear op (reshape, im2col) is all there is to check.
    return _compare(first_derivative, inputs + [v], checked + [len(inputs)], eps, atol, rtol, seed + 1,
                    "gradgradcheck", "second derivative", "double backward",
                    "finite differences of the first derivative")

"""Elementwise ops: arithmetic with NumPy broadcasting, and the usual nonlinearities.

Each op's ``backward`` returns gradients with the *output's* (broadcast) shape; the engine
(:func:`scratchgen.autograd.unbroadcast`) sums them back to each input's shape. The docstring line of
each class is the derivative that its ``backward`` implements, written with Tensor ops on
``self.inputs`` and ``self.output`` so that it can be differentiated again. Where a backward multiplies
by a constant array (a ReLU's mask, the sign of x), that array is piecewise constant in the input, so
its own derivative is zero wherever it is defined and nothing is lost.

The nonlinearities are named for their functions (:class:`Logistic` is σ, :class:`Rectifier` the
(leaky) ReLU), so that they are not confused with the layers of :mod:`scratchgen.nn` that call them.
"""

from __future__ import annotations

from scratchgen.autograd import Function, constant, is_grad_enabled
from scratchgen.backend import xp


def logistic(x):
    """σ(x) = 1 / (1 + e^-x) of an array, as ½(1 + tanh(x/2)): the same function, and e^-x never overflows.

    The one array-level sigmoid of the library: the :class:`Logistic` op and the samplers that work on
    raw arrays both call it.
    """
    out = xp.tanh(0.5 * x)
    out += 1  # in place: two arrays the size of x, where 0.5 * (1 + tanh(0.5 * x)) would make four
    out *= 0.5
    return out


class Add(Function):
    """d(a + b) = da + db."""

    saved_inputs = ()
    saves_output = False

    def forward(self, a, b):
        return a + b

    def backward(self, grad):
        return grad, grad


class Sub(Function):
    """d(a - b) = da - db."""

    saved_inputs = ()
    saves_output = False

    def forward(self, a, b):
        return a - b

    def backward(self, grad):
        return grad, (-grad if self.needs_input_grad[1] else None)


class Mul(Function):
    """d(a·b) = b·da + a·db."""

    saved_inputs = None
    saves_output = False

    def forward(self, a, b):
        return a * b

    def backward(self, grad):
        a, b = self.inputs
        need_a, need_b = self.needs_input_grad
        return (grad * b if need_a else None), (grad * a if need_b else None)


class Div(Function):
    """d(a / b) = da / b - (a / b²)·db."""

    saved_inputs = (1,)
    saves_output = True

    def forward(self, a, b):
        return a / b

    def backward(self, grad):
        grad_a = grad / self.inputs[1]
        return grad_a, (-grad_a * self.output if self.needs_input_grad[1] else None)


class Neg(Function):
    """d(-x) = -dx."""

    saved_inputs = ()
    saves_output = False

    def forward(self, x):
        return -x

    def backward(self, grad):
        return -grad


class PowScalar(Function):
    """d(x^p)/dx = p·x^(p-1), for a constant exponent p."""

    saved_inputs = (0,)
    saves_output = False

    def forward(self, x, exponent):
        self.exponent = exponent
        return x**exponent

    def backward(self, grad):
        return grad * (self.exponent * self.inputs[0] ** (self.exponent - 1))


class Pow(Function):
    """d(a^b) = b·a^(b-1)·da + a^b·log(a)·db (the second term needs a > 0)."""

    saved_inputs = None
    saves_output = True

    def forward(self, a, b):
        return a**b

    def backward(self, grad):
        a, b = self.inputs
        need_a, need_b = self.needs_input_grad
        grad_a = grad * b * a ** (b - 1) if need_a else None
        grad_b = grad * self.output * a.log() if need_b else None
        return grad_a, grad_b


class Exp(Function):
    """d/dx exp(x) = exp(x)."""

    saved_inputs = ()
    saves_output = True

    def forward(self, x):
        return xp.exp(x)

    def backward(self, grad):
        return grad * self.output


class Log(Function):
    """d/dx log(x) = 1 / x."""

    saved_inputs = (0,)
    saves_output = False

    def forward(self, x):
        return xp.log(x)

    def backward(self, grad):
        return grad / self.inputs[0]


class Sqrt(Function):
    """d/dx √x = 1 / (2√x)."""

    saved_inputs = ()
    saves_output = True

    def forward(self, x):
        return xp.sqrt(x)

    def backward(self, grad):
        return grad / (2 * self.output)


class Abs(Function):
    """d/dx |x| = sign(x) (0 at x = 0)."""

    saved_inputs = ()
    saves_output = False

    def forward(self, x):
        self.sign = xp.sign(x)
        return xp.abs(x)

    def backward(self, grad):
        return grad * constant(self.sign)


class HyperbolicTangent(Function):
    """d/dx tanh(x) = 1 - tanh(x)²."""

    saved_inputs = ()
    saves_output = True

    def forward(self, x):
        return xp.tanh(x)

    def backward(self, grad):
        y = self.output
        return grad * (1 - y * y)


class Logistic(Function):
    """d/dx σ(x) = σ(x)·(1 - σ(x)), with σ(x) = 1 / (1 + e^-x)."""

    saved_inputs = ()
    saves_output = True

    def forward(self, x):
        return logistic(x)

    def backward(self, grad):
        y = self.output
        return grad * y * (1 - y)


class Rectifier(Function):
    """d/dx rectifier(x) = 1 where x > 0, else the negative slope α (0 for a ReLU, 0.2 for DCGAN's leaky one).

    rectifier(x) = x for x > 0 and α·x otherwise: the ReLU of Nair & Hinton (2010) at α = 0, the leaky
    ReLU of Maas et al. (2013) otherwise.
    """

    def forward(self, x, negative_slope=0.0):
        self.negative_slope = negative_slope
        # For 0 ≤ α < 1 the output is positive exactly where x is, so the backward reads the slope off the
        # output, which the next layer keeps anyway, and the graph need not keep x.
        self.saves_output = 0 <= negative_slope < 1
        self.saved_inputs = () if self.saves_output else (0,)
        if negative_slope == 0:
            return xp.maximum(x, 0)
        if 0 < negative_slope < 1:
            return xp.maximum(x, negative_slope * x)  # the larger of x and αx is x exactly when x > 0
        return x * self._slope(x)

    def _slope(self, x):
        """The local slope, 1 or α, as an array: grad·slope is then a plain product. (NumPy's where() on
        a mask of random signs is some 20× slower than a product.)"""
        slope = (x > 0).astype(x.dtype)
        if self.negative_slope:
            slope *= 1 - self.negative_slope
            slope += self.negative_slope
        return slope

    def backward(self, grad):
        # The slope is made again here: keeping it from the forward would hold one more array of the
        # input's size per activation until the backward.
        source = self.output if self.saves_output else self.inputs[0]
        return grad * constant(self._slope(source.data))


class LogOnePlusExp(Function):
    """d/dx log(1 + e^x) = σ(x): the softplus function."""

    saved_inputs = (0,)
    saves_output = False

    def forward(self, x):
        # log(1 + eˣ) = max(x, 0) + log(1 + e^-|x|): e^-|x| ≤ 1 never overflows. (log, not log1p, which is
        # several times slower in NumPy; the difference is below float32 resolution of the result.)
        return xp.maximum(x, 0) + xp.log(1 + xp.exp(-xp.abs(x)))

    def backward(self, grad):
        return grad * Logistic.apply(self.inputs[0])


class SigmoidWeightedLinear(Function):
    """d/dx x·σ(x) = σ(x)·(1 + x·(1 - σ(x))): the SiLU, or swish.

    silu(x) = x·σ(x), the sigmoid-weighted linear unit of Elfwing et al. (2018) (Ramachandran et al.'s
    "swish" with β = 1; Hendrycks & Gimpel's GELU is close to it): smooth where the ReLU has a kink, which
    is why the diffusion models of Ho et al. (2020) use it. Under ``create_graph=True`` the backward makes
    σ(x) again from x, as an op, so that the derivative can itself be differentiated; an ordinary backward
    (a U-Net has dozens of SiLUs) computes the same slope as one array.
    """

    saved_inputs = (0,)
    saves_output = False

    def forward(self, x):
        half = 0.5 * x
        out = xp.tanh(half)
        out += 1
        out *= half  # x·σ(x) = (x/2)·(1 + tanh(x/2)), in place: one pass fewer than x * logistic(x)
        return out

    def backward(self, grad):
        x, = self.inputs
        if is_grad_enabled():  # create_graph: σ(x) as an op, so that the slope can be differentiated again
            s = Logistic.apply(x)
            return grad * s * (1 + x * (1 - s))
        # An ordinary backward: the same slope as one array, built in place (five passes over x, where the
        # ops above make five new arrays and keep them in a graph that nothing will use).
        s = logistic(x.data)
        slope = 1 - s
        slope *= x.data
        slope += 1
        slope *= s
        return grad * constant(slope)


class Clip(Function):
    """d/dx clip(x, low, high) = 1 where low ≤ x ≤ high, else 0."""

    saved_inputs = ()
    saves_output = False

    def forward(self, x, low=None, high=None):
        inside = xp.ones(x.shape, dtype=bool)
        if low is not None:
            inside &= x >= low
        if high is not None:
            inside &= x <= high
        self.inside = inside.astype(x.dtype)
        return xp.clip(x, low, high)

    def backward(self, grad):
        return grad * constant(self.inside)


class Where(Function):
    """where(c, a, b) takes a where the constant condition c holds, else b; the gradient follows."""

    saved_inputs = ()
    saves_output = False

    def forward(self, a, b, condition):
        self.condition = condition
        return xp.where(condition, a, b)

    def backward(self, grad):
        zero = constant(xp.zeros((), dtype=grad.dtype))
        need_a, need_b = self.needs_input_grad
        grad_a = Where.apply(grad, zero, condition=self.condition) if need_a else None
        grad_b = Where.apply(zero, grad, condition=self.condition) if need_b else None
        return grad_a, grad_b

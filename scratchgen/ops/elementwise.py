"""Elementwise ops: arithmetic with NumPy broadcasting, and the usual nonlinearities.

Each op's ``backward`` returns gradients with the *output's* (broadcast) shape; the engine
(:func:`scratchgen.autograd.unbroadcast`) sums them back to each input's shape. The docstring line of
each class is the derivative that its ``backward`` implements.
"""

from __future__ import annotations

from scratchgen.autograd import Function
from scratchgen.backend import xp


class Add(Function):
    """d(a + b) = da + db."""

    def forward(self, a, b):
        return a + b

    def backward(self, grad):
        return grad, grad


class Sub(Function):
    """d(a - b) = da - db."""

    def forward(self, a, b):
        return a - b

    def backward(self, grad):
        return grad, -grad if self.needs_input_grad[1] else None


class Mul(Function):
    """d(a·b) = b·da + a·db."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, grad):
        need_a, need_b = self.needs_input_grad
        return (grad * self.b if need_a else None), (grad * self.a if need_b else None)


class Div(Function):
    """d(a / b) = da / b - (a / b²)·db."""

    def forward(self, a, b):
        self.b = b
        self.out = a / b
        return self.out

    def backward(self, grad):
        grad_a = grad / self.b
        return grad_a, (-grad_a * self.out if self.needs_input_grad[1] else None)


class Neg(Function):
    """d(-x) = -dx."""

    def forward(self, x):
        return -x

    def backward(self, grad):
        return -grad


class PowScalar(Function):
    """d(x^p)/dx = p·x^(p-1), for a constant exponent p."""

    def forward(self, x, exponent):
        self.x, self.exponent = x, exponent
        return x**exponent

    def backward(self, grad):
        return grad * (self.exponent * self.x ** (self.exponent - 1))


class Pow(Function):
    """d(a^b) = b·a^(b-1)·da + a^b·log(a)·db (the second term needs a > 0)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        self.out = a**b
        return self.out

    def backward(self, grad):
        need_a, need_b = self.needs_input_grad
        grad_a = grad * self.b * self.a ** (self.b - 1) if need_a else None
        grad_b = grad * self.out * xp.log(self.a) if need_b else None
        return grad_a, grad_b


class Exp(Function):
    """d/dx exp(x) = exp(x)."""

    def forward(self, x):
        self.out = xp.exp(x)
        return self.out

    def backward(self, grad):
        return grad * self.out


class Log(Function):
    """d/dx log(x) = 1 / x."""

    def forward(self, x):
        self.x = x
        return xp.log(x)

    def backward(self, grad):
        return grad / self.x


class Sqrt(Function):
    """d/dx √x = 1 / (2√x)."""

    def forward(self, x):
        self.out = xp.sqrt(x)
        return self.out

    def backward(self, grad):
        return grad / (2 * self.out)


class Abs(Function):
    """d/dx |x| = sign(x) (0 at x = 0)."""

    def forward(self, x):
        self.x = x
        return xp.abs(x)

    def backward(self, grad):
        return grad * xp.sign(self.x)


class Tanh(Function):
    """d/dx tanh(x) = 1 - tanh(x)²."""

    def forward(self, x):
        self.out = xp.tanh(x)
        return self.out

    def backward(self, grad):
        return grad * (1 - self.out * self.out)


class Sigmoid(Function):
    """d/dx σ(x) = σ(x)·(1 - σ(x)), with σ(x) = 1 / (1 + e^-x)."""

    def forward(self, x):
        # σ(x) = ½(1 + tanh(x/2)): the same function, with no overflow of e^-x for very negative x.
        self.out = 0.5 * (1 + xp.tanh(0.5 * x))
        return self.out

    def backward(self, grad):
        return grad * self.out * (1 - self.out)


class ReLU(Function):
    """d/dx max(x, 0) = 1 where x > 0, else 0."""

    def forward(self, x):
        self.positive = x > 0
        return x * self.positive

    def backward(self, grad):
        return grad * self.positive


class LeakyReLU(Function):
    """d/dx leaky_relu(x) = 1 where x > 0, else the negative slope."""

    def forward(self, x, negative_slope):
        # The local slope, 1 or negative_slope, as an array: x·slope forward and grad·slope backward are
        # plain products. (NumPy's where() on a mask of random signs is some 20× slower than a product.)
        self.slope = (x > 0).astype(x.dtype)
        self.slope *= 1 - negative_slope
        self.slope += negative_slope
        return x * self.slope

    def backward(self, grad):
        return grad * self.slope


class Softplus(Function):
    """d/dx log(1 + e^x) = σ(x)."""

    def forward(self, x):
        self.x = x
        # log(1 + eˣ) = max(x, 0) + log(1 + e^-|x|): e^-|x| ≤ 1 never overflows. (log, not log1p, which is
        # several times slower in NumPy; the difference is below float32 resolution of the result.)
        return xp.maximum(x, 0) + xp.log(1 + xp.exp(-xp.abs(x)))

    def backward(self, grad):
        return grad * (0.5 * (1 + xp.tanh(0.5 * self.x)))


class Clip(Function):
    """d/dx clip(x, low, high) = 1 where low ≤ x ≤ high, else 0."""

    def forward(self, x, low=None, high=None):
        self.inside = xp.ones(x.shape, dtype=bool)
        if low is not None:
            self.inside &= x >= low
        if high is not None:
            self.inside &= x <= high
        return xp.clip(x, low, high)

    def backward(self, grad):
        return grad * self.inside


class Where(Function):
    """where(c, a, b) takes a where the constant condition c holds, else b; the gradient follows."""

    def forward(self, a, b, condition):
        self.condition = condition
        return xp.where(condition, a, b)

    def backward(self, grad):
        zero = xp.zeros((), dtype=grad.dtype)
        return xp.where(self.condition, grad, zero), xp.where(self.condition, zero, grad)

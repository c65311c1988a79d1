"""A planted wrong answer to assignment 1: the square of the denominator is forgotten.

It is written with Tensor ops, so its (wrong) derivative differentiates consistently: gradgradcheck,
which compares the second derivative with finite differences of this first derivative, passes, and
only gradcheck and the comparison with the library's ops catch the mistake.
"""

from scratchgen.autograd import Function
from scratchgen.backend import xp


class Softsign(Function):
    """WRONG: 1 / (1 + |x|), missing the square."""

    def forward(self, x):
        return x / (1 + xp.abs(x))

    def backward(self, grad):
        x, = self.inputs
        return grad / (1 + x.abs())


def softsign(x):
    return Softsign.apply(x)

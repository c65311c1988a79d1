"""A planted wrong answer to assignment 1: an eps added to the denominator "for safety".

The derivative 1 / (1 + |x| + 1e-7)² is off by about 2·10⁻⁷ of its value: far inside gradcheck's
tolerance, so gradcheck and gradgradcheck pass. Only the comparison with autograd through the library's
ops sees it, and its message must print enough digits for the two numbers to look different.
"""

from scratchgen.autograd import Function
from scratchgen.backend import xp


class Softsign(Function):
    """WRONG by a hair: 1 / (1 + |x| + 1e-7)²."""

    def forward(self, x):
        return x / (1 + xp.abs(x))

    def backward(self, grad):
        x, = self.inputs
        return grad / (1 + x.abs() + 1e-7) ** 2  # BUG: the exact derivative has no eps


def softsign(x):
    return Softsign.apply(x)

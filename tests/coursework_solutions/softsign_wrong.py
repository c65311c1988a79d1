"""A planted wrong answer to assignment 1: the square of the denominator is forgotten."""

from scratchgen.autograd import Function
from scratchgen.backend import xp


class Softsign(Function):
    """WRONG: 1 / (1 + |x|), missing the square."""

    def forward(self, x):
        self.x = x
        return x / (1 + xp.abs(x))

    def backward(self, grad):
        return grad / (1 + xp.abs(self.x))


def softsign(x):
    return Softsign.apply(x)

"""Reference answer to assignment 1 (used by tests/test_coursework.py): softsign's backward."""

from scratchgen.autograd import Function
from scratchgen.backend import xp


class Softsign(Function):
    """d/dx softsign(x) = 1 / (1 + |x|)²."""

    def forward(self, x):
        return x / (1 + xp.abs(x))

    def backward(self, grad):
        x, = self.inputs
        return grad / (1 + x.abs()) ** 2


def softsign(x):
    return Softsign.apply(x)

"""A planted wrong answer to assignment 1: the right derivative, computed from a saved array.

This is the answer the assignment had before backward received Tensors: the forward keeps the array x
and the backward divides by (1 + |x|)² computed from it. Dividing a Tensor by an array still gives a
Tensor, so the first derivative is right and every first-order check passes; but the engine sees the
array as a constant, so differentiating this gradient again misses the derivative of 1 / (1 + |x|)²
(wrapping it as ``constant(...)``, or reading ``self.inputs[0].data``, is the same mistake). Only
gradgradcheck catches it.
"""

from scratchgen.autograd import Function
from scratchgen.backend import xp


class Softsign(Function):
    """WRONG for second derivatives: 1 / (1 + |x|)², from an array the graph cannot see."""

    def forward(self, x):
        self.x = x  # BUG: an array, outside the graph
        return x / (1 + xp.abs(x))

    def backward(self, grad):
        return grad / (1 + xp.abs(self.x)) ** 2


def softsign(x):
    return Softsign.apply(x)

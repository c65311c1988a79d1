"""Assignment 1: write the backward of a new op, softsign, and prove it with gradcheck and gradgradcheck.

    softsign(x) = x / (1 + |x|)

squashes any number into (-1, 1), like tanh but approaching ±1 only polynomially. The forward is
written; the backward is yours. Read ``coursework/01_backward/README.md`` first, then replace the line
marked YOUR CODE HERE and grade your work from the repository's root with

    python -m pytest coursework/01_backward
"""

from scratchgen.autograd import Function
from scratchgen.backend import xp


class Softsign(Function):
    """d/dx softsign(x) = ... (write the derivative here once you have it: the op's first docstring line
    is its derivative, in every op of scratchgen)."""

    def forward(self, x):
        return x / (1 + xp.abs(x))

    def backward(self, grad):
        """Args: grad, dL/dy for y = softsign(x): a Tensor of x's shape. Returns dL/dx, a Tensor of x's shape."""
        # The op's input as a Tensor, not an array: what you compute from it with Tensor ops (+, *, /, **,
        # .abs()) is recorded too, so that your gradient can itself be differentiated.
        x, = self.inputs
        # YOUR CODE HERE: one line, the chain rule dL/dx = dL/dy · dy/dx, elementwise, with Tensor ops on x.
        raise NotImplementedError("your code here: Softsign.backward")


def softsign(x):
    """softsign of a Tensor, recorded in the graph so that ``backward()`` reaches Softsign.backward."""
    return Softsign.apply(x)

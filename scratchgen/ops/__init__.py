"""Every differentiable op of scratchgen, one class each, with its forward and backward side by side.

* :mod:`~scratchgen.ops.elementwise`: + - * / ** and the nonlinearities;
* :mod:`~scratchgen.ops.reduce`: sum, mean, max, logsumexp, log_softmax;
* :mod:`~scratchgen.ops.shape`: reshape, transpose, indexing, concatenate, stack;
* :mod:`~scratchgen.ops.linalg`: matmul and linear;
* :mod:`~scratchgen.ops.conv`: conv2d and conv_transpose2d, by im2col and col2im;
* :mod:`~scratchgen.ops.pool`: max and average pooling, nearest upsampling;
* :mod:`~scratchgen.ops.norm`: batch normalisation.

The functions at the bottom are the functional forms of the ops that take several tensors.
"""

from scratchgen.ops.elementwise import (  # noqa: F401
    Abs, Add, Clip, Div, Exp, LeakyReLU, Log, Mul, Neg, Pow, PowScalar, ReLU, Sigmoid, Softplus, Sqrt, Sub,
    Tanh, Where,
)
from scratchgen.ops.linalg import Linear, MatMul  # noqa: F401
from scratchgen.ops.conv import Conv2d, ConvTranspose2d  # noqa: F401
from scratchgen.ops.norm import BatchNorm  # noqa: F401
from scratchgen.ops.pool import AvgPool2d, MaxPool2d, UpsampleNearest2d  # noqa: F401
from scratchgen.ops.reduce import LogSoftmax, LogSumExp, Max, Mean, Sum  # noqa: F401
from scratchgen.ops.shape import Concatenate, Index, Reshape, Stack, Transpose  # noqa: F401


def concatenate(tensors, axis: int = 0):
    """Join tensors along an existing axis (NumPy's ``concatenate``)."""
    return Concatenate.apply(*tensors, axis=axis)


def stack(tensors, axis: int = 0):
    """Join tensors along a new axis (NumPy's ``stack``)."""
    return Stack.apply(*tensors, axis=axis)


def where(condition, a, b):
    """``a`` where ``condition`` holds, else ``b``; ``condition`` is a boolean array or tensor (no gradient).

    ``a`` and ``b`` may be tensors or numbers.
    """
    from scratchgen.tensor import Tensor

    condition = condition.data if isinstance(condition, Tensor) else condition
    if not isinstance(a, Tensor):
        a = b._lift(a)
    if not isinstance(b, Tensor):
        b = a._lift(b)
    return Where.apply(a, b, condition=condition)

"""Every differentiable op of scratchgen, one class each, with its forward and backward side by side.

* :mod:`~scratchgen.ops.elementwise`: + - * / ** and the nonlinearities;
* :mod:`~scratchgen.ops.reduce`: sum, mean, max, logsumexp, log_softmax;
* :mod:`~scratchgen.ops.shape`: reshape, transpose, broadcasting, indexing, concatenate, stack;
* :mod:`~scratchgen.ops.linalg`: matmul and the affine map x·Wᵀ + b;
* :mod:`~scratchgen.ops.conv`: im2col and col2im, each the other's gradient, and conv2d and
  conv_transpose2d composed from them;
* :mod:`~scratchgen.ops.conv_shifted`: the same convolutions as sums of shifted matrix products, three
  ops that are each other's gradients (the fast path for stride-1 kernels, and for masked ones);
* :mod:`~scratchgen.ops.pool`: max and average pooling (composed from im2col), nearest upsampling;
* :mod:`~scratchgen.ops.norm`: batch and group normalisation, one fused op each.

Every backward is written with Tensor ops, so every gradient can be differentiated again. The functions
at the bottom are the functional forms of the ops that take several tensors.
"""

from scratchgen import backend
from scratchgen.ops.elementwise import (  # noqa: F401
    Abs, Add, Clip, Div, Exp, HyperbolicTangent, Log, LogOnePlusExp, Logistic, Mul, Neg, Pow, PowScalar,
    Rectifier, SigmoidWeightedLinear, Sqrt, Sub, Where,
)
from scratchgen.ops.shape import BroadcastTo, Concatenate, Index, IndexScatter, Reshape, Stack, Transpose  # noqa: F401
from scratchgen.ops.reduce import LogSoftmax, LogSumExp, Max, Mean, Sum  # noqa: F401
from scratchgen.ops.linalg import Affine, MatMul  # noqa: F401
from scratchgen.ops.conv import Col2Im, Im2Col  # noqa: F401
from scratchgen.ops.norm import BatchNorm, GroupNormalisation  # noqa: F401
from scratchgen.ops.pool import UpsampleNearest2d, WindowMax  # noqa: F401


def concatenate(tensors, axis: int = 0):
    """Join tensors along an existing axis (NumPy's ``concatenate``)."""
    return Concatenate.apply(*tensors, axis=axis)


def stack(tensors, axis: int = 0):
    """Join tensors along a new axis (NumPy's ``stack``)."""
    return Stack.apply(*tensors, axis=axis)


def where(condition, a, b):
    """``a`` where ``condition`` holds, else ``b``; ``condition`` is a boolean array (host or device) or
    tensor (no gradient).

    ``a`` and ``b`` may be tensors or numbers.
    """
    from scratchgen.tensor import Tensor

    condition = condition.data if isinstance(condition, Tensor) else backend.asarray(condition)  # a host mask too
    if not isinstance(a, Tensor):
        a = b._lift(a)
    if not isinstance(b, Tensor):
        b = a._lift(b)
    return Where.apply(a, b, condition=condition)

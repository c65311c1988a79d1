"""Reductions: sum, mean, max, logsumexp and log_softmax along chosen axes.

The backward of a reduction spreads the output gradient back over the reduced axes. ``_expand`` puts
the reduced axes back as size-1 axes (when ``keepdims`` was False), and :class:`BroadcastTo` copies the
gradient along them; both are ops, so these backwards can be differentiated again.
"""

from __future__ import annotations

from scratchgen.autograd import Function, constant
from scratchgen.backend import xp
from scratchgen.ops.shape import BroadcastTo


def _axes(axis, ndim) -> tuple:
    """``axis`` (None, an int or a tuple, negatives allowed) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axis = (axis,) if isinstance(axis, int) else tuple(axis)
    for a in axis:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for an array of {ndim} dimensions")
    return tuple(sorted(a % ndim for a in axis))


def _kept_shape(shape, axes) -> tuple:
    """``shape`` with the reduced ``axes`` kept as size 1: the shape of the result with keepdims=True."""
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _expand(grad, shape, axes):
    """Give the Tensor ``grad`` back the reduced axes as size-1 axes, ready to broadcast over the input."""
    return grad.reshape(_kept_shape(shape, axes))


class Sum(Function):
    """d/dx_i Σ_j x_j = 1: the gradient is copied to every summed element."""

    saved_inputs = ()
    saves_output = False

    def forward(self, x, axis=None, keepdims=False):
        self.axes = _axes(axis, x.ndim)
        return x.sum(axis=self.axes, keepdims=keepdims)

    def backward(self, grad):
        shape = self.inputs[0].shape
        return BroadcastTo.apply(_expand(grad, shape, self.axes), shape=shape)


class Mean(Function):
    """d/dx_i (1/n) Σ_j x_j = 1/n."""

    saved_inputs = ()
    saves_output = False

    def forward(self, x, axis=None, keepdims=False):
        self.axes = _axes(axis, x.ndim)
        self.count = 1
        for a in self.axes:
            self.count *= x.shape[a]
        return x.mean(axis=self.axes, keepdims=keepdims)

    def backward(self, grad):
        shape = self.inputs[0].shape
        return BroadcastTo.apply(_expand(grad, shape, self.axes) / self.count, shape=shape)


class Max(Function):
    """d/dx_i max_j x_j = 1 at the maximum (shared equally between ties), else 0."""

    saved_inputs = ()
    saves_output = False

    def forward(self, x, axis=None, keepdims=False):
        self.axes = _axes(axis, x.ndim)
        out = x.max(axis=self.axes, keepdims=True)
        winners = x == out
        # The share of the gradient each element gets: 1/(number of ties) at a maximum, else 0. Constant
        # in x wherever the maximum is unique, so the second derivative is 0 there, as it should be.
        self.share = winners / winners.sum(axis=self.axes, keepdims=True).astype(x.dtype)
        return out if keepdims else out.squeeze(self.axes)

    def backward(self, grad):
        return _expand(grad, self.inputs[0].shape, self.axes) * constant(self.share)


class LogSumExp(Function):
    """d/dx_i log Σ_j exp(x_j) = softmax(x)_i = exp(x_i - logsumexp(x))."""

    saved_inputs = (0,)
    saves_output = True

    def forward(self, x, axis=None, keepdims=False):
        self.axes = _axes(axis, x.ndim)
        shift = x.max(axis=self.axes, keepdims=True)  # subtracting the max keeps exp from overflowing
        shift = xp.where(xp.isfinite(shift), shift, 0)
        out = shift + xp.log(xp.exp(x - shift).sum(axis=self.axes, keepdims=True))
        return out if keepdims else out.squeeze(self.axes)

    def backward(self, grad):
        x = self.inputs[0]
        softmax = (x - _expand(self.output, x.shape, self.axes)).exp()
        return _expand(grad, x.shape, self.axes) * softmax


class LogSoftmax(Function):
    """d log_softmax(x)_i / dx_j = δ_ij - softmax(x)_j, so the gradient is g - softmax·Σg."""

    saved_inputs = ()
    saves_output = True

    def forward(self, x, axis=-1):
        self.axis = axis
        shift = x.max(axis=axis, keepdims=True)
        shifted = x - shift
        return shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))

    def backward(self, grad):
        return grad - self.output.exp() * grad.sum(axis=self.axis, keepdims=True)

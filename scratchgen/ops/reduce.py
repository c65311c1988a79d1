"""Reductions: sum, mean, max, logsumexp and log_softmax along chosen axes.

The backward of a reduction spreads the output gradient back over the reduced axes. ``_expand`` puts
the reduced axes back as size-1 axes (when ``keepdims`` was False) so that broadcasting does the spreading.
"""

from __future__ import annotations

from scratchgen.autograd import Function
from scratchgen.backend import xp


def _axes(axis, ndim) -> tuple:
    """``axis`` (None, an int or a tuple, negatives allowed) as a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axis = (axis,) if isinstance(axis, int) else tuple(axis)
    for a in axis:
        if not -ndim <= a < ndim:
            raise ValueError(f"axis {a} is out of range for an array of {ndim} dimensions")
    return tuple(sorted(a % ndim for a in axis))


def _expand(grad, axes, keepdims):
    """Give ``grad`` back the reduced axes as size-1 axes, ready to broadcast over the input."""
    return grad if keepdims else xp.expand_dims(grad, axes)


class Sum(Function):
    """d/dx_i Σ_j x_j = 1: the gradient is copied to every summed element."""

    def forward(self, x, axis=None, keepdims=False):
        self.shape, self.axes, self.keepdims = x.shape, _axes(axis, x.ndim), keepdims
        return x.sum(axis=self.axes, keepdims=keepdims)

    def backward(self, grad):
        # broadcast_to gives a read-only view; copy it so that the gradient is an ordinary array.
        return xp.broadcast_to(_expand(grad, self.axes, self.keepdims), self.shape).copy()


class Mean(Function):
    """d/dx_i (1/n) Σ_j x_j = 1/n."""

    def forward(self, x, axis=None, keepdims=False):
        self.shape, self.axes, self.keepdims = x.shape, _axes(axis, x.ndim), keepdims
        self.count = 1
        for a in self.axes:
            self.count *= x.shape[a]
        return x.mean(axis=self.axes, keepdims=keepdims)

    def backward(self, grad):
        grad = _expand(grad, self.axes, self.keepdims) / grad.dtype.type(self.count)
        return xp.broadcast_to(grad, self.shape).copy()


class Max(Function):
    """d/dx_i max_j x_j = 1 at the maximum (shared equally between ties), else 0."""

    def forward(self, x, axis=None, keepdims=False):
        self.axes, self.keepdims = _axes(axis, x.ndim), keepdims
        out = x.max(axis=self.axes, keepdims=True)
        self.winners = x == out
        return out if keepdims else out.squeeze(self.axes)

    def backward(self, grad):
        ties = self.winners.sum(axis=self.axes, keepdims=True)
        return _expand(grad, self.axes, self.keepdims) * self.winners / ties.astype(grad.dtype)


class LogSumExp(Function):
    """d/dx_i log Σ_j exp(x_j) = softmax(x)_i."""

    def forward(self, x, axis=None, keepdims=False):
        self.x, self.axes, self.keepdims = x, _axes(axis, x.ndim), keepdims
        shift = x.max(axis=self.axes, keepdims=True)  # subtracting the max keeps exp from overflowing
        shift = xp.where(xp.isfinite(shift), shift, 0)
        self.out = shift + xp.log(xp.exp(x - shift).sum(axis=self.axes, keepdims=True))
        return self.out if keepdims else self.out.squeeze(self.axes)

    def backward(self, grad):
        softmax = xp.exp(self.x - self.out)
        return _expand(grad, self.axes, self.keepdims) * softmax


class LogSoftmax(Function):
    """d log_softmax(x)_i / dx_j = δ_ij - softmax(x)_j, so the gradient is g - softmax·Σg."""

    def forward(self, x, axis=-1):
        self.axis = axis
        shift = x.max(axis=axis, keepdims=True)
        shifted = x - shift
        self.out = shifted - xp.log(xp.exp(shifted).sum(axis=axis, keepdims=True))
        return self.out

    def backward(self, grad):
        return grad - xp.exp(self.out) * grad.sum(axis=self.axis, keepdims=True)

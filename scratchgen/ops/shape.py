"""Ops that move elements without changing them: reshape, transpose, broadcasting, indexing,
concatenate, stack.

Their backward moves the gradient back to where each element came from, with the op that undoes the
move: reshape undoes reshape, the inverse permutation undoes a transpose, :class:`IndexScatter` (add
into zeros) undoes indexing and indexing undoes it. Each pair are adjoints of each other, so their
gradients can be differentiated again.
"""

from __future__ import annotations

from scratchgen import backend
from scratchgen.autograd import Function
from scratchgen.backend import xp


class Reshape(Function):
    """The gradient of a reshape is the output gradient reshaped back."""

    saved_inputs = ()
    saves_output = False
    float_only = False

    def forward(self, x, shape):
        return x.reshape(shape)

    def backward(self, grad):
        return grad.reshape(self.inputs[0].shape)


class Transpose(Function):
    """The gradient of a permutation of axes is the inverse permutation of the output gradient."""

    saved_inputs = ()
    saves_output = False
    float_only = False

    def forward(self, x, axes=None):
        self.axes = tuple(reversed(range(x.ndim))) if axes is None else tuple(a % x.ndim for a in axes)
        return x.transpose(self.axes)

    def backward(self, grad):
        inverse = [0] * len(self.axes)
        for i, a in enumerate(self.axes):
            inverse[a] = i
        return grad.transpose(inverse)


class BroadcastTo(Function):
    """y = x broadcast to ``shape``: each element of x is used once per copy, so grad_x sums the copies.

    The summing is :func:`scratchgen.autograd.unbroadcast`, which the engine applies to every gradient
    of a broadcast shape; the backward therefore returns the output gradient as it is.
    """

    saved_inputs = ()
    saves_output = False

    def forward(self, x, shape):
        # A copy, not NumPy's read-only broadcast view: the result may become a leaf's .grad, which
        # users are free to change in place (gradient clipping).
        return xp.broadcast_to(x, shape).copy()

    def backward(self, grad):
        return grad


def _has_integer_array(index) -> bool:
    """True when ``index`` holds an integer array, whose positions may repeat."""
    parts = index if isinstance(index, tuple) else (index,)
    return any(hasattr(p, "dtype") and p.dtype.kind in "iu" or isinstance(p, list) for p in parts)


class Index(Function):
    """x[index]: the gradient goes back to the selected positions, added up where they repeat."""

    saved_inputs = ()
    saves_output = False
    float_only = False

    def forward(self, x, index):
        self.index = index
        return x[index]

    def backward(self, grad):
        return IndexScatter.apply(grad, shape=self.inputs[0].shape, index=self.index)


class IndexScatter(Function):
    """y = zeros(shape) with y[index] += x, the adjoint of :class:`Index`: so grad_x = grad[index]."""

    saved_inputs = ()
    saves_output = False

    def forward(self, x, shape, index):
        self.index = index
        full = xp.zeros(shape, dtype=x.dtype)
        if _has_integer_array(index):
            backend.scatter_add(full, index, x)  # x[[0, 0]] used x[0] twice: both gradients add up
        else:
            full[index] = x  # slices and masks pick each element at most once
        return full

    def backward(self, grad):
        return Index.apply(grad, index=self.index)


class Concatenate(Function):
    """The gradient of a concatenation is the output gradient cut back into the pieces."""

    saved_inputs = ()
    saves_output = False

    def forward(self, *arrays, axis=0):
        self.axis = axis % arrays[0].ndim
        self.sizes = [a.shape[self.axis] for a in arrays]
        return xp.concatenate(arrays, axis=axis)

    def backward(self, grad):
        pieces, start = [], 0
        for size in self.sizes:
            pieces.append(grad[(slice(None),) * self.axis + (slice(start, start + size),)])
            start += size
        return tuple(pieces)


class Stack(Function):
    """The gradient of stacking along a new axis is the output gradient's slices along it."""

    saved_inputs = ()
    saves_output = False

    def forward(self, *arrays, axis=0):
        self.axis = axis % (arrays[0].ndim + 1)
        return xp.stack(arrays, axis=axis)

    def backward(self, grad):
        return tuple(grad[(slice(None),) * self.axis + (i,)] for i in range(len(self.inputs)))

"""Ops that move elements without changing them: reshape, transpose, indexing, concatenate, stack.

Their backward moves the gradient back to where each element came from.
"""

from __future__ import annotations

from scratchgen import backend
from scratchgen.autograd import Function
from scratchgen.backend import xp


class Reshape(Function):
    """The gradient of a reshape is the output gradient reshaped back."""

    float_only = False

    def forward(self, x, shape):
        self.shape = x.shape
        return x.reshape(shape)

    def backward(self, grad):
        return grad.reshape(self.shape)


class Transpose(Function):
    """The gradient of a permutation of axes is the inverse permutation of the output gradient."""

    float_only = False

    def forward(self, x, axes=None):
        self.axes = tuple(reversed(range(x.ndim))) if axes is None else tuple(a % x.ndim for a in axes)
        return x.transpose(self.axes)

    def backward(self, grad):
        inverse = [0] * len(self.axes)
        for i, a in enumerate(self.axes):
            inverse[a] = i
        return grad.transpose(inverse)


def _has_integer_array(index) -> bool:
    """True when ``index`` holds an integer array, whose positions may repeat."""
    parts = index if isinstance(index, tuple) else (index,)
    return any(hasattr(p, "dtype") and p.dtype.kind in "iu" or isinstance(p, list) for p in parts)


class Index(Function):
    """x[index]: the gradient goes back to the selected positions, added up where they repeat."""

    float_only = False

    def forward(self, x, index):
        self.shape, self.dtype, self.index = x.shape, x.dtype, index
        return x[index]

    def backward(self, grad):
        full = xp.zeros(self.shape, dtype=grad.dtype)
        if _has_integer_array(self.index):
            backend.scatter_add(full, self.index, grad)  # x[[0, 0]] uses x[0] twice
        else:
            full[self.index] = grad  # slices and masks pick each element at most once
        return full


class Concatenate(Function):
    """The gradient of a concatenation is the output gradient cut back into the pieces."""

    def forward(self, *arrays, axis=0):
        self.axis = axis
        self.sizes = [a.shape[axis] for a in arrays]
        return xp.concatenate(arrays, axis=axis)

    def backward(self, grad):
        cuts = []
        total = 0
        for size in self.sizes[:-1]:
            total += size
            cuts.append(total)
        return tuple(xp.split(grad, cuts, axis=self.axis))


class Stack(Function):
    """The gradient of stacking along a new axis is the output gradient's slices along it."""

    def forward(self, *arrays, axis=0):
        self.axis = axis
        return xp.stack(arrays, axis=axis)

    def backward(self, grad):
        return tuple(xp.moveaxis(grad, self.axis, 0))

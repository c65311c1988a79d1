"""The Tensor: an array of the active backend, plus what autograd needs to differentiate through it.

A tensor holds

* ``data``: a NumPy or CuPy array (see :mod:`scratchgen.backend`);
* ``requires_grad``: whether gradients should flow to it;
* ``grad``: after ``loss.backward()``, the array dL/d(tensor), of ``data``'s shape, summed over calls
  until it is reset with ``tensor.grad = None`` or an optimiser's ``zero_grad()``; ``grad_tensor`` is the
  same gradient as a Tensor, which after ``backward(create_graph=True)`` is part of the graph (Chainer's
  ``grad`` and ``grad_var``);
* ``_creator``: the :class:`~scratchgen.autograd.Function` that computed it (``None`` for a leaf);
* ``_version``: how many times ``data`` was assigned (``t.data = a``, or in place: ``t.data -= lr * g``
  assigns too). An op records the versions of its inputs, and the engine refuses to differentiate
  through an input changed since. Writing into the array's elements (``t.data[0] = 1``) bypasses the
  counter, as PyTorch's ``.data`` does.

Every operator and method below is a one-line call of an op in :mod:`scratchgen.ops`, where its forward
and backward are written. Array-style methods take NumPy's argument names (``axis``, ``keepdims``).
"""

from __future__ import annotations

import numbers

import numpy

from scratchgen import backend

__all__ = ["Tensor", "tensor", "zeros", "ones", "randn", "rand", "zeros_like", "ones_like"]


class Tensor:
    """An n-dimensional array that records the ops applied to it, for reverse-mode differentiation.

    Make tensors with :func:`scratchgen.tensor` rather than this constructor, which takes the array as is.
    """

    __slots__ = ("_data", "_version", "grad_tensor", "requires_grad", "_creator", "name", "__weakref__")
    __array_priority__ = 1000  # so that ndarray * Tensor calls Tensor.__rmul__

    def __init__(self, data, requires_grad: bool = False, name: str | None = None):
        self._data = data
        self._version = 0
        self.grad_tensor = None
        self.requires_grad = requires_grad
        self._creator = None
        self.name = name

    @property
    def data(self):
        """The array this tensor holds. Assigning it (``t.data = a``, ``t.data += a``) counts a new version."""
        return self._data

    @data.setter
    def data(self, array):
        self._data = array
        self._version += 1

    @property
    def grad(self):
        """dL/d(tensor) as an array of the backend (None before a backward); see ``grad_tensor``."""
        return None if self.grad_tensor is None else self.grad_tensor.data

    @grad.setter
    def grad(self, value):
        if value is None or isinstance(value, Tensor):
            self.grad_tensor = value
        else:
            self.grad_tensor = Tensor(value)

    # ------------------------------------------------------------------ array-like information

    @property
    def shape(self) -> tuple:
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return int(self.data.size)

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def is_leaf(self) -> bool:
        """True for tensors made by the user rather than by an op (they keep ``.grad``)."""
        return self._creator is None

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        op = f", creator={self._creator.name()}" if self._creator is not None else ""
        body = numpy.array2string(backend.to_numpy(self.data), precision=4, threshold=20, separator=", ")
        return f"tensor({body}, dtype={self.dtype}{grad}{op})"

    # ------------------------------------------------------------------ leaving the graph

    def numpy(self) -> numpy.ndarray:
        """A host NumPy copy of the data (a copy on both backends, so it is safe to modify)."""
        return numpy.array(backend.to_numpy(self.data), copy=True)

    def item(self) -> float:
        """The value of a one-element tensor as a Python number (synchronises the GPU)."""
        return self.data.item()

    def detach(self) -> "Tensor":
        """A tensor sharing this data but cut from the graph: no gradient flows through it."""
        return Tensor(self.data, requires_grad=False)

    def astype(self, dtype) -> "Tensor":
        """A copy converted to ``dtype``, outside the graph (use before an op that needs floats)."""
        return Tensor(self.data.astype(dtype), requires_grad=False)

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        if flag and self.data.dtype.kind != "f":
            raise TypeError(f"requires_grad_: only floating-point tensors can require gradients, not {self.dtype}")
        self.requires_grad = flag
        return self

    def backward(self, grad=None, create_graph: bool = False) -> None:
        """Compute the gradient of this tensor with respect to every leaf that requires one.

        See :func:`scratchgen.autograd.backward`.
        """
        autograd.backward(self, grad, create_graph=create_graph)

    # ------------------------------------------------------------------ arithmetic (broadcasting)

    def _lift(self, other) -> "Tensor":
        """Wrap a number or array as a constant tensor of this tensor's dtype when it is floating point."""
        if isinstance(other, Tensor):
            return other
        if isinstance(other, numbers.Number):  # a shared 0-d array, not a new copy to the device per call
            dtype = self.dtype if self.dtype.kind == "f" else None
            return Tensor(backend.scalar(other, dtype=dtype))
        return Tensor(other)  # an array: Function.apply checks its device

    def __add__(self, other):
        return ops.Add.apply(self, self._lift(other))

    def __radd__(self, other):
        return ops.Add.apply(self._lift(other), self)

    def __sub__(self, other):
        return ops.Sub.apply(self, self._lift(other))

    def __rsub__(self, other):
        return ops.Sub.apply(self._lift(other), self)

    def __mul__(self, other):
        return ops.Mul.apply(self, self._lift(other))

    def __rmul__(self, other):
        return ops.Mul.apply(self._lift(other), self)

    def __truediv__(self, other):
        return ops.Div.apply(self, self._lift(other))

    def __rtruediv__(self, other):
        return ops.Div.apply(self._lift(other), self)

    def __pow__(self, exponent):
        if isinstance(exponent, numbers.Number):
            return ops.PowScalar.apply(self, exponent=exponent)
        return ops.Pow.apply(self, self._lift(exponent))

    def __rpow__(self, base):
        return ops.Pow.apply(self._lift(base), self)

    def __neg__(self):
        return ops.Neg.apply(self)

    def __matmul__(self, other):
        return ops.MatMul.apply(self, self._lift(other))

    def __rmatmul__(self, other):
        return ops.MatMul.apply(self._lift(other), self)

    # Comparisons give constant boolean tensors (no gradient), handy for masks and accuracy.
    def __lt__(self, other):
        return Tensor(self.data < _raw(other))

    def __le__(self, other):
        return Tensor(self.data <= _raw(other))

    def __gt__(self, other):
        return Tensor(self.data > _raw(other))

    def __ge__(self, other):
        return Tensor(self.data >= _raw(other))

    # ------------------------------------------------------------------ elementwise functions

    def exp(self):
        return ops.Exp.apply(self)

    def log(self):
        return ops.Log.apply(self)

    def sqrt(self):
        return ops.Sqrt.apply(self)

    def abs(self):
        return ops.Abs.apply(self)

    def tanh(self):
        return ops.HyperbolicTangent.apply(self)

    def sigmoid(self):
        return ops.Logistic.apply(self)

    def relu(self):
        return ops.Rectifier.apply(self)

    def leaky_relu(self, negative_slope: float = 0.01):
        return ops.Rectifier.apply(self, negative_slope=negative_slope)

    def softplus(self):
        return ops.LogOnePlusExp.apply(self)

    def clip(self, min=None, max=None):
        return ops.Clip.apply(self, low=min, high=max)

    # ------------------------------------------------------------------ reductions

    def sum(self, axis=None, keepdims: bool = False):
        return ops.Sum.apply(self, axis=axis, keepdims=keepdims)

    def mean(self, axis=None, keepdims: bool = False):
        return ops.Mean.apply(self, axis=axis, keepdims=keepdims)

    def max(self, axis=None, keepdims: bool = False):
        return ops.Max.apply(self, axis=axis, keepdims=keepdims)

    def logsumexp(self, axis=None, keepdims: bool = False):
        return ops.LogSumExp.apply(self, axis=axis, keepdims=keepdims)

    def log_softmax(self, axis: int = -1):
        return ops.LogSoftmax.apply(self, axis=axis)

    def argmax(self, axis=None) -> "Tensor":
        """Indices of the maxima, as a constant integer tensor."""
        return Tensor(self.data.argmax(axis=axis))

    # ------------------------------------------------------------------ shapes

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return ops.Reshape.apply(self, shape=shape)

    def flatten(self, start_axis: int = 0):
        """Merge the axes from ``start_axis`` on into one: (N, C, H, W) -> (N, C*H*W) for 1."""
        return self.reshape(self.shape[:start_axis] + (-1,))

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return ops.Transpose.apply(self, axes=axes or None)

    @property
    def T(self):
        return ops.Transpose.apply(self, axes=None)

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        return ops.Index.apply(self, index=index)


def _raw(x):
    return x.data if isinstance(x, Tensor) else x


# ---------------------------------------------------------------------------------------- factories


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """Make a tensor on the active backend from a list, number, NumPy or CuPy array, or Tensor.

    Arrays keep their dtype unless ``dtype`` is given (so float64 data stays float64, as gradcheck
    needs); Python floats and lists of them become float32, the library's default.

    Raises:
        TypeError: ``requires_grad=True`` on integer or boolean data.
    """
    if isinstance(data, Tensor):
        data = data.data
    if dtype is None and not hasattr(data, "dtype"):
        probe = numpy.asarray(data)
        dtype = backend.DEFAULT_DTYPE if probe.dtype.kind == "f" else None
    array = backend.asarray(data, dtype=dtype)
    if requires_grad and array.dtype.kind != "f":
        raise TypeError(
            f"tensor: only floating-point tensors can require gradients, got dtype {array.dtype}; "
            f"pass dtype='float32' or convert the data first"
        )
    return Tensor(array, requires_grad=requires_grad)


def zeros(*shape, dtype=backend.DEFAULT_DTYPE, requires_grad: bool = False) -> Tensor:
    return Tensor(backend.xp.zeros(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def ones(*shape, dtype=backend.DEFAULT_DTYPE, requires_grad: bool = False) -> Tensor:
    return Tensor(backend.xp.ones(_shape(shape), dtype=dtype), requires_grad=requires_grad)


def randn(*shape, dtype=backend.DEFAULT_DTYPE, requires_grad: bool = False) -> Tensor:
    """Standard-normal samples from the seeded generator (see :func:`scratchgen.manual_seed`)."""
    data = backend.rng().standard_normal(_shape(shape), dtype=dtype)
    return Tensor(data, requires_grad=requires_grad)


def rand(*shape, dtype=backend.DEFAULT_DTYPE, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1) from the seeded generator."""
    data = backend.rng().random(_shape(shape), dtype=dtype)
    return Tensor(data, requires_grad=requires_grad)


def zeros_like(t: Tensor) -> Tensor:
    return Tensor(backend.xp.zeros_like(t.data))


def ones_like(t: Tensor) -> Tensor:
    return Tensor(backend.xp.ones_like(t.data))


def _shape(shape) -> tuple:
    return tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else tuple(shape)


# The engine and the ops build on Tensor, so they are imported once it exists.
from scratchgen import autograd, ops  # noqa: E402

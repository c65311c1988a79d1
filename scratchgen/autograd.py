"""The reverse-mode engine: how an op is recorded and how gradients flow back through the graph.

An op is a subclass of :class:`Function` with two methods on raw backend arrays:

* ``forward(self, *arrays, **params)`` computes the output and keeps what the backward will need
  (as attributes of ``self``);
* ``backward(self, grad)`` receives dL/d(output) and returns dL/d(input) for each input, in order
  (``None`` for an input that needs no gradient).

:meth:`Function.apply` runs the forward on the inputs' arrays and, when gradients are wanted, links the
output :class:`~scratchgen.tensor.Tensor` to the op that made it. Calling ``loss.backward()`` then runs
:func:`backward`: it sorts the recorded graph in topological order (iteratively, so a graph of 10,000
nodes is fine), walks it from the loss back to the leaves, sums the gradient of a tensor over all its uses,
sums broadcast axes back to each input's shape (:func:`unbroadcast`, so that no op has to) and adds the
result into the ``.grad`` of every leaf that requires one.

This is the design of tinygrad's first versions and of Chainer's ``FunctionNode``, with the engine's
bookkeeping written once here rather than in every op.
"""

from __future__ import annotations

import contextlib

from scratchgen import backend

__all__ = ["Function", "backward", "unbroadcast", "no_grad", "enable_grad", "is_grad_enabled"]


class _GradMode:
    enabled = True


def is_grad_enabled() -> bool:
    """False inside a :func:`no_grad` block: ops then record nothing."""
    return _GradMode.enabled


@contextlib.contextmanager
def no_grad():
    """Run a block without recording the graph (evaluation, sampling, optimiser updates)."""
    previous, _GradMode.enabled = _GradMode.enabled, False
    try:
        yield
    finally:
        _GradMode.enabled = previous


@contextlib.contextmanager
def enable_grad():
    """Record the graph inside the block even within an enclosing :func:`no_grad`."""
    previous, _GradMode.enabled = _GradMode.enabled, True
    try:
        yield
    finally:
        _GradMode.enabled = previous


class Function:
    """Base class of every differentiable op. Subclasses write ``forward`` and ``backward``.

    Attributes:
        inputs: the input tensors, kept only when the output requires a gradient.
        needs_input_grad: one bool per input; ``backward`` may skip the gradients that are False.
    """

    #: Ops whose inputs must be floating point. Shape and indexing ops set this to False.
    float_only = True

    inputs: tuple = ()
    needs_input_grad: tuple = ()

    def forward(self, *arrays, **params):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, grad):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    @classmethod
    def name(cls) -> str:
        """The op's name in error messages and graph pictures, e.g. ``"matmul"`` for ``MatMul``."""
        return cls.__name__.lower()

    @classmethod
    def apply(cls, *inputs, **params):
        """Run the op forward on tensors and, if any input requires a gradient, record it in the graph.

        Args:
            *inputs: :class:`~scratchgen.tensor.Tensor` objects of the active backend.
            **params: non-differentiable settings passed to ``forward`` (axes, strides, ...).

        Returns:
            A new Tensor holding the output.
        """
        arrays = [t.data for t in inputs]
        _check_inputs(cls, arrays)
        fn = cls()
        requires_grad = _GradMode.enabled and any(t.requires_grad for t in inputs)
        if requires_grad:
            fn.needs_input_grad = tuple(t.requires_grad for t in inputs)
        try:
            out = fn.forward(*arrays, **params)
        except ValueError as err:
            shapes = " and ".join(str(tuple(a.shape)) for a in arrays)
            raise ValueError(f"{cls.name()}: invalid input shapes {shapes}: {err}") from None
        if not backend.is_array(out):
            out = backend.xp.asarray(out)  # NumPy returns scalars, not 0-d arrays, from 0-d inputs
        result = Tensor(out, requires_grad=requires_grad)
        if requires_grad:
            fn.inputs = inputs
            result._creator = fn
        return result


def _check_inputs(cls, arrays) -> None:
    """Fail early, naming the op, when an input is on the wrong device or is not floating point."""
    for i, a in enumerate(arrays):
        if not backend.is_array(a):
            raise backend.BackendError(
                f"{cls.name()}: input {i} is on {backend.device_of(a)} but the active backend is "
                f"{backend.get_backend()}; inputs are on "
                + ", ".join(backend.device_of(x) for x in arrays)
                + ". Move tensors with scratchgen.tensor(x.numpy()) after switching backends."
            )
        if cls.float_only and a.dtype.kind != "f":
            raise TypeError(
                f"{cls.name()}: input {i} has dtype {a.dtype} (shape {tuple(a.shape)}) but this op needs "
                f"floating-point data; convert it with .astype('float32')"
            )


def unbroadcast(grad, shape):
    """Sum ``grad`` over the axes that broadcasting added or stretched, so that it has ``shape``.

    If ``a`` of shape (3, 1) was broadcast against (2, 3, 4), the gradient arrives as (2, 3, 4); each
    element of ``a`` was used 2·4 times, so its gradient is the sum over those uses: over the new leading
    axis 0 and the stretched axis 2.
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    stretched = tuple(i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1)
    axes = tuple(range(extra)) + stretched
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def _topological_order(root):
    """Tensors that ``root`` depends on (through tensors requiring grad), each after its inputs.

    An explicit stack instead of recursion: deep graphs (an RNN unrolled 10,000 steps) would exceed
    Python's recursion limit.
    """
    order, visited = [], set()
    stack = [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if node._creator is not None:
            for parent in node._creator.inputs:
                if parent.requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order


def backward(root, grad=None) -> None:
    """Accumulate d(root)/d(leaf) into ``leaf.grad`` for every leaf that requires a gradient.

    Args:
        root: the tensor to differentiate, usually a scalar loss.
        grad: dL/d(root), an array of root's shape; may be omitted when root has one element.
    """
    if not root.requires_grad:
        raise RuntimeError(
            "backward: this tensor does not require grad; no input of the computation that made it had "
            "requires_grad=True (or it was computed under no_grad)"
        )
    if grad is None:
        if root.data.size != 1:
            raise RuntimeError(
                f"backward: gradient can be implied only for a tensor of one element, got shape "
                f"{root.shape}; pass grad=... of that shape"
            )
        grad = backend.xp.ones_like(root.data)
    elif hasattr(grad, "data") and not backend.is_array(grad):
        grad = grad.data  # a Tensor given as the seed gradient

    grads = {id(root): grad}  # id(tensor) -> dL/d(tensor), summed over its uses so far
    for node in reversed(_topological_order(root)):
        g = grads.pop(id(node), None)
        if g is None:
            continue
        if not backend.is_array(g):
            g = backend.xp.asarray(g)  # NumPy turns 0-d results into scalars; keep arrays throughout
        fn = node._creator
        if fn is None:  # a leaf: accumulate, as PyTorch does, until zero_grad
            node.grad = g if node.grad is None else node.grad + g
            continue
        input_grads = fn.backward(g)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        for parent, pg in zip(fn.inputs, input_grads):
            if pg is None or not parent.requires_grad:
                continue
            pg = unbroadcast(pg, parent.data.shape)
            key = id(parent)
            grads[key] = pg if key not in grads else grads[key] + pg


# Tensor is defined after the engine it relies on; the import sits here to avoid a cycle.
from scratchgen.tensor import Tensor  # noqa: E402

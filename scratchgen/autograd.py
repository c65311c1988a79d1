"""The reverse-mode engine: how an op is recorded and how gradients flow back through the graph.

An op is a subclass of :class:`Function` with two methods:

* ``forward(self, *arrays, **params)`` computes the output from raw backend arrays (NumPy or CuPy), and
  may keep arrays that its backward needs but that do not depend smoothly on the input (a ReLU's mask,
  a max-pool's winners) as attributes of ``self``;
* ``backward(self, grad)`` receives dL/d(output) as a :class:`~scratchgen.tensor.Tensor` and returns
  dL/d(input) for each input, in order, as Tensors (``None`` for an input that needs no gradient). It is
  written with Tensor ops and reads the op's inputs and output as Tensors, ``self.inputs`` and
  ``self.output``, so that the gradient is itself a computation the engine can record. For example::

      class Exp(Function):
          '''d/dx exp(x) = exp(x).'''
          def forward(self, x):
              return xp.exp(x)
          def backward(self, grad):
              return grad * self.output

This is needle's design (CMU 10-414) and PyTorch's for its differentiable backward formulas: each op's
derivative is written once, and gradients can be differentiated again, to any order.

:meth:`Function.apply` runs the forward and, when gradients are wanted, links the output Tensor to the
op that made it. Then :func:`backward` (``loss.backward()``) or :func:`grad` walks the graph from the
output back to the inputs in reverse topological order (found iteratively, so a graph of 10,000 nodes is
fine), sums the gradient of a tensor over all its uses, and sums broadcast axes back to each input's
shape (:func:`unbroadcast`, so that no op has to). Without ``create_graph`` the walk runs under
:func:`no_grad` and the gradients are plain values; with ``create_graph=True`` every op of the backward
is recorded too, and the gradients are Tensors in the graph, ready for another ``backward``:
a gradient penalty (WGAN-GP, R1), a Hessian-vector product, a Newton step.

The graph's nodes are the ops (and the leaf tensors); each op links to the ops that made its inputs.
An op keeps only the inputs its backward reads (``saved_inputs``) and, if it reads it, its output
(``saves_output``): the activations no backward needs are freed as soon as the forward is done with them,
as PyTorch frees them, which halves the memory of a convolutional network's step.

The engine checks what every backward returns: one gradient per input, a Tensor of the input's dtype
whose shape is the input's or broadcasts to it. It also refuses to differentiate through a tensor whose
data was replaced or changed in place (``t.data = ...``, ``t.data += ...``) after an op used it: each
tensor has a version counter, as in PyTorch, and each op remembers the versions it saw.
"""

from __future__ import annotations

import contextlib
import functools
import weakref

import numpy

from scratchgen import backend

__all__ = [
    "Function", "backward", "grad", "constant", "once_differentiable", "unbroadcast", "no_grad", "enable_grad",
    "is_grad_enabled", "graph_node",
]


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


def _grad_mode(enabled: bool):
    return enable_grad() if enabled else no_grad()


class Function:
    """Base class of every differentiable op. Subclasses write ``forward`` and ``backward``.

    What the graph keeps. An op keeps the inputs that its backward reads, and no others: ``x + y`` needs
    neither x nor y to pass a gradient on, and keeping them would hold every activation of a network in
    memory until its backward, where PyTorch holds only the ones some backward reads. An op says which
    with two class attributes, overridable per instance in ``forward``:

    * ``saved_inputs``: the indices of the inputs whose values ``backward`` reads; None (the default,
      always safe) keeps them all;
    * ``saves_output``: whether ``backward`` reads ``self.output`` (True by default).

    The graph itself does not need the inputs: each op links to the op that made each input (or to the
    leaf tensor itself), and remembers every input's shape and dtype.

    Attributes:
        inputs: the input Tensors, as the backward sees them. An input the op does not keep is a stand-in
            with its ``shape``, ``dtype`` and ``ndim``, which raises if the backward reads its values.
        parents: for each input, the op that computed it, or the input itself if it is a leaf: the edges
            of the graph, which :func:`backward` follows and :mod:`scratchgen.viz` draws.
        needs_input_grad: one bool per input, set by the engine before each ``backward``: whether this
            pass wants that input's gradient. ``backward`` may skip the ones that are False.
    """

    #: Ops whose inputs must be floating point. Shape and indexing ops set this to False.
    float_only = True
    #: Indices of the inputs that ``backward`` reads (None: all of them); see the class docstring.
    saved_inputs = None
    #: Whether ``backward`` reads ``self.output``.
    saves_output = True

    parents: tuple = ()
    needs_input_grad: tuple = ()
    _meta: tuple = ()  # (shape, dtype, requires_grad) of each input, when the op was recorded
    _saved: dict = {}  # input index -> Tensor, for the inputs the backward reads
    _versions: dict = {}  # input index -> its version when the op used it
    _output_ref = None
    _output_data = None
    _output_meta = None

    def forward(self, *arrays, **params):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def backward(self, grad):
        raise NotImplementedError(f"{type(self).__name__}.backward")

    @property
    def inputs(self) -> tuple:
        return tuple(self._saved[i] if i in self._saved else _Unsaved(self, i) for i in range(len(self._meta)))

    @property
    def output(self):
        """The Tensor this op produced, for a backward that reads it (exp, tanh, ...).

        The op holds the Tensor weakly, so that op and output do not keep each other alive, and its data
        (when ``saves_output``): if the Tensor itself is gone, a new one on the same data, made by this op,
        stands for it, in the graph as the original was.
        """
        out = self._output_ref() if self._output_ref is not None else None
        if out is None and self._output_data is not None:
            out = Tensor(self._output_data, requires_grad=True)
            out._creator = self
        if out is None:
            raise RuntimeError(f"{self.name()}: the output of this op no longer exists, and the op does not save it "
                               "(saves_output = False) or was never recorded")
        return out

    @property
    def output_shape(self) -> tuple:
        """The shape of the output, which the op remembers whether or not it keeps the output."""
        return self._output_meta[0]

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

        Raises:
            The forward's own ValueError, TypeError or IndexError, re-raised with the op's name and the
            input shapes added in front, chained to the original so that its traceback still shows the
            line that failed.
        """
        arrays = [t._data for t in inputs]
        _check_inputs(cls, arrays)
        fn = cls()
        try:
            out = fn.forward(*arrays, **params)
        except (ValueError, TypeError, IndexError) as err:
            shapes = ", ".join(str(tuple(a.shape)) for a in arrays)
            raise _with_context(err, f"{cls.name()} (inputs of shapes {shapes}): {err}") from err
        if not backend.is_array(out):
            out = backend.xp.asarray(out)  # NumPy returns scalars, not 0-d arrays, from 0-d inputs
        requires_grad = _GradMode.enabled and any(t.requires_grad for t in inputs)
        result = Tensor(out, requires_grad=requires_grad)
        if requires_grad:
            fn._record(inputs, result)
        return result

    def _record(self, inputs, result) -> None:
        """Link this op into the graph: its parents, what it keeps of its inputs and of its output."""
        if self.saved_inputs is None:
            self._saved = dict(enumerate(inputs))
        else:  # (an index past the inputs names an optional input this call did not get: a bias, say)
            self._saved = {i: inputs[i] for i in self.saved_inputs if i < len(inputs)}
        self._versions = {i: t._version for i, t in self._saved.items()}
        self._meta = tuple((t._data.shape, t._data.dtype, t.requires_grad) for t in inputs)
        self.parents = tuple(t if t._creator is None else t._creator for t in inputs)
        self.needs_input_grad = tuple(t.requires_grad for t in inputs)
        self._output_ref = weakref.ref(result)
        self._output_meta = (result._data.shape, result._data.dtype)
        if self.saves_output:
            self._output_data = result._data
        result._creator = self


class _Unsaved:
    """What ``Function.inputs`` holds for an input the op does not keep: its shape and dtype, no values."""

    __slots__ = ("shape", "dtype", "ndim", "requires_grad", "_where")

    def __init__(self, fn, i):
        self.shape, self.dtype, self.requires_grad = fn._meta[i]
        self.ndim = len(self.shape)
        self._where = (fn.name(), i, fn.saved_inputs)

    def _refuse(self, *args, **kwargs):
        name, i, saved = self._where
        raise RuntimeError(f"{name}.backward read the values of input {i}, which the op does not keep "
                           f"(saved_inputs = {saved}); add {i} to its saved_inputs")

    data = property(_refuse)
    __array__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __rtruediv__ = _refuse


def graph_node(t):
    """The node of the graph that stands for tensor ``t``: the op that made it, or ``t`` itself for a leaf."""
    return t._creator if t._creator is not None else t


def _with_context(err: Exception, message: str) -> Exception:
    """An exception of ``err``'s type with ``message``, or of its builtin base where that type needs other
    arguments (UnicodeDecodeError, say), so that ``except ValueError`` still catches it."""
    try:
        return type(err)(message)
    except Exception:
        return next(kind for kind in (ValueError, TypeError, IndexError) if isinstance(err, kind))(message)


def constant(array):
    """A Tensor outside the graph for an array that a backward multiplies by but never differentiates.

    For a ReLU's mask, the sign of x or a max-pool's winners: piecewise constant in the input, so their
    derivative is zero wherever it is defined, and treating them as constants loses nothing in a second
    derivative. (A value that changes smoothly with the input, such as tanh(x), must come from
    ``self.output`` or Tensor ops instead, or the second derivative will be wrong.)
    """
    return Tensor(backend.xp.asarray(array))


def once_differentiable(backward):
    """Decorate a ``backward`` written on raw arrays: it gets ``grad`` as an array and returns arrays.

    Such a backward is one formula on NumPy (or CuPy) arrays, as in a first course on backpropagation
    (the conv2d assignment writes one), and the engine runs it like any other. Its result is a constant,
    though, so its gradient cannot be differentiated again: under ``create_graph=True`` it raises instead
    of silently giving a zero second derivative. PyTorch's decorator of the same name does the same.
    """

    @functools.wraps(backward)
    def array_backward(self, grad):
        if isinstance(grad, Tensor):
            if is_grad_enabled():
                raise RuntimeError(
                    f"{self.name()}.backward is once_differentiable (written on raw arrays), so its gradient "
                    "cannot be differentiated again (create_graph=True); write it with Tensor ops to allow that"
                )
            grad = grad.data
        grads = backward(self, grad)
        if not isinstance(grads, tuple):
            return None if grads is None else constant(grads)
        return tuple(None if g is None else constant(g) for g in grads)

    return array_backward


def _check_inputs(cls, arrays) -> None:
    """Fail early, naming the op, when an input is on the wrong device or is not floating point."""
    for i, a in enumerate(arrays):
        if isinstance(a, _Unsaved):  # a backward used an input its op does not keep
            a._refuse()
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
    axis 0 and the stretched axis 2. Works on Tensors (a sum and a reshape, both differentiable) and on
    arrays alike.
    """
    if tuple(grad.shape) == tuple(shape):
        return grad
    extra = grad.ndim - len(shape)
    stretched = tuple(i + extra for i, n in enumerate(shape) if n == 1 and grad.shape[i + extra] != 1)
    axes = tuple(range(extra)) + stretched
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    return grad.reshape(shape)


def _broadcasts_to(shape, target) -> bool:
    """Whether an array of ``shape`` can come from broadcasting one of ``target`` (NumPy's rules)."""
    if len(shape) < len(target):
        return False
    return all(t == s or t == 1 for s, t in zip(shape[len(shape) - len(target):], target))


def _topological_order(roots):
    """The graph's nodes that ``roots`` depend on (ops, and leaves requiring grad), each after its inputs.

    An explicit stack instead of recursion: deep graphs (an RNN unrolled 10,000 steps) would exceed
    Python's recursion limit.
    """
    order, visited = [], set()
    stack = [(graph_node(root), False) for root in reversed(roots)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if id(node) in visited:
            continue
        visited.add(id(node))
        stack.append((node, True))
        if isinstance(node, Function):
            for parent, (_, _, requires_grad) in zip(node.parents, node._meta):
                if requires_grad and id(parent) not in visited:
                    stack.append((parent, False))
    return order


def _as_seed(root, seed, caller: str):
    """The gradient that starts the walk at ``root``: ones for one element, else ``seed`` checked.

    A list or number is made an array of the active backend; an array of the other device is refused."""
    if not isinstance(root, Tensor):
        raise TypeError(f"{caller}: expected a Tensor to differentiate, got {type(root).__name__}")
    if not root.requires_grad:
        raise RuntimeError(
            f"{caller}: this tensor does not require grad; no input of the computation that made it had "
            "requires_grad=True (or it was computed under no_grad)"
        )
    if seed is None:
        if root.size != 1:
            raise RuntimeError(
                f"{caller}: gradient can be implied only for a tensor of one element, got shape "
                f"{root.shape}; pass a gradient of that shape"
            )
        return Tensor(backend.xp.ones_like(root.data))
    data = seed.data if isinstance(seed, Tensor) else seed
    if hasattr(data, "shape") and not isinstance(data, numpy.generic) and not backend.is_array(data):
        # As PyTorch does, an array from another device is refused rather than copied over quietly.
        raise backend.BackendError(
            f"{caller}: the gradient given is on {backend.device_of(data)} but the active backend is "
            f"{backend.get_backend()} (the tensor is on {backend.device_of(root.data)}); move it there first "
            "with scratchgen.tensor(scratchgen.backend.to_numpy(gradient))"
        )
    if not isinstance(seed, Tensor):
        seed = Tensor(backend.asarray(seed, dtype=root.dtype))
    if seed.shape != root.shape:
        raise ValueError(
            f"{caller}: the gradient given has shape {seed.shape} but the tensor has shape {root.shape}; "
            "they must be equal"
        )
    if seed.dtype != root.dtype:
        raise TypeError(f"{caller}: the gradient given has dtype {seed.dtype} but the tensor has {root.dtype}")
    return seed


def _check_version(fn, i, tensor, seen) -> None:
    if tensor._version != seen:
        which = "its output" if i is None else f"its input {i}"
        raise RuntimeError(
            f"{fn.name()}: {which} (shape {tensor.shape}) was changed in place after {fn.name()} used it "
            f"(version {seen}, now {tensor._version}), so its gradient would be taken at the new values. "
            "Build a new tensor instead of writing into this one, or run the forward again after the change."
        )


def _input_gradients(fn, grad) -> list:
    """Run ``fn.backward(grad)`` and check what it returns against the op's inputs, naming the op."""
    for i, tensor in fn._saved.items():
        _check_version(fn, i, tensor, fn._versions[i])
    output = fn._output_ref()
    if output is not None:
        _check_version(fn, None, output, 0)
    grads = fn.backward(grad)
    if not isinstance(grads, tuple):
        grads = (grads,)
    name = fn.name()
    if len(grads) != len(fn._meta):
        raise RuntimeError(
            f"{name}.backward returned {len(grads)} gradient(s) but the op has {len(fn._meta)} input(s); "
            "return one per input, None for an input that needs none"
        )
    checked = []
    for i, ((shape, dtype, _), g, needed) in enumerate(zip(fn._meta, grads, fn.needs_input_grad)):
        if not needed:
            checked.append(None)
            continue
        if g is None:
            raise RuntimeError(f"{name}.backward returned None for input {i} (shape {shape}), which needs a gradient")
        if not isinstance(g, Tensor):
            raise TypeError(
                f"{name}.backward returned a {type(g).__name__} for input {i}; gradients are Tensors, computed "
                "with Tensor ops from grad, self.inputs and self.output, so that they can be differentiated again"
            )
        if g._data.dtype != dtype:
            raise TypeError(f"{name}.backward returned a {g.dtype} gradient for input {i}, which is {dtype}")
        if g._data.shape != shape:
            if not _broadcasts_to(g.shape, shape):
                raise ValueError(
                    f"{name}.backward returned a gradient of shape {g.shape} for input {i} of shape "
                    f"{shape}; it must have the input's shape or one that the input broadcasts to"
                )
            g = unbroadcast(g, shape)
        checked.append(g)
    return checked


def _backpropagate(roots, seeds, create_graph: bool, targets=None) -> dict:
    """The walk shared by :func:`backward` and :func:`grad`.

    Args:
        roots, seeds: the tensors to differentiate and dL/d(root) for each.
        create_graph: record the backward's ops, so that the gradients can be differentiated again.
        targets: the tensors whose gradients are wanted; None for every leaf that requires one.

    Returns:
        {id(target): (target, gradient Tensor)} for each target that the roots depend on.
    """
    order = _topological_order(roots)
    if targets is None:
        wanted = {id(node) for node in order if not isinstance(node, Function)}
        useful = {id(node) for node in order}
    else:
        # Only nodes between the roots and the targets need a gradient: R1's penalty wants ∇ₓD(x),
        # not the gradients of D's weights that the same graph could also give.
        wanted, useful = {id(graph_node(t)) for t in targets}, set()
        for node in order:  # inputs before outputs
            if id(node) in wanted or (isinstance(node, Function) and any(id(p) in useful for p in node.parents)):
                useful.add(id(node))

    grads = {}  # id(node) -> dL/d(the tensor it stands for), summed over its uses so far
    for root, seed in zip(roots, seeds):
        key = id(graph_node(root))
        grads[key] = seed if key not in grads else grads[key] + seed
    found = {}
    with _grad_mode(create_graph):
        for node in reversed(order):
            g = grads.pop(id(node), None)
            if g is None or id(node) not in useful:
                continue
            if id(node) in wanted:
                found[id(node)] = (node, g)
            if not isinstance(node, Function):
                continue
            fn = node
            fn.needs_input_grad = tuple(rg and id(p) in useful for p, (_, _, rg) in zip(fn.parents, fn._meta))
            if not any(fn.needs_input_grad):
                continue
            for parent, pg in zip(fn.parents, _input_gradients(fn, g)):
                if pg is not None:
                    key = id(parent)
                    grads[key] = pg if key not in grads else grads[key] + pg
    return found


def backward(root, grad=None, create_graph: bool = False) -> None:
    """Accumulate d(root)/d(leaf) into ``leaf.grad`` for every leaf that requires a gradient.

    Args:
        root: the tensor to differentiate, usually a scalar loss.
        grad: dL/d(root), an array or Tensor of root's shape; may be omitted when root has one element.
        create_graph: record the backward pass, so that each leaf's gradient (``leaf.grad_tensor``) can
            be differentiated again.

    Raises:
        RuntimeError: root does not require grad, or needs an explicit ``grad``; a backward returned the
            wrong number of gradients; a tensor was changed in place after an op used it.
        ValueError, TypeError: ``grad``, or a gradient some op returned, has the wrong shape or dtype.
        BackendError: ``grad`` is an array of another device than the active backend's.
    """
    seed = _as_seed(root, grad, "backward")
    found = _backpropagate([root], [seed], create_graph)
    with _grad_mode(create_graph):
        for leaf, g in found.values():  # accumulate, as PyTorch does, until zero_grad
            leaf.grad_tensor = g if leaf.grad_tensor is None else leaf.grad_tensor + g


def grad(outputs, inputs, grad_outputs=None, create_graph: bool = False, allow_unused: bool = False) -> tuple:
    """The gradients of ``outputs`` with respect to ``inputs``, as ``torch.autograd.grad`` computes them.

    Nothing is written into any ``.grad``. With ``create_graph=True`` the gradients are Tensors in the
    graph and can be differentiated again: the gradient penalty of WGAN-GP is
    ``(grad(D(x̂).sum(), x̂, create_graph=True)[0].norm - 1)²``, and a Hessian-vector product is
    ``grad((grad(f, x, create_graph=True)[0] * v).sum(), x)``.

    Args:
        outputs: a Tensor or a sequence of Tensors to differentiate.
        inputs: a Tensor or a sequence of Tensors (leaves or not) to differentiate with respect to.
        grad_outputs: dL/d(output) for each output (arrays or Tensors of its shape); None means ones,
            which needs outputs of one element.
        create_graph: record the backward pass so that the gradients are differentiable.
        allow_unused: return None for an input the outputs do not depend on, instead of raising.

    Returns:
        A tuple with one gradient Tensor (or None) per input, of that input's shape.

    Raises:
        RuntimeError: an input does not influence the outputs and ``allow_unused`` is False, or an
            output does not require grad.
        BackendError: a gradient in ``grad_outputs`` is an array of another device than the active backend's.
    """
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor) or hasattr(grad_outputs, "shape"):
        grad_outputs = [grad_outputs]  # one seed (an array of either device) for one output
    grad_outputs = list(grad_outputs)
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad: {len(outputs)} output(s) but {len(grad_outputs)} grad_outputs")
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor) or not x.requires_grad:
            raise RuntimeError(f"grad: input {i} does not require grad, so no gradient can be taken with respect to it")
    seeds = [_as_seed(out, seed, "grad") for out, seed in zip(outputs, grad_outputs)]
    found = _backpropagate(outputs, seeds, create_graph, targets=inputs)
    result = []
    for i, x in enumerate(inputs):
        if id(graph_node(x)) in found:
            result.append(found[id(graph_node(x))][1])
        elif allow_unused:
            result.append(None)
        else:
            raise RuntimeError(
                f"grad: input {i} (shape {x.shape}) was not used to compute the outputs; pass "
                "allow_unused=True to get None for it"
            )
    return tuple(result)


# Tensor is defined after the engine it relies on; the import sits here to avoid a cycle.
from scratchgen.tensor import Tensor  # noqa: E402

"""Module: the base of every layer and model, holding parameters and child modules.

A module finds its parameters and children by looking at its own attributes, so a model is written as
plain assignments in ``__init__`` and a ``forward``::

    class MLP(Module):
        def __init__(self):
            super().__init__()
            self.hidden = Linear(784, 500)
            self.out = Linear(500, 10)

        def forward(self, x):
            return self.out(self.hidden(x).relu())

Names follow PyTorch (``named_parameters``, ``state_dict``, ``load_state_dict``, ``train``, ``eval``), and
a state dict's keys and array layouts are PyTorch's, so weights carry over in both directions.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy

from scratchgen import backend
from scratchgen.tensor import Tensor

__all__ = ["Parameter", "Module", "Sequential", "ModuleList", "array_to_load"]


class Parameter(Tensor):
    """A tensor that a module trains: a leaf with ``requires_grad=True``, found by ``parameters()``.

    ``data`` is a Tensor or an array; an array of another backend (a NumPy array while CuPy is active, say)
    is moved onto the active one, as :func:`scratchgen.tensor` does, so that a model written with NumPy
    arrays for its initial weights runs on either backend.
    """

    __slots__ = ()

    def __init__(self, data, requires_grad: bool = True):
        if isinstance(data, Tensor):
            data = data.data
        elif not backend.is_array(data):
            data = backend.asarray(data)
        super().__init__(data, requires_grad=requires_grad)


class Module:
    """Base class of layers and models: parameters, buffers and child modules, found by attribute."""

    def __init__(self):
        self.training = True
        self._buffers = []  # names of attributes that are buffers (state saved but not trained)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ------------------------------------------------------------------ what the module holds

    def register_buffer(self, name: str, array) -> None:
        """Keep ``array`` as state of the module (saved in ``state_dict``) that no optimiser trains,
        such as batch norm's running mean. It is reachable as ``self.<name>``, a constant Tensor."""
        if name not in self._buffers:
            self._buffers.append(name)
        setattr(self, name, Tensor(array))

    def named_children(self):
        """(name, module) for each direct child module, in the order they were assigned."""
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self):
        return (module for _, module in self.named_children())

    def named_modules(self, prefix: str = ""):
        """(dotted name, module) for this module and every module inside it."""
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        return (module for _, module in self.named_modules())

    def named_parameters(self, prefix: str = ""):
        """(dotted name, parameter) for every parameter, e.g. ``("encoder.0.weight", ...)``.

        A parameter shared by several layers (tied weights) is yielded once, under the first name it is
        found by, so that an optimiser updates it once with its whole gradient.
        """
        seen = set()
        for module_name, module in self.named_modules(prefix):
            for name, value in vars(module).items():
                if isinstance(value, Parameter) and id(value) not in seen:
                    seen.add(id(value))
                    yield (f"{module_name}.{name}" if module_name else name), value

    def parameters(self):
        return [p for _, p in self.named_parameters()]

    def named_buffers(self):
        for module_name, module in self.named_modules():
            for name in module._buffers:
                yield (f"{module_name}.{name}" if module_name else name), getattr(module, name)

    def num_parameters(self) -> int:
        """Total number of trainable numbers."""
        return sum(p.size for p in self.parameters())

    # ------------------------------------------------------------------ modes

    def train(self, mode: bool = True) -> "Module":
        """Training mode (dropout active, batch norm on batch statistics) for this module and its children."""
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> "Module":
        """Evaluation mode: dropout off, batch norm on its running statistics."""
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    # ------------------------------------------------------------------ saving and loading

    def state_dict(self) -> "OrderedDict[str, object]":
        """Parameters and buffers by dotted name, as arrays of the active backend (not copies)."""
        state = OrderedDict((name, p.data) for name, p in self.named_parameters())
        state.update((name, b.data) for name, b in self.named_buffers())
        return state

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays (NumPy or CuPy) into this module's parameters and buffers, all or nothing.

        Every name, shape and dtype is checked before anything is assigned: a load that fails leaves the
        module exactly as it was, never half of one state and half of another.

        Raises:
            KeyError: with ``strict``, names missing from ``state`` or not in the module.
            ValueError: an array's shape differs from the parameter's or buffer's.
            TypeError: a value is not an array, or its dtype is of another kind (see :func:`array_to_load`).
        """
        where = f"load_state_dict into {type(self).__name__}"
        targets = dict(self.named_parameters())
        targets.update(self.named_buffers())
        if strict:
            missing = sorted(set(targets) - set(state))
            unexpected = sorted(set(state) - set(targets))
            if missing or unexpected:
                raise KeyError(f"{where}: missing keys {missing}, unexpected keys {unexpected}")
        arrays = {name: array_to_load(value, targets[name], f"{where}: {name}")
                  for name, value in state.items() if name in targets}
        for name, array in arrays.items():  # only now, when every array is known to fit
            targets[name].data = array

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        children = list(self.named_children())
        for name, child in children:
            text = repr(child).replace("\n", "\n  ")
            lines.append(f"  ({name}): {text}")
        return lines[0] + ")" if not children else "\n".join(lines) + "\n)"

    def extra_repr(self) -> str:
        """The layer's settings, shown by ``repr``; layers override it."""
        return ""


def array_to_load(value, target: Tensor, where: str):
    """A copy of ``value``, a saved array, ready to become ``target``'s data: its shape, its dtype, on the
    active backend.

    Loading converts precision (a float64 array into float32 weights) but never kind: a float into an
    integer buffer, or a string into a weight, would change the values themselves, so it is refused.

    Args:
        value: the saved array (NumPy or CuPy).
        target: the tensor it will replace.
        where: what is being loaded, for the messages, e.g. "load_state_dict into MLP: out.weight".

    Raises:
        TypeError: ``value`` is not an array, or its dtype does not convert to ``target``'s "same_kind".
        ValueError: the shapes differ.
    """
    if not (hasattr(value, "shape") and hasattr(value, "dtype")):
        raise TypeError(f"{where} is a {type(value).__name__}, not an array")
    if tuple(value.shape) != target.shape:
        raise ValueError(f"{where} has shape {tuple(value.shape)} in the state dict but {target.shape} in the model")
    if not numpy.can_cast(value.dtype, target.dtype, casting="same_kind"):
        raise TypeError(f"{where} is {value.dtype} in the state dict but {target.dtype} in the model; "
                        f"converting it would change its values, not just their precision")
    return backend.asarray(value, dtype=target.dtype).copy()


class ModuleList(Module):
    """A list of modules whose parameters are found, named "0", "1", ... as in PyTorch."""

    def __init__(self, modules=()):
        super().__init__()
        self._list = list(modules)

    def named_children(self):
        for i, module in enumerate(self._list):
            yield str(i), module

    def append(self, module: Module) -> None:
        self._list.append(module)

    def __getitem__(self, i):
        return self._list[i]

    def __len__(self) -> int:
        return len(self._list)

    def __iter__(self):
        return iter(self._list)


class Sequential(ModuleList):
    """Modules applied one after another: ``Sequential(Linear(784, 10), ReLU())(x)``."""

    def __init__(self, *modules: Module):
        super().__init__(modules)

    def forward(self, x):
        for module in self._list:
            x = module(x)
        return x

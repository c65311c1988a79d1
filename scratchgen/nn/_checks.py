"""The checks every layer makes, written once: its settings when it is built, its input when it is called.

A wrong setting or a wrong input should stop at the layer, with a message that names the layer and the
value, and not three calls later in NumPy's words (a ZeroDivisionError from a stride of 0, an IndexError
from a 0-d input) or, worse, not at all (a dilation of 0 gives an output). So every layer's ``__init__``
passes its settings through the functions below, which return them normalised (a pair as a tuple of
Python ints), and every layer's ``forward`` begins with :func:`check_input`::

    self.stride = int_pair(self, "stride", stride, minimum=1)       # "Conv2d: stride must be ..., got 0"
    ...
    check_input(self, x, "(N, C, H, W)", ranks=(4,))                 # dtype and rank

The functional forms (:mod:`scratchgen.nn.functional`) use the same functions with their own name in
place of the layer. The dtype rule that :func:`check_input` applies is stated in :mod:`scratchgen.nn`.
"""

from __future__ import annotations

import math
import numbers

import numpy

from scratchgen.nn.module import Parameter
from scratchgen.tensor import Tensor

__all__ = [
    "positive_int", "positive_ints", "int_pair", "real_number", "flag", "check_input", "check_dtype",
    "COMPUTE_DTYPES",
]

COMPUTE_DTYPES = (numpy.dtype(numpy.float32), numpy.dtype(numpy.float64))
"""The dtypes layers compute in: float32 (the library's default) and float64 (for gradcheck)."""


def _class_name(owner) -> str:
    """Who a settings message is from: a function's name as given, or the layer's class name (during
    ``__init__`` the layer's settings are not all set yet, so its repr is not available)."""
    return owner if isinstance(owner, str) else type(owner).__name__


def _description(owner) -> str:
    """Who an input message is from: a function's name as given, or the built layer's repr, settings and
    all, e.g. ``Linear(3, 2)``."""
    return owner if isinstance(owner, str) else repr(owner)


def _is_int(value) -> bool:
    """An int or NumPy integer, but not a bool (``kernel_size=True`` is a mistake, not a 1)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, numpy.bool_))


# ------------------------------------------------------------------------------------------- settings


def positive_int(owner, name: str, value) -> int:
    """``value`` as an int, checked to be at least 1 (a number of features or channels).

    Raises:
        TypeError: not an int. ValueError: less than 1.
    """
    if not _is_int(value):
        raise TypeError(f"{_class_name(owner)}: {name} must be a positive int, got {value!r}")
    if value < 1:
        raise ValueError(f"{_class_name(owner)}: {name} must be a positive int, got {value!r}")
    return int(value)


def positive_ints(owner, name: str, value) -> tuple[int, ...]:
    """A non-empty tuple or list of ints, each at least 1 (a shape), as a tuple of Python ints.

    Raises:
        TypeError: not a tuple or list of ints. ValueError: empty, or a size below 1.
    """
    rule = f"{_class_name(owner)}: {name} must be a non-empty tuple of positive ints, got {value!r}"
    if not isinstance(value, (tuple, list)) or not all(_is_int(v) for v in value):
        raise TypeError(rule)
    if not value or min(value) < 1:
        raise ValueError(rule)
    return tuple(int(v) for v in value)


def int_pair(owner, name: str, value, minimum: int) -> tuple[int, int]:
    """An int or a (height, width) pair of ints as a pair of Python ints, each at least ``minimum``:
    1 for kernel sizes, strides, dilations and scale factors, 0 for paddings. 3 -> (3, 3).

    Raises:
        TypeError: not an int or a sequence of ints. ValueError: a sequence of another length, or a
            value below ``minimum``.
    """
    rule = f"{_class_name(owner)}: {name} must be an int or a pair of ints, at least {minimum}, got {value!r}"
    if _is_int(value):
        values = (value, value)
    elif isinstance(value, (tuple, list)):
        values = tuple(value)
        if len(values) != 2:
            raise ValueError(rule)
    else:
        raise TypeError(rule)
    if not all(_is_int(v) for v in values):
        raise TypeError(rule)
    if min(values) < minimum:
        raise ValueError(rule)
    return int(values[0]), int(values[1])


def real_number(owner, name: str, value, low: float = -math.inf, high: float = math.inf, *,
                low_open: bool = False, high_open: bool = False) -> float:
    """``value`` as a float, checked to lie in the interval from ``low`` to ``high`` (closed unless
    ``low_open`` or ``high_open``); NaN lies in no interval, and an infinite bound is always open.

    ``real_number(self, "p", p, 0, 1, high_open=True)`` is dropout's p ∈ [0, 1).

    Raises:
        TypeError: not a real number. ValueError: outside the interval.
    """
    low_open, high_open = low_open or low == -math.inf, high_open or high == math.inf
    interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    rule = f"{_class_name(owner)}: {name} must be a number in {interval}, got {value!r}"
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, numpy.bool_)):
        raise TypeError(rule)
    value = float(value)
    above = value > low if low_open else value >= low
    below = value < high if high_open else value <= high
    if not (above and below):  # both False for NaN
        raise ValueError(rule)
    return value


def flag(owner, name: str, value) -> bool:
    """``value`` checked to be True or False (``bias=None`` is a mistake, not a False).

    Raises:
        TypeError: anything else.
    """
    if not isinstance(value, (bool, numpy.bool_)):
        raise TypeError(f"{_class_name(owner)}: {name} must be True or False, got {value!r}")
    return bool(value)


# ---------------------------------------------------------------------------------------------- input


def check_dtype(owner, x, expected=None) -> None:
    """The dtype rule of :mod:`scratchgen.nn`: compute in float32 or float64, and in the dtype of the
    parameters where there are any (``expected``).

    Raises:
        TypeError: naming ``owner``, the input's dtype, the expected one, and the conversion that fixes it.
    """
    if expected is not None and x.dtype != expected:
        other_way = f", or the layer's parameters to {x.dtype}" if x.dtype in COMPUTE_DTYPES else ""
        raise TypeError(f"{_description(owner)}: input of dtype {x.dtype} but the layer's parameters are {expected}; "
                        f"convert the input with x.astype('{expected}'){other_way}")
    if x.dtype not in COMPUTE_DTYPES:
        raise TypeError(f"{_description(owner)}: input of dtype {x.dtype}, but layers compute in float32 or float64 only; "
                        f"convert the input with x.astype('float32')")


def check_input(layer, x, layout: str, ranks: tuple | None = None, min_rank: int = 0, axis: int | None = None,
                size: int | None = None, what: str = "features") -> None:
    """What every layer's ``forward`` checks first: that ``x`` is a Tensor of a dtype the layer computes
    in (see :func:`check_dtype`), of a rank it accepts, and with the size it expects along ``axis``.

    Args:
        layer: the layer, named by its repr in messages, e.g. ``Linear(3, 2)``.
        x: the input.
        layout: the input's axes in words, for messages: ``"(N, C, H, W)"``.
        ranks: the numbers of dimensions accepted, e.g. ``(2, 3)``; None for any.
        min_rank: the fewest dimensions accepted (1 for a layer that reads the last axis).
        axis, size, what: the axis whose size the layer knows, that size, and what it counts
            ("features", "channels"); None for a layer that takes any size.

    Raises:
        TypeError: ``x`` is not a Tensor, or its dtype breaks the rule.
        ValueError: its rank or its size along ``axis`` is wrong; the message names the layer and the shape.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{layer!r}: expected a Tensor, got {type(x).__name__}; make one with scratchgen.tensor(x)")
    check_dtype(layer, x, _state_dtype(layer))
    if (ranks is not None and x.ndim not in ranks) or x.ndim < min_rank:
        if ranks is not None:
            expected = "a " + " or ".join(f"{r}-D" for r in ranks) + f" input {layout}"
        else:
            expected = f"an input {layout} of at least {min_rank} dimension{'s' * (min_rank != 1)}"
        raise ValueError(f"{layer!r}: expected {expected}, got shape {x.shape}")
    if size is not None and x.shape[axis] != size:
        where = "its last axis" if axis == -1 else f"axis {axis}"
        raise ValueError(f"{layer!r}: input of shape {x.shape} has {x.shape[axis]} {what} in {where}, expected {size}")


def _state_dtype(layer):
    """The dtype of the layer's floating-point parameters, else of its floating-point buffers (batch
    norm's running statistics without ``affine``), else None for a layer without state.

    A layer holds no other layers, so its own attributes are all its state; reading them directly is a
    few times faster than ``parameters()``, and this runs on every call of every layer.
    """
    state = [value for value in vars(layer).values() if isinstance(value, Tensor) and value.dtype.kind == "f"]
    parameters = [t for t in state if isinstance(t, Parameter)]
    return (parameters or state)[0].dtype if state else None

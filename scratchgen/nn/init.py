"""Weight initialisers (Glorot & Bengio 2010; He et al. 2015), in place on a Parameter, as PyTorch's.

fan_in and fan_out count the inputs and outputs of one unit: for a Linear weight (out, in) they are in
and out; for a Conv2d weight (out, in, kh, kw) they are in·kh·kw and out·kh·kw.
"""

from __future__ import annotations

import math

from scratchgen import backend

__all__ = [
    "calculate_gain", "uniform_", "normal_", "zeros_", "ones_", "constant_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
]


def _fans(shape) -> tuple[int, int]:
    if len(shape) < 2:
        raise ValueError(f"init: fan in and fan out need a weight of at least 2 dimensions, got shape {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The factor that keeps activations' variance steady through a nonlinearity (PyTorch's table)."""
    if nonlinearity in ("linear", "sigmoid", "conv2d", "conv_transpose2d"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}")


def uniform_(tensor, low: float = 0.0, high: float = 1.0):
    tensor.data = (backend.rng().random(tensor.shape, dtype=tensor.dtype) * (high - low) + low).astype(tensor.dtype)
    return tensor


def normal_(tensor, mean: float = 0.0, std: float = 1.0):
    tensor.data = (backend.rng().standard_normal(tensor.shape, dtype=tensor.dtype) * std + mean).astype(tensor.dtype)
    return tensor


def constant_(tensor, value: float):
    tensor.data = backend.xp.full(tensor.shape, value, dtype=tensor.dtype)
    return tensor


def zeros_(tensor):
    return constant_(tensor, 0.0)


def ones_(tensor):
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor, gain: float = 1.0):
    """U(-a, a) with a = gain·√(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(tensor.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor, gain: float = 1.0):
    """N(0, std²) with std = gain·√(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(tensor.shape)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def kaiming_uniform_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
    """U(-b, b) with b = gain·√(3 / fan). PyTorch's Linear and Conv2d use a = √5, giving b = 1/√fan_in."""
    fan = _fans(tensor.shape)[0 if mode == "fan_in" else 1]
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor, a: float = 0.0, mode: str = "fan_in", nonlinearity: str = "leaky_relu"):
    """N(0, std²) with std = gain / √fan."""
    fan = _fans(tensor.shape)[0 if mode == "fan_in" else 1]
    return normal_(tensor, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan))

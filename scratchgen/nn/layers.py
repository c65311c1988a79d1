"""Dense layers, activations, dropout and shape helpers, as modules.

Each layer holds its parameters and calls a function of :mod:`scratchgen.nn.functional` in ``forward``;
no layer has a backward of its own. Initialisation follows PyTorch, so results compare directly.
"""

from __future__ import annotations

import math

from scratchgen import backend
from scratchgen.nn import functional as F
from scratchgen.nn import init
from scratchgen.nn.module import Module, Parameter

__all__ = [
    "Linear", "Identity", "Flatten", "Unflatten", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softplus", "Dropout",
]


class Linear(Module):
    """y = x·Wᵀ + b, with ``weight`` of shape (out_features, in_features) as in PyTorch.

    Both are initialised U(-1/√in, 1/√in), PyTorch's default (Kaiming-uniform with a = √5).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(backend.xp.empty((out_features, in_features), dtype=backend.DEFAULT_DTYPE))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.bias = None
        if bias:
            bound = 1 / math.sqrt(in_features)
            self.bias = init.uniform_(Parameter(backend.xp.empty((out_features,), dtype=backend.DEFAULT_DTYPE)), -bound, bound)

    def forward(self, x):
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features}, {self.out_features}): input of shape {x.shape} has "
                             f"{x.shape[-1]} features in its last axis, expected {self.in_features}")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class Identity(Module):
    def forward(self, x):
        return x


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1·d2·...)."""

    def forward(self, x):
        return x.reshape(x.shape[0], -1)


class Unflatten(Module):
    """(N, d) -> (N, *shape), e.g. a decoder's (N, 3136) -> (N, 64, 7, 7)."""

    def __init__(self, shape):
        super().__init__()
        self.shape = tuple(shape)

    def forward(self, x):
        return x.reshape((x.shape[0],) + self.shape)

    def extra_repr(self) -> str:
        return str(self.shape)


class ReLU(Module):
    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class Softplus(Module):
    def forward(self, x):
        return F.softplus(x)


class Dropout(Module):
    """Zeroes each element with probability p in training mode (scaling the rest by 1/(1-p)); identity in eval."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"

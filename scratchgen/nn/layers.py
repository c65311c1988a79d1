"""Dense layers, activations, dropout and shape helpers, as modules.

Each layer holds its parameters and calls a function of :mod:`scratchgen.nn.functional` in ``forward``;
no layer has a backward of its own. Initialisation follows PyTorch, so results compare directly. Every
layer checks its settings when built and its input when called, with :mod:`scratchgen.nn._checks`.
"""

from __future__ import annotations

import math

from scratchgen import backend
from scratchgen.nn import functional as F
from scratchgen.nn import init
from scratchgen.nn._checks import check_input, flag, positive_int, positive_ints, real_number
from scratchgen.nn.module import Module, Parameter

__all__ = [
    "Linear", "Identity", "Flatten", "Unflatten", "ReLU", "LeakyReLU", "Sigmoid", "Tanh", "Softplus", "SiLU", "Dropout",
]


class Linear(Module):
    """y = x·Wᵀ + b, with ``weight`` of shape (out_features, in_features) as in PyTorch.

    Both are initialised U(-1/√in, 1/√in), PyTorch's default (Kaiming-uniform with a = √5).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.in_features = positive_int(self, "in_features", in_features)
        self.out_features = positive_int(self, "out_features", out_features)
        bias = flag(self, "bias", bias)
        self.weight = Parameter(backend.xp.empty((out_features, in_features), dtype=backend.DEFAULT_DTYPE))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        self.bias = None
        if bias:
            bound = 1 / math.sqrt(in_features)
            self.bias = init.uniform_(Parameter(backend.xp.empty((out_features,), dtype=backend.DEFAULT_DTYPE)), -bound, bound)

    def forward(self, x):
        self._check_features(x)
        return F.linear(x, self.weight, self.bias)

    def _check_features(self, x) -> None:
        """x must be (..., in_features), of the weight's dtype; shared with :class:`MaskedLinear`."""
        check_input(self, x, "(..., in_features)", min_rank=1, axis=-1, size=self.in_features)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}" + ("" if self.bias is not None else ", bias=False")


class Identity(Module):
    def forward(self, x):
        check_input(self, x, "of any shape")
        return x


class Flatten(Module):
    """(N, d1, d2, ...) -> (N, d1·d2·...)."""

    def forward(self, x):
        check_input(self, x, "(N, ...)", min_rank=1)
        return x.reshape(x.shape[0], -1)


class Unflatten(Module):
    """(N, d) -> (N, *shape), e.g. a decoder's (N, 3136) -> (N, 64, 7, 7)."""

    def __init__(self, shape):
        super().__init__()
        self.shape = positive_ints(self, "shape", shape)

    def forward(self, x):
        check_input(self, x, "(N, d)", ranks=(2,), axis=1, size=math.prod(self.shape))
        return x.reshape((x.shape[0],) + self.shape)

    def extra_repr(self) -> str:
        return str(self.shape)


class ReLU(Module):
    def forward(self, x):
        check_input(self, x, "of any shape")
        return F.relu(x)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = real_number(self, "negative_slope", negative_slope)

    def forward(self, x):
        check_input(self, x, "of any shape")
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    def forward(self, x):
        check_input(self, x, "of any shape")
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        check_input(self, x, "of any shape")
        return F.tanh(x)


class Softplus(Module):
    def forward(self, x):
        check_input(self, x, "of any shape")
        return F.softplus(x)


class SiLU(Module):
    """x·σ(x) elementwise (Elfwing et al. 2018), the smooth rectifier of diffusion models' networks."""

    def forward(self, x):
        check_input(self, x, "of any shape")
        return F.silu(x)


class Dropout(Module):
    """Zeroes each element with probability p in training mode (scaling the rest by 1/(1-p)); identity in eval."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = real_number(self, "p", p, 0, 1, high_open=True)

    def forward(self, x):
        check_input(self, x, "of any shape")
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"

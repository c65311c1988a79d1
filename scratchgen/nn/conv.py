"""Convolutional layers as modules: Conv2d, ConvTranspose2d, MaxPool2d, AvgPool2d, Upsample.

Each layer holds its settings and parameters and calls a function of :mod:`scratchgen.nn.functional`;
the math and the gradients live in :mod:`scratchgen.ops.conv` and :mod:`scratchgen.ops.pool`. Names,
parameter shapes and initialisation are PyTorch's, so a state dict moves between the two unchanged:

* ``Conv2d.weight`` is (out_channels, in_channels, kh, kw);
* ``ConvTranspose2d.weight`` is (in_channels, out_channels, kh, kw), the layout of the conv2d whose
  input gradient it computes;
* both are initialised U(-1/√fan_in, 1/√fan_in), weight and bias alike (Kaiming-uniform with a = √5),
  where fan_in is weight.shape[1]·kh·kw, which for ConvTranspose2d is out_channels·kh·kw, as in PyTorch.

All take images (N, C, H, W). Kernel sizes, strides and paddings are ints or (height, width) pairs,
checked when the layer is built (a stride of 0 or a negative padding is refused there, naming the layer;
see :mod:`scratchgen.nn._checks`).
"""

from __future__ import annotations

import math

from scratchgen import backend
from scratchgen.nn import functional as F
from scratchgen.nn import init
from scratchgen.nn._checks import check_input, flag, int_pair, positive_int
from scratchgen.nn.module import Module, Parameter

__all__ = ["Conv2d", "ConvTranspose2d", "MaxPool2d", "AvgPool2d", "Upsample"]


def _call(layer: Module, function, *args, **kwargs):
    """``function(*args, **kwargs)``, with the layer's description put in front of any shape error."""
    try:
        return function(*args, **kwargs)
    except ValueError as err:
        raise ValueError(f"{layer!r}: {err}") from err


class _ConvNd(Module):
    """What the two convolutions share: their checked settings, PyTorch's initialisation, the input check
    and the description in errors and repr."""

    def _init_settings(self, in_channels, out_channels, kernel_size, stride, padding, dilation) -> None:
        self.in_channels = positive_int(self, "in_channels", in_channels)
        self.out_channels = positive_int(self, "out_channels", out_channels)
        self.kernel_size = int_pair(self, "kernel_size", kernel_size, minimum=1)
        self.stride = int_pair(self, "stride", stride, minimum=1)
        self.padding = int_pair(self, "padding", padding, minimum=0)
        self.dilation = int_pair(self, "dilation", dilation, minimum=1)

    def _check_images(self, x) -> None:
        """x must be (N, C, H, W) of the weight's dtype; the op checks C against the weight."""
        check_input(self, x, "(N, C, H, W)", ranks=(4,))

    def _init_parameters(self, weight_shape, bias: bool) -> None:
        """weight and bias ~ U(-1/√fan_in, 1/√fan_in), fan_in = weight_shape[1]·kh·kw, as in PyTorch."""
        self.weight = Parameter(backend.xp.empty(weight_shape, dtype=backend.DEFAULT_DTYPE))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))  # the same bound, 1/√fan_in
        self.bias = None
        if flag(self, "bias", bias):
            bound = 1 / math.sqrt(weight_shape[1] * weight_shape[2] * weight_shape[3])
            self.bias = Parameter(backend.xp.empty((self.out_channels,), dtype=backend.DEFAULT_DTYPE))
            init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        text = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}"
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if getattr(self, "output_padding", (0, 0)) != (0, 0):
            text += f", output_padding={self.output_padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        return text + ("" if self.bias is not None else ", bias=False")


class Conv2d(_ConvNd):
    """y = W ⋆ x + b over (N, in_channels, H, W) -> (N, out_channels, OH, OW); see :func:`F.conv2d`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1,
                 bias: bool = True):
        super().__init__()
        self._init_settings(in_channels, out_channels, kernel_size, stride, padding, dilation)
        self._init_parameters((self.out_channels, self.in_channels) + self.kernel_size, bias)

    def forward(self, x):
        self._check_images(x)
        return _call(self, F.conv2d, x, self.weight, self.bias, stride=self.stride, padding=self.padding,
                     dilation=self.dilation)


class ConvTranspose2d(_ConvNd):
    """The transposed convolution (N, in_channels, H, W) -> (N, out_channels, OH, OW), upsampling by the
    stride; see :func:`F.conv_transpose2d`."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, output_padding=0,
                 bias: bool = True, dilation=1):
        super().__init__()
        self._init_settings(in_channels, out_channels, kernel_size, stride, padding, dilation)
        self.output_padding = int_pair(self, "output_padding", output_padding, minimum=0)
        # PyTorch's rule: the extra rows and columns must fall within one step of the stride (or dilation)
        if any(extra >= max(s, d) for extra, s, d in zip(self.output_padding, self.stride, self.dilation)):
            raise ValueError(f"{type(self).__name__}: output_padding must be smaller than the stride or the dilation, "
                             f"got {output_padding!r} with stride {self.stride} and dilation {self.dilation}")
        self._init_parameters((self.in_channels, self.out_channels) + self.kernel_size, bias)

    def forward(self, x):
        self._check_images(x)
        return _call(self, F.conv_transpose2d, x, self.weight, self.bias, stride=self.stride,
                     padding=self.padding, output_padding=self.output_padding, dilation=self.dilation)


def _check_pool_padding(layer: Module) -> None:
    """A window must overlap the image: padding at most half the (dilated) kernel, as in PyTorch."""
    dilation = getattr(layer, "dilation", (1, 1))
    if any(2 * p > d * (k - 1) + 1 for p, k, d in zip(layer.padding, layer.kernel_size, dilation)):
        raise ValueError(f"{layer!r}: padding {layer.padding} must be at most half the kernel {layer.kernel_size}")


class MaxPool2d(Module):
    """The maximum of each window; ``stride`` defaults to ``kernel_size`` (windows side by side)."""

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1):
        super().__init__()
        self.kernel_size = int_pair(self, "kernel_size", kernel_size, minimum=1)
        self.stride = self.kernel_size if stride is None else int_pair(self, "stride", stride, minimum=1)
        self.padding = int_pair(self, "padding", padding, minimum=0)
        self.dilation = int_pair(self, "dilation", dilation, minimum=1)
        _check_pool_padding(self)

    def forward(self, x):
        check_input(self, x, "(N, C, H, W)", ranks=(4,))
        return _call(self, F.max_pool2d, x, self.kernel_size, self.stride, self.padding, self.dilation)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, dilation={self.dilation}"


class AvgPool2d(Module):
    """The mean of each window (padding zeros included); ``stride`` defaults to ``kernel_size``."""

    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size = int_pair(self, "kernel_size", kernel_size, minimum=1)
        self.stride = self.kernel_size if stride is None else int_pair(self, "stride", stride, minimum=1)
        self.padding = int_pair(self, "padding", padding, minimum=0)
        _check_pool_padding(self)

    def forward(self, x):
        check_input(self, x, "(N, C, H, W)", ranks=(4,))
        return _call(self, F.avg_pool2d, x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


class Upsample(Module):
    """Nearest-neighbour upsampling by an integer ``scale_factor`` (or pair): each pixel becomes a block."""

    def __init__(self, scale_factor, mode: str = "nearest"):
        super().__init__()
        if mode != "nearest":
            raise ValueError(f"Upsample: only mode='nearest' is implemented, got {mode!r}")
        self.scale_factor, self.mode = int_pair(self, "scale_factor", scale_factor, minimum=1), mode

    def forward(self, x):
        check_input(self, x, "(N, C, H, W)", ranks=(4,))
        return _call(self, F.interpolate, x, self.scale_factor, self.mode)

    def extra_repr(self) -> str:
        return f"scale_factor={self.scale_factor}, mode={self.mode!r}"

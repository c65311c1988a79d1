"""Pooling and nearest-neighbour upsampling of images (N, C, H, W).

Max and average pooling reduce each kh×kw window to one number. They reuse convolution's ops
(:mod:`scratchgen.ops.conv`): :class:`~scratchgen.ops.conv.Im2Col` lays the windows out as columns,
(C, kh·kw, OH·OW·N), so a pool is a reduction over the kh·kw taps of each column, and the gradient of
im2col, col2im, sends each window's gradient back to the pixels it covers, adding where windows
overlap. Average pooling is a mean over the taps; max pooling takes :class:`WindowMax`, a maximum whose
gradient goes to the window's first maximum, as PyTorch's does. Max pooling follows Ranzato et al.
(2007) and the LeNet/AlexNet line; average pooling counts padding zeros in its mean, as PyTorch does by
default.

Nearest upsampling copies each pixel into an sh×sw block, the upsampling of DCGAN-style decoders that
avoids the checkerboard artefacts of strided transposed convolutions (Odena et al. 2016, "Deconvolution
and checkerboard artifacts").
"""

from __future__ import annotations

from scratchgen.autograd import Function, constant
from scratchgen.backend import xp
from scratchgen.ops.conv import Im2Col, conv_output_size
from scratchgen.tensor import Tensor

__all__ = ["max_pool2d", "avg_pool2d", "WindowMax", "UpsampleNearest2d"]


def _window_columns(op, x, kernel_size, stride, padding, dilation, pad_value):
    """The windows of x as a Tensor (C, kh·kw, OH·OW·N), and (OH, OW); checks named after ``op``."""
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D input (N, C, H, W), got shape {x.shape}")
    for k, p, d in zip(kernel_size, padding, dilation):
        if 2 * p > d * (k - 1) + 1:
            raise ValueError(f"{op}: padding {tuple(padding)} must be at most half the kernel {tuple(kernel_size)}")
    try:
        out_size = conv_output_size(x.shape[2:], kernel_size, stride, padding, dilation)
    except ValueError as err:
        raise ValueError(f"{op}: {err}") from err
    cols = Im2Col.apply(x, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                        out_size=out_size, pad_value=pad_value)
    return cols.reshape(x.shape[1], kernel_size[0] * kernel_size[1], -1), out_size


def _to_image(pooled, x_shape, out_size):
    """(C, OH·OW·N) -> (N, C, OH, OW), the inverse of how im2col orders the columns."""
    return pooled.reshape((x_shape[1],) + tuple(out_size) + (x_shape[0],)).transpose(3, 0, 1, 2)


class WindowMax(Function):
    """y[c, l] = max_k cols[c, k, l]; dy/dcols[c, k, l] = 1 for the first maximum k of the window, else 0.

    Input (C, taps, L), output (C, L). The winners are constant wherever the maximum is unique, so the
    second derivative is 0 there.
    """

    saved_inputs = ()
    saves_output = False

    def forward(self, cols):
        pooled = cols.max(axis=1)
        winners = cols == pooled[:, None, :]
        # A tie (common after a ReLU: a window of zeros) gives the gradient to the first maximum only, as in
        # PyTorch. A loop over the few taps is much faster than argmax along the middle axis.
        taken = winners[:, 0].copy()
        for tap in range(1, winners.shape[1]):
            winners[:, tap] &= ~taken
            taken |= winners[:, tap]
        self.winners = winners.astype(cols.dtype)
        return pooled

    def backward(self, grad):
        return grad.reshape(grad.shape[0], 1, grad.shape[1]) * constant(self.winners)


def max_pool2d(x: Tensor, kernel_size, stride, padding=(0, 0), dilation=(1, 1)) -> Tensor:
    """The maximum of each window: (N, C, H, W) -> (N, C, OH, OW). Padding holds -inf, never the maximum.

    All settings are (height, width) pairs.
    """
    cols, out_size = _window_columns("max_pool2d", x, kernel_size, stride, padding, dilation, float("-inf"))
    return _to_image(WindowMax.apply(cols), x.shape, out_size)


def avg_pool2d(x: Tensor, kernel_size, stride, padding=(0, 0)) -> Tensor:
    """The mean of each window, padding zeros included: (N, C, H, W) -> (N, C, OH, OW).

    d mean_k x_k / dx_j = 1 / (kh·kw) for every pixel j of the window; the mean's backward and im2col's
    give exactly that.
    """
    cols, out_size = _window_columns("avg_pool2d", x, kernel_size, stride, padding, (1, 1), 0.0)
    return _to_image(cols.mean(axis=1), x.shape, out_size)


def _batch_last(x) -> bool:
    """Whether x (N, C, H, W) lies in memory batch axis last, as convolutions leave their outputs."""
    return x.strides[0] == x.itemsize and x.shape[0] > 1


class UpsampleNearest2d(Function):
    """y[n, c, sh·h + a, sw·w + b] = x[n, c, h, w], so grad_x is the sum of grad over each sh×sw block.

    The copy runs in the input's memory order: for an image that a convolution left batch axis last,
    the blocks are built as (C, H, sh, W, sw, N), which copies runs of N numbers, not single ones.
    """

    saved_inputs = ()
    saves_output = False

    def forward(self, x, scale_factor):
        if x.ndim != 4:
            raise ValueError(f"expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        sh, sw = self.scale = scale_factor
        if _batch_last(x):
            image = x.transpose(1, 2, 3, 0)[:, :, None, :, None, :]  # (C, H, 1, W, 1, N), a view
            blocks = xp.broadcast_to(image, (c, h, sh, w, sw, n))
            return blocks.reshape(c, h * sh, w * sw, n).transpose(3, 0, 1, 2)
        blocks = xp.broadcast_to(x[:, :, :, None, :, None], (n, c, h, sh, w, sw))  # a view: no copy yet
        return blocks.reshape(n, c, h * sh, w * sw)

    def backward(self, grad):
        n, c, hs, ws = grad.shape
        sh, sw = self.scale
        if _batch_last(grad.data):
            blocks = grad.transpose(1, 2, 3, 0).reshape(c, hs // sh, sh, ws // sw, sw, n)
            return blocks.sum(axis=(2, 4)).transpose(3, 0, 1, 2)
        return grad.reshape(n, c, hs // sh, sh, ws // sw, sw).sum(axis=(3, 5))

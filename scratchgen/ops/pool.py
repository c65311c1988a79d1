"""Pooling and nearest-neighbour upsampling of images (N, C, H, W).

Max and average pooling reduce each kh×kw window to one number. They reuse convolution's helpers
(:mod:`scratchgen.ops.conv`): im2col lays the windows out as columns, so the pooled value is a reduction
over the kh·kw taps of each column; col2im sends the gradient of each window back to the pixels it
covers, adding where windows overlap. Max pooling follows Ranzato et al. (2007) and the LeNet/AlexNet
line; average pooling counts padding zeros in its mean, as PyTorch does by default.

Nearest upsampling copies each pixel into an sh×sw block, the upsampling of DCGAN-style decoders that
avoids the checkerboard artefacts of strided transposed convolutions (Odena et al. 2016, "Deconvolution
and checkerboard artifacts").
"""

from __future__ import annotations

from scratchgen.autograd import Function
from scratchgen.backend import xp
from scratchgen.ops.conv import col2im, conv_output_size, im2col

__all__ = ["MaxPool2d", "AvgPool2d", "UpsampleNearest2d"]


class _Pool2d(Function):
    """Shared by the two pools: checks, the window columns (C, kh·kw, OH·OW·N), and the way back to pixels."""

    pad_value = 0.0

    def _columns(self, x, kernel_size, stride, padding, dilation):
        if x.ndim != 4:
            raise ValueError(f"expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
        for k, p, d in zip(kernel_size, padding, dilation):
            if 2 * p > d * (k - 1) + 1:
                raise ValueError(f"padding {tuple(padding)} must be at most half the kernel {tuple(kernel_size)}")
        self.x_shape, self.geometry = x.shape, (kernel_size, stride, padding, dilation)
        self.out_size = conv_output_size(x.shape[2:], *self.geometry)
        cols = im2col(x, *self.geometry, self.out_size, pad_value=self.pad_value)
        return cols.reshape(x.shape[1], kernel_size[0] * kernel_size[1], -1)

    def _to_image(self, pooled):
        """(C, OH·OW·N) -> (N, C, OH, OW), the inverse of how im2col orders the columns."""
        return pooled.reshape((self.x_shape[1],) + self.out_size + (self.x_shape[0],)).transpose(3, 0, 1, 2)

    def _to_pixels(self, grad_cols):
        """Gradient of the window columns (C, kh·kw, OH·OW·N) -> gradient of the input (N, C, H, W)."""
        return col2im(grad_cols.reshape(-1, grad_cols.shape[-1]), self.x_shape, *self.geometry, self.out_size)

    @staticmethod
    def _as_columns(grad):
        """(N, C, OH, OW) -> (C, 1, OH·OW·N), in the columns' order, ready to broadcast over the taps."""
        return grad.transpose(1, 2, 3, 0).reshape(grad.shape[1], 1, -1)


class MaxPool2d(_Pool2d):
    """d max_k x_k / dx_j = 1 for the window's first maximum j, else 0; overlapping windows add up.

    Padding holds -inf, so it is never the maximum.
    """

    pad_value = float("-inf")

    def forward(self, x, kernel_size, stride, padding=(0, 0), dilation=(1, 1)):
        self.cols = self._columns(x, kernel_size, stride, padding, dilation)
        self.pooled = self.cols.max(axis=1)  # (C, OH·OW·N)
        return self._to_image(self.pooled)

    def backward(self, grad):
        winners = self.cols == self.pooled[:, None, :]  # (C, kh·kw, OH·OW·N): the taps holding the maximum
        # A tie (common after a ReLU: a window of zeros) gives the gradient to the first maximum only, as in
        # PyTorch. A loop over the few taps is much faster than argmax along the middle axis.
        taken = winners[:, 0].copy()
        for tap in range(1, winners.shape[1]):
            winners[:, tap] &= ~taken
            taken |= winners[:, tap]
        return self._to_pixels(winners * self._as_columns(grad))


class AvgPool2d(_Pool2d):
    """d mean_k x_k / dx_j = 1 / (kh·kw) for every pixel j of the window (padding zeros count)."""

    def forward(self, x, kernel_size, stride, padding=(0, 0)):
        cols = self._columns(x, kernel_size, stride, padding, (1, 1))
        return self._to_image(cols.mean(axis=1))

    def backward(self, grad):
        taps = self.geometry[0][0] * self.geometry[0][1]
        share = self._as_columns(grad) / grad.dtype.type(taps)
        return self._to_pixels(xp.broadcast_to(share, (share.shape[0], taps, share.shape[2])))


class UpsampleNearest2d(Function):
    """y[n, c, sh·h + a, sw·w + b] = x[n, c, h, w], so grad_x is the sum of grad over each sh×sw block."""

    def forward(self, x, scale_factor):
        if x.ndim != 4:
            raise ValueError(f"expected a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
        n, c, h, w = x.shape
        sh, sw = self.scale = scale_factor
        blocks = xp.broadcast_to(x[:, :, :, None, :, None], (n, c, h, sh, w, sw))  # a view: no copy yet
        return blocks.reshape(n, c, h * sh, w * sw)

    def backward(self, grad):
        n, c, hs, ws = grad.shape
        sh, sw = self.scale
        return grad.reshape(n, c, hs // sh, sh, ws // sw, sw).sum(axis=(3, 5))

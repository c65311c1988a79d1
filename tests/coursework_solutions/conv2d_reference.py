"""Reference answer to assignment 2, by the library's array helpers: the handout's equations over
:func:`scratchgen.ops.conv.im2col` and :func:`scratchgen.ops.conv.col2im`.

The library keeps im2col's columns as (C·kh·kw, OH·OW·N) (see scratchgen/ops/conv.py for why); the
assignment asks for one window per row, (N·OH·OW, C·kh·kw). The adapters ``im2col`` and ``col2im``
below only move axes; ``Conv2d`` then follows the README's equations on them, one array-level
backward, as the students write it. The grader compares it with the library's own conv2d, a
composition of the ops Im2Col and Col2Im.
"""

from scratchgen.autograd import Function, once_differentiable
from scratchgen.ops import conv


def _geometry(kh, kw, stride, padding):
    """The library's (kernel_size, stride, padding, dilation) pairs for the assignment's int settings."""
    return (kh, kw), (stride, stride), (padding, padding), (1, 1)


def im2col(x, kh, kw, stride, padding):
    n, c = x.shape[:2]
    oh, ow = conv.conv_output_size(x.shape[2:], *_geometry(kh, kw, stride, padding))
    cols = conv.im2col(x, *_geometry(kh, kw, stride, padding))  # (C·kh·kw, OH·OW·N)
    return cols.reshape(c, kh, kw, oh, ow, n).transpose(5, 3, 4, 0, 1, 2).reshape(n * oh * ow, c * kh * kw)


def col2im(cols, x_shape, kh, kw, stride, padding):
    n, c = x_shape[:2]
    out_size = conv.conv_output_size(x_shape[2:], *_geometry(kh, kw, stride, padding))
    library_cols = cols.reshape((n,) + out_size + (c, kh, kw)).transpose(3, 4, 5, 1, 2, 0).reshape(c * kh * kw, -1)
    return conv.col2im(library_cols, x_shape, *_geometry(kh, kw, stride, padding), out_size)


class Conv2d(Function):
    """Y = cols · W₂ᵀ + b, with cols = im2col(x) and W₂ = weight as an (O, C·kh·kw) matrix."""

    def forward(self, x, weight, bias, stride=1, padding=0):
        n, _, h, w = x.shape
        o, _, kh, kw = weight.shape
        oh, ow = conv.conv_output_size((h, w), *_geometry(kh, kw, stride, padding))
        self.cols = im2col(x, kh, kw, stride, padding)  # (N·OH·OW, C·kh·kw), kept for grad_weight
        self.x_shape, self.weight, self.stride, self.padding = x.shape, weight, stride, padding
        out = self.cols @ weight.reshape(o, -1).T + bias  # (N·OH·OW, O)
        return out.reshape(n, oh, ow, o).transpose(0, 3, 1, 2)

    @once_differentiable
    def backward(self, grad):
        o, _, kh, kw = self.weight.shape
        g = grad.transpose(0, 2, 3, 1).reshape(-1, o)  # G, (N·OH·OW, O): rows in the order of cols
        grad_weight = (g.T @ self.cols).reshape(self.weight.shape)
        grad_x = col2im(g @ self.weight.reshape(o, -1), self.x_shape, kh, kw, self.stride, self.padding)
        return grad_x, grad_weight, g.sum(axis=0)


def conv2d(x, weight, bias, stride=1, padding=0):
    return Conv2d.apply(x, weight, bias, stride=stride, padding=padding)

"""Reference answer to assignment 2, by the library: the student's interface over scratchgen.ops.conv.

The library keeps im2col's columns as (C·kh·kw, OH·OW·N) (see scratchgen/ops/conv.py for why); the
assignment asks for one window per row, (N·OH·OW, C·kh·kw). The adapters below only move axes.
"""

from scratchgen import ops
from scratchgen.nn import functional as F
from scratchgen.ops import conv


def _geometry(kh, kw, stride, padding):
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


class Conv2d(ops.Conv2d):
    def forward(self, x, weight, bias, stride=1, padding=0):
        return super().forward(x, weight, bias, stride=(stride, stride), padding=(padding, padding))


def conv2d(x, weight, bias, stride=1, padding=0):
    return F.conv2d(x, weight, bias, stride=stride, padding=padding)

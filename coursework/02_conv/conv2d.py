"""Assignment 2: conv2d, forward and backward, by im2col and one matrix product.

Read ``coursework/02_conv/README.md`` first. Fill in the four gaps marked YOUR CODE HERE (im2col, col2im,
Conv2d.forward, Conv2d.backward), then grade your work from the repository's root with

    python -m pytest coursework/02_conv

Shapes: x (N, C, H, W); weight (O, C, kh, kw); bias (O,); output (N, O, OH, OW). ``stride`` and
``padding`` are ints, the same along both axes.
"""

from scratchgen.autograd import Function, once_differentiable
from scratchgen.backend import xp


def output_size(h, w, kh, kw, stride, padding):
    """(OH, OW): how many positions a kh×kw window takes in the padded image, ⌊(H + 2p - kh) / s⌋ + 1."""
    return (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1


def pad(x, padding):
    """x (N, C, H, W) inside a frame of ``padding`` zeros: (N, C, H + 2p, W + 2p)."""
    n, c, h, w = x.shape
    out = xp.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=x.dtype)
    out[:, :, padding:padding + h, padding:padding + w] = x
    return out


def im2col(x, kh, kw, stride, padding):
    """Every kh×kw window of the zero-padded x, one window per row.

    Args:
        x: (N, C, H, W).

    Returns:
        cols, (N·OH·OW, C·kh·kw): row (n, oh, ow) (n varying slowest, then oh, then ow) and column
        (c, i, j) (c slowest) hold x_pad[n, c, stride·oh + i, stride·ow + j].
    """
    # YOUR CODE HERE: loop over the kh·kw taps (i, j), never over pixels; each tap is one strided slice
    # of the padded image. About 8 lines.
    raise NotImplementedError("your code here: im2col")


def col2im(cols, x_shape, kh, kw, stride, padding):
    """The adjoint of im2col: add every entry of ``cols`` back onto the pixel im2col copied it from.

    Args:
        cols: (N·OH·OW, C·kh·kw), laid out as im2col returns it.
        x_shape: (N, C, H, W), the shape of the unpadded image.

    Returns:
        (N, C, H, W). Entries that came from the padding are dropped; a pixel covered by several windows
        receives the sum of all their entries.
    """
    # YOUR CODE HERE: the same loop over taps as im2col, adding (+=) where im2col copied.
    raise NotImplementedError("your code here: col2im")


class Conv2d(Function):
    """Y = cols · W₂ᵀ + b, with cols = im2col(x) and W₂ = weight as an (O, C·kh·kw) matrix."""

    def forward(self, x, weight, bias, stride=1, padding=0):
        """x (N, C, H, W), weight (O, C, kh, kw), bias (O,) -> (N, O, OH, OW).

        Keep in ``self`` what the backward will need (the columns, the shapes, stride and padding).
        """
        # YOUR CODE HERE: im2col, one matrix product, add the bias, reshape and transpose to (N, O, OH, OW).
        raise NotImplementedError("your code here: Conv2d.forward")

    @once_differentiable  # a backward on raw arrays: see "Arrays, once" in this folder's README.md
    def backward(self, grad):
        """grad: dL/dY, an array (N, O, OH, OW). Returns (dL/dx, dL/dweight, dL/dbias), arrays shaped like
        the inputs."""
        # YOUR CODE HERE: grad as a (N·OH·OW, O) matrix G; then grad_weight from G and the columns,
        # grad_bias from G, and grad_x = col2im(G · W₂).
        raise NotImplementedError("your code here: Conv2d.backward")


def conv2d(x, weight, bias, stride=1, padding=0):
    """The convolution of Tensors, recorded for autograd."""
    return Conv2d.apply(x, weight, bias, stride=stride, padding=padding)

"""2-D convolution and transposed convolution, as one matrix product over im2col's columns.

A convolution slides a kernel of kh×kw taps over the (padded) input. Output pixel (oh, ow) of window
geometry (stride s, dilation d) reads input pixel (s·oh + d·i, s·ow + d·j) at tap (i, j), so

    y[n, o, oh, ow] = b[o] + Σ_{c, i, j} W[o, c, i, j] · x_pad[n, c, s·oh + d·i, s·ow + d·j].

**im2col** copies every window into one column of a matrix ``cols`` of shape (C·kh·kw, OH·OW·N), so the
whole layer is one matrix product ``Y = W₂ · cols`` with W₂ = W reshaped to (O, C·kh·kw) (Chellapilla
et al. 2006, "High performance convolutional neural networks for document processing"). The windows
are a strided *view* of the padded input (no copy, :func:`scratchgen.backend.as_strided`); the only
copy is the one the matrix product needs.

**col2im** is im2col's adjoint: it adds every column back onto the pixels its window read, one strided
slice per kernel tap (a loop over kh·kw taps, never over pixels or batch items). Hence

* conv2d backward: grad_W = G · colsᵀ, grad_cols = W₂ᵀ · G, grad_x = col2im(grad_cols);
* conv_transpose2d *forward* is conv2d's input gradient, col2im(W₂ᵀ · x), and its backward is a
  conv2d forward (im2col) of the output gradient. Both ops share the two helpers below.

Memory layout. Arrays are NCHW to the reader, but the padded frames that im2col reads and col2im
writes are allocated with the batch axis *last* in memory, (C, H, W, N), and viewed as NCHW with a
transpose. Every strided copy or add then runs over N contiguous numbers rather than over a row of a
few pixels, which makes im2col about 6× and col2im about 5× faster in NumPy. This is the CHWN layout of
Krizhevsky's cuda-convnet. Outputs come back as views in the same memory order, so the next layer's
copy into its padded frame is cheap; the code never depends on the layout, only its speed does.
"""

from __future__ import annotations

from scratchgen import backend
from scratchgen.autograd import Function
from scratchgen.backend import xp

__all__ = ["Conv2d", "ConvTranspose2d", "pair", "conv_output_size", "pad2d", "im2col", "col2im"]


def pair(value, name: str = "value") -> tuple[int, int]:
    """An int or a pair of ints as a pair (height, width): 3 -> (3, 3)."""
    if isinstance(value, int):
        return (value, value)
    value = tuple(value)
    if len(value) != 2 or not all(isinstance(v, int) for v in value):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return value


def conv_output_size(size, kernel_size, stride, padding, dilation) -> tuple[int, int]:
    """Number of window positions per axis, PyTorch's formula: ⌊(H + 2p - d·(k-1) - 1) / s⌋ + 1.

    All arguments are (height, width) pairs.

    Raises:
        ValueError: the dilated kernel is larger than the padded input.
    """
    spans = [d * (k - 1) + 1 for k, d in zip(kernel_size, dilation)]  # the dilated kernel's extent
    padded = [n + 2 * p for n, p in zip(size, padding)]
    if spans[0] > padded[0] or spans[1] > padded[1]:
        raise ValueError(
            f"the kernel {tuple(kernel_size)} with dilation {tuple(dilation)} spans {spans[0]}×{spans[1]} "
            f"pixels, more than the padded input {padded[0]}×{padded[1]} (input {tuple(size)}, padding "
            f"{tuple(padding)})"
        )
    return tuple((n - span) // s + 1 for n, span, s in zip(padded, spans, stride))


def pad2d(x, padding, value: float = 0.0):
    """x of shape (N, C, H, W) inside a frame of ``padding`` pixels of ``value``: (N, C, H+2p, W+2p).

    The frame is allocated in (C, H, W, N) memory order (see the module docstring) and filled by
    assigning a slice, which is faster than ``np.pad``. Always a new array.
    """
    n, c, h, w = x.shape
    ph, pw = padding
    frame = xp.full((c, h + 2 * ph, w + 2 * pw, n), value, dtype=x.dtype).transpose(3, 0, 1, 2)
    frame[:, :, ph : ph + h, pw : pw + w] = x
    return frame


def _windows(frame, kernel_size, stride, dilation, out_size):
    """The strided view (N, C, kh, kw, OH, OW) of ``frame``: element [n, c, i, j, oh, ow] is
    frame[n, c, s·oh + d·i, s·ow + d·j]. No copy."""
    sn, sc, sh, sw = frame.strides
    shape = frame.shape[:2] + tuple(kernel_size) + tuple(out_size)
    strides = (sn, sc, dilation[0] * sh, dilation[1] * sw, stride[0] * sh, stride[1] * sw)
    return backend.as_strided(frame, shape, strides)


def im2col(x, kernel_size, stride, padding, dilation, out_size=None, pad_value: float = 0.0):
    """Every kh×kw window of the padded input as a column: (C·kh·kw, OH·OW·N).

    Args:
        x: (N, C, H, W). kernel_size, stride, padding, dilation: (height, width) pairs.
        out_size: (OH, OW), the number of windows; by default :func:`conv_output_size`.
        pad_value: what the padding holds (0 for convolution, -inf for max pooling).

    Returns:
        A new contiguous array; row (c, i, j) and column (oh, ow, n) hold
        x_pad[n, c, s·oh + d·i, s·ow + d·j].
    """
    if out_size is None:
        out_size = conv_output_size(x.shape[2:], kernel_size, stride, padding, dilation)
    frame = x if tuple(padding) == (0, 0) else pad2d(x, padding, pad_value)
    windows = _windows(frame, kernel_size, stride, dilation, out_size)
    c, (kh, kw) = x.shape[1], kernel_size
    return windows.transpose(1, 2, 3, 4, 5, 0).reshape(c * kh * kw, -1)  # the one copy


def col2im(cols, x_shape, kernel_size, stride, padding, dilation, out_size):
    """The adjoint of :func:`im2col`: add each column back onto the pixels its window covers.

    Args:
        cols: (C·kh·kw, OH·OW·N), laid out as :func:`im2col` returns it.
        x_shape: (N, C, H, W) of the unpadded image to rebuild. out_size: (OH, OW).

    Returns:
        (N, C, H, W): pixel x[n, c, y, x] is the sum of the entries of ``cols`` that im2col copied from it
        (padding positions are dropped).
    """
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = kernel_size, stride, padding, dilation, out_size
    cols = cols.reshape(c, kh, kw, oh, ow, n).transpose(5, 0, 1, 2, 3, 4)  # (N, C, kh, kw, OH, OW)
    frame = xp.zeros((c, h + 2 * ph, w + 2 * pw, n), dtype=cols.dtype).transpose(3, 0, 1, 2)
    # Tap (i, j) of every window lands on the pixels (s·oh + d·i, s·ow + d·j): one strided slice.
    # Windows overlap when s < d·(k-1)+1, which is why this adds rather than assigns.
    for i in range(kh):
        for j in range(kw):
            frame[:, :, dh * i : dh * i + sh * oh : sh, dw * j : dw * j + sw * ow : sw] += cols[:, :, i, j]
    return frame[:, :, ph : ph + h, pw : pw + w]


def _check_conv(x, weight, weight_channels: int, in_axis: int) -> None:
    """Shape checks shared by conv2d and conv_transpose2d, with messages that say what was expected."""
    if x.ndim != 4:
        raise ValueError(f"expected a 4-D input (N, C, H, W), got a {x.ndim}-D input of shape {tuple(x.shape)}")
    if weight.ndim != 4:
        raise ValueError(f"expected a 4-D weight, got shape {tuple(weight.shape)}")
    if x.shape[1] != weight_channels:
        raise ValueError(
            f"the input has {x.shape[1]} channels (shape {tuple(x.shape)}) but the weight "
            f"{tuple(weight.shape)} expects {weight_channels} (its axis {in_axis})"
        )


class Conv2d(Function):
    """Y = W₂·cols + b with cols = im2col(x): grad_W = G·colsᵀ, grad_x = col2im(W₂ᵀ·G), grad_b = Σ G.

    Inputs: x (N, C, H, W), weight (O, C, kh, kw), optional bias (O,). Output (N, O, OH, OW).
    """

    def forward(self, x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
        _check_conv(x, weight, weight.shape[1], in_axis=1)
        if bias is not None and bias.shape != (weight.shape[0],):
            raise ValueError(f"the bias has shape {tuple(bias.shape)}, expected ({weight.shape[0]},)")
        self.geometry = (tuple(weight.shape[2:]), stride, padding, dilation)
        self.out_size = conv_output_size(x.shape[2:], *self.geometry)
        self.x_shape, self.weight = x.shape, weight
        self.cols = im2col(x, *self.geometry, self.out_size)  # kept: the weight gradient needs it
        out = weight.reshape(weight.shape[0], -1) @ self.cols  # (O, OH·OW·N)
        if bias is not None:
            out += bias[:, None]
        return out.reshape((weight.shape[0],) + self.out_size + (x.shape[0],)).transpose(3, 0, 1, 2)

    def backward(self, grad):
        out_channels = self.weight.shape[0]
        g = grad.transpose(1, 2, 3, 0).reshape(out_channels, -1)  # (O, OH·OW·N), as the forward's product
        need_x, need_w = self.needs_input_grad[:2]
        grad_x = grad_w = grad_b = None
        if need_x:
            grad_cols = self.weight.reshape(out_channels, -1).T @ g
            grad_x = col2im(grad_cols, self.x_shape, *self.geometry, self.out_size)
        if need_w:
            grad_w = (g @ self.cols.T).reshape(self.weight.shape)
        if len(self.needs_input_grad) == 2:
            return grad_x, grad_w
        if self.needs_input_grad[2]:
            grad_b = g.sum(axis=1)
        return grad_x, grad_w, grad_b


class ConvTranspose2d(Function):
    """Y = col2im(W₂ᵀ·X) + b, conv2d's input gradient: grad_X = W₂·im2col(G), grad_W = X·im2col(G)ᵀ.

    Inputs: x (N, C_in, H, W), weight (C_in, C_out, kh, kw), optional bias (C_out,). Output
    (N, C_out, OH, OW) with OH = (H-1)·s - 2p + d·(kh-1) + output_padding + 1 (PyTorch's formula).
    Here X is x as a matrix (C_in, H·W·N) and W₂ the weight as (C_in, C_out·kh·kw).
    """

    def forward(self, x, weight, bias=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1)):
        _check_conv(x, weight, weight.shape[0], in_axis=0)
        n, c_in, h, w = x.shape
        c_out, kh, kw = weight.shape[1:]
        if bias is not None and bias.shape != (c_out,):
            raise ValueError(f"the bias has shape {tuple(bias.shape)}, expected ({c_out},)")
        for op, s, d in zip(output_padding, stride, dilation):
            if not 0 <= op < max(s, d):
                raise ValueError(f"output_padding {tuple(output_padding)} must be smaller than the stride "
                                 f"{tuple(stride)} or the dilation {tuple(dilation)}")
        out_size = tuple(
            (size - 1) * s - 2 * p + d * (k - 1) + op + 1
            for size, s, p, d, k, op in zip((h, w), stride, padding, dilation, (kh, kw), output_padding)
        )
        if min(out_size) < 1:
            raise ValueError(f"the output would be {out_size[0]}×{out_size[1]}: padding {tuple(padding)} "
                             f"crops more than the transposed convolution produces")
        self.geometry = ((kh, kw), stride, padding, dilation)
        self.in_size, self.weight = (h, w), weight
        self.x_matrix = x.transpose(1, 2, 3, 0).reshape(c_in, -1)  # (C_in, H·W·N), kept for grad_W
        cols = weight.reshape(c_in, -1).T @ self.x_matrix  # (C_out·kh·kw, H·W·N)
        out = col2im(cols, (n, c_out) + out_size, *self.geometry, self.in_size)
        if bias is not None:
            out += bias[:, None, None]
        return out

    def backward(self, grad):
        c_in = self.weight.shape[0]
        cols = im2col(grad, *self.geometry, self.in_size)  # (C_out·kh·kw, H·W·N)
        need_x, need_w = self.needs_input_grad[:2]
        grad_x = grad_w = grad_b = None
        if need_x:
            grad_x = self.weight.reshape(c_in, -1) @ cols
            grad_x = grad_x.reshape((c_in,) + self.in_size + (grad.shape[0],)).transpose(3, 0, 1, 2)
        if need_w:
            grad_w = (self.x_matrix @ cols.T).reshape(self.weight.shape)
        if len(self.needs_input_grad) == 2:
            return grad_x, grad_w
        if self.needs_input_grad[2]:
            grad_b = grad.sum(axis=(0, 2, 3))
        return grad_x, grad_w, grad_b

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
slice per kernel tap (a loop over kh·kw taps, never over pixels or batch items). im2col is linear in x,
so its backward is col2im of the gradient, and col2im's backward is im2col: the two ops
:class:`Im2Col` and :class:`Col2Im` are each other's gradient. Everything else is a matrix product and
reshapes, so both convolutions are *compositions* of ops, and their gradients, to any order, follow:

* :func:`conv2d`: Y = W₂ · im2col(x) (+ b), hence grad_W₂ = G · colsᵀ, grad_x = col2im(W₂ᵀ · G);
* :func:`conv_transpose2d` is conv2d's input gradient as a layer: Y = col2im(W₂ᵀ · X), hence
  grad_X = W₂ · im2col(G) (a conv2d of the gradient) and grad_W₂ = X · im2col(G)ᵀ.

Differentiating a convolution twice (a gradient penalty through a DCGAN critic) therefore only ever runs
im2col, col2im and matrix products, the same kernels as training does.

Memory layout. Arrays are NCHW to the reader, but the padded frames that im2col reads and col2im
writes are allocated with the batch axis *last* in memory, (C, H, W, N), and viewed as NCHW with a
transpose. Every strided copy or add then runs over N contiguous numbers rather than over a row of a
few pixels, which makes im2col about 6× and col2im about 5× faster in NumPy. This is the CHWN layout of
Krizhevsky's cuda-convnet. Outputs come back as views in the same memory order, so the next layer's
copy into its padded frame is cheap; the code never depends on the layout, only its speed does. With a
stride above 1, consecutive windows skip pixels and those runs would have gaps; im2col and col2im then
split the padded frame into s×s phases first (pixels (s·y + a, s·x + b) in phase (a, b)), in which each
tap of every window is a block of whole rows.

Two paths, one convolution. im2col's columns are kh·kw copies of the input; for a 3×3 kernel over a
batch of images they no longer fit in the processor's cache, and building them costs more than the
product. :mod:`scratchgen.ops.conv_shifted` computes the same numbers as a sum of shifted products over
the frame, a few thousand columns at a time. :func:`conv2d` and :func:`conv_transpose2d` take
``method="im2col"`` (this module, the reference), ``"shifted"``, or ``"auto"``, which picks by shape
(:func:`choose_method`): im2col while its columns are small enough to stay in cache, the shifted path
beyond. Both are tested against the same loops, and against each other.
"""

from __future__ import annotations

from scratchgen import backend
from scratchgen.autograd import Function, constant
from scratchgen.backend import xp
from scratchgen.ops.conv_shifted import ConvGeometry, Crop, ShiftedConv, ShiftedConvTranspose, Uncrop
from scratchgen.tensor import Tensor

__all__ = [
    "conv2d", "conv_transpose2d", "Im2Col", "Col2Im", "pair", "conv_output_size", "pad2d", "im2col", "col2im",
    "choose_method", "METHODS",
]

METHODS = ("auto", "im2col", "shifted")

#: Below this many bytes of columns, im2col's one product beats the shifted path's loop of chunks.
IM2COL_BYTES = 2**20


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
    if tuple(stride) != (1, 1):
        return _im2col_phases(x, ConvGeometry(x.shape, kernel_size, stride, padding, dilation, out_size), pad_value)
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
    if tuple(stride) != (1, 1):
        return _col2im_phases(cols, ConvGeometry(x_shape, kernel_size, stride, padding, dilation, out_size))
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


def _im2col_phases(x, geometry: ConvGeometry, pad_value: float):
    """im2col for a stride above 1, from the padded image split into s_h×s_w phases (as
    :class:`~scratchgen.ops.conv_shifted.ConvGeometry` lays it out): tap (i, j) of every window is then
    one block of whole rows of its phase, OW·N numbers in a row, where the plain frame would give runs
    of N numbers with gaps between them. Same columns, fewer and longer copies."""
    (n, c, _, _), (kh, kw), (oh, ow) = x.shape, geometry.kernel_size, geometry.out_size
    frame = geometry.frame(x, fill=pad_value)
    cols = xp.empty((c, kh, kw, oh, ow, n), dtype=x.dtype)
    for (i, j), (a, b), (dy, dx) in zip(geometry.taps, geometry.phases, geometry.shifts):
        cols[:, i, j] = frame[a, b, :, dy : dy + oh, dx : dx + ow]
    return cols.reshape(c * kh * kw, -1)


def _col2im_phases(cols, geometry: ConvGeometry):
    """col2im for a stride above 1: each tap's columns added onto its phase's block of rows, then the
    image cut out of the phases (the adjoint of :func:`_im2col_phases`)."""
    (n, c, _, _), (kh, kw), (oh, ow) = geometry.x_shape, geometry.kernel_size, geometry.out_size
    frame = xp.zeros(geometry.stride + (c, geometry.frame_height, geometry.frame_width, n), dtype=cols.dtype)
    cols = cols.reshape(c, kh, kw, oh, ow, n)
    for (i, j), (a, b), (dy, dx) in zip(geometry.taps, geometry.phases, geometry.shifts):
        frame[a, b, :, dy : dy + oh, dx : dx + ow] += cols[:, i, j]
    return geometry.unframe(frame)


class Im2Col(Function):
    """cols = im2col(x), linear in x, so grad_x = col2im(grad_cols), its adjoint.

    Input x (N, C, H, W); output (C·kh·kw, OH·OW·N), laid out as :func:`im2col` returns it.
    """

    saved_inputs = ()
    saves_output = False

    def forward(self, x, kernel_size, stride, padding, dilation, out_size, pad_value=0.0):
        self.geometry, self.out_size = (kernel_size, stride, padding, dilation), out_size
        return im2col(x, *self.geometry, out_size, pad_value=pad_value)

    def backward(self, grad):
        return Col2Im.apply(grad, x_shape=self.inputs[0].shape, kernel_size=self.geometry[0],
                            stride=self.geometry[1], padding=self.geometry[2], dilation=self.geometry[3],
                            out_size=self.out_size)


class Col2Im(Function):
    """x = col2im(cols), the adjoint of im2col, so grad_cols = im2col(grad_x).

    Input cols (C·kh·kw, OH·OW·N); output (N, C, H, W) of ``x_shape``.
    """

    saved_inputs = ()
    saves_output = False

    def forward(self, cols, x_shape, kernel_size, stride, padding, dilation, out_size):
        self.geometry, self.out_size = (kernel_size, stride, padding, dilation), out_size
        return col2im(cols, x_shape, *self.geometry, out_size)

    def backward(self, grad):
        kernel_size, stride, padding, dilation = self.geometry
        return Im2Col.apply(grad, kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation,
                            out_size=self.out_size)


def _check_conv(op, x, weight, bias, weight_channels: int, in_axis: int, out_axis: int) -> None:
    """Shape checks shared by conv2d and conv_transpose2d, with messages that say what was expected."""
    if x.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D input (N, C, H, W), got a {x.ndim}-D input of shape {x.shape}")
    if weight.ndim != 4:
        raise ValueError(f"{op}: expected a 4-D weight, got shape {weight.shape}")
    if x.shape[1] != weight_channels:
        raise ValueError(
            f"{op}: the input has {x.shape[1]} channels (shape {x.shape}) but the weight {weight.shape} "
            f"expects {weight_channels} (its axis {in_axis})"
        )
    if bias is not None and bias.shape != (weight.shape[out_axis],):
        raise ValueError(f"{op}: the bias has shape {bias.shape}, expected ({weight.shape[out_axis]},)")


def choose_method(method: str, geometry: ConvGeometry, itemsize: int) -> str:
    """The path a convolution of this geometry takes: ``method`` itself unless it is "auto".

    "auto" takes the shifted path for a stride-1 kernel larger than 1×1 whose im2col columns would
    outgrow IM2COL_BYTES, where they are kh·kw copies of the input, unless the wide output would compute
    more than twice the positions it keeps (tiny outputs with wide padding). Everywhere else im2col is as
    fast or faster: a stride-2 kernel's columns are only kh·kw/4 copies, and a 1×1 kernel's are the
    input itself (measured per layer by benchmarks/bench_conv.py --layers).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method != "auto":
        return method
    (n, c, _, _), (oh, ow) = geometry.x_shape, geometry.out_size
    columns_bytes = c * len(geometry.taps) * oh * ow * n * itemsize
    stride_one = geometry.stride == (1, 1) and geometry.kernel_size != (1, 1)
    return "shifted" if stride_one and columns_bytes > IM2COL_BYTES and geometry.waste <= 2 else "im2col"


def tap_mask(kernel_size, taps):
    """A 0/1 (kh, kw) array with ones at ``taps``: what restricting a kernel to its taps multiplies it by."""
    mask = xp.zeros(kernel_size)
    rows, cols = zip(*taps)
    mask[list(rows), list(cols)] = 1
    return mask


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=(1, 1), padding=(0, 0),
           dilation=(1, 1), taps=None, method: str = "auto") -> Tensor:
    """y = W ⋆ x + b: on the im2col path Y = W₂·im2col(x) + b, as a composition of ops, so that every
    derivative, of any order, follows from theirs; on the shifted path the same sum, by
    :class:`~scratchgen.ops.conv_shifted.ShiftedConv`.

    Args:
        x: (N, C, H, W). weight: (O, C, kh, kw). bias: (O,) or None.
        stride, padding, dilation: (height, width) pairs.
        taps: the kernel positions (i, j) in use, or None for all: the others count as zero (a mask
            constant over channels, as PixelCNN's are), and the shifted path skips their work.
        method: "auto", "im2col" or "shifted" (see :func:`choose_method`).

    Returns:
        (N, O, OH, OW), with (OH, OW) from :func:`conv_output_size`.
    """
    _check_conv("conv2d", x, weight, bias, weight.shape[1], in_axis=1, out_axis=0)
    geometry = (tuple(weight.shape[2:]), stride, padding, dilation)
    try:
        out_size = conv_output_size(x.shape[2:], *geometry)
        shape = ConvGeometry(x.shape, *geometry, out_size, taps=taps)
        method = choose_method(method, shape, x.dtype.itemsize)
    except ValueError as err:
        raise ValueError(f"conv2d: {err}") from err
    if method == "shifted":
        return Crop.apply(ShiftedConv.apply(x, weight, *([] if bias is None else [bias]), geometry=shape),
                          geometry=shape)
    n, o = x.shape[0], weight.shape[0]
    if taps is not None:
        weight = weight * constant(tap_mask(geometry[0], shape.taps).astype(weight.dtype))
    cols = Im2Col.apply(x, kernel_size=geometry[0], stride=stride, padding=padding, dilation=dilation,
                        out_size=out_size)  # (C·kh·kw, OH·OW·N)
    out = weight.reshape(o, -1) @ cols  # (O, OH·OW·N)
    if bias is not None:
        out = out + bias.reshape(o, 1)
    return out.reshape((o,) + out_size + (n,)).transpose(3, 0, 1, 2)


def conv_transpose2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=(1, 1), padding=(0, 0),
                     output_padding=(0, 0), dilation=(1, 1), method: str = "auto") -> Tensor:
    """Y = col2im(W₂ᵀ·X) + b, conv2d's input gradient as a layer: on the im2col path a composition of ops,
    on the shifted path :class:`~scratchgen.ops.conv_shifted.ShiftedConvTranspose`.

    Args:
        x: (N, C_in, H, W). weight: (C_in, C_out, kh, kw), as PyTorch's. bias: (C_out,) or None.
        stride, padding, output_padding, dilation: (height, width) pairs.
        method: "auto", "im2col" or "shifted" (see :func:`choose_method`).

    Returns:
        (N, C_out, OH, OW) with OH = (H-1)·s - 2p + d·(kh-1) + output_padding + 1 (PyTorch's formula).
        X is x as a matrix (C_in, H·W·N), W₂ the weight as (C_in, C_out·kh·kw).
    """
    _check_conv("conv_transpose2d", x, weight, bias, weight.shape[0], in_axis=0, out_axis=1)
    n, c_in, h, w = x.shape
    c_out, kh, kw = weight.shape[1:]
    for op, s, d in zip(output_padding, stride, dilation):
        if not 0 <= op < max(s, d):
            raise ValueError(f"conv_transpose2d: output_padding {tuple(output_padding)} must be smaller than "
                             f"the stride {tuple(stride)} or the dilation {tuple(dilation)}")
    out_size = tuple(
        (size - 1) * s - 2 * p + d * (k - 1) + op + 1
        for size, s, p, d, k, op in zip((h, w), stride, padding, dilation, (kh, kw), output_padding)
    )
    if min(out_size) < 1:
        raise ValueError(f"conv_transpose2d: the output would be {out_size[0]}×{out_size[1]}: padding "
                         f"{tuple(padding)} crops more than the transposed convolution produces")
    # The convolution whose input gradient this is: from the output image (N, C_out, OH, OW) to x's (H, W).
    shape = ConvGeometry((n, c_out) + out_size, (kh, kw), stride, padding, dilation, (h, w))
    if choose_method(method, shape, x.dtype.itemsize) == "shifted":
        return ShiftedConvTranspose.apply(Uncrop.apply(x, geometry=shape), weight,
                                          *([] if bias is None else [bias]), geometry=shape)
    x_matrix = x.transpose(1, 2, 3, 0).reshape(c_in, -1)  # (C_in, H·W·N)
    cols = weight.reshape(c_in, -1).T @ x_matrix  # (C_out·kh·kw, H·W·N)
    out = Col2Im.apply(cols, x_shape=(n, c_out) + out_size, kernel_size=(kh, kw), stride=stride,
                       padding=padding, dilation=dilation, out_size=(h, w))
    if bias is not None:
        out = out + bias.reshape(1, c_out, 1, 1)
    return out

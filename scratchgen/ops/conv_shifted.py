"""Convolution as a sum of shifted matrix products: the fast path behind :func:`scratchgen.ops.conv.conv2d`.

im2col (:mod:`scratchgen.ops.conv`) copies every window of the input into a column and multiplies once.
For a 3×3 kernel the columns are nine copies of the input, gathered a few numbers at a time, and moving
them through memory costs more than the product itself. This module computes the same convolution from
long contiguous runs of the input, a few thousand columns at a time, so that what it copies stays in
the processor's cache.

**The frame.** Lay the padded input out as (C, Hf, Wf, N) in memory (batch last, as im2col's frames are)
and read each channel as one row of Hf·Wf·N numbers: pixel (y, x) of image n is number (y·Wf + x)·N + n
of its channel's row. With stride 1, tap (i, j) of output pixel (oh, ow) reads pixel (oh + d·i, ow + d·j),
number

    ((oh + d·i)·Wf + ow + d·j)·N + n  =  q + off_ij,   with q = (oh·Wf + ow)·N + n,  off_ij = (d·i·Wf + d·j)·N.

Every output position q reads its tap (i, j) at the same offset off_ij, so for all outputs at once

    Y[:, q] = Σ_ij W_ij · F[:, q + off_ij]          (W_ij = W[:, :, i, j], an O×C matrix)

where F[:, q + off_ij], over a range of q, is one contiguous slice of every channel's row. The output is
computed on the frame's width ("wide", ow up to Wf rather than OW); the extra columns read across the end
of a row and are cropped away by a view. Stacking the kh·kw shifted slices gives exactly im2col's columns
for those outputs (rows c, i, j), so a chunk of columns is Y[:, chunk] = W₂ · cols(chunk), one product.

**Stride.** Split the padded image into s_h×s_w *phases* (space to depth): phase (a, b) holds the pixels
(s_h·y + a, s_w·x + b). Tap (i, j) of output (oh, ow) reads padded pixel (s·oh + d·i, s·ow + d·j), which is
pixel (oh + ⌊d·i/s⌋, ow + ⌊d·j/s⌋) of phase (d·i mod s, d·j mod s): a stride-1 read of one phase. The
frame holds the phases side by side, (s_h, s_w, C, Hf, Wf, N), and each tap is a shift within its phase.

**Three faces of one form.** For G of the output's shape,

    T(G, x, W) = Σ G[n, o, oh, ow] · W[o, c, i, j] · x_pad[n, c, s·oh + d·i, s·ow + d·j]

is linear in each of G, x and W, and each op of this module is T's gradient with respect to one of them:

* :class:`ShiftedConv`, ∂T/∂G: the convolution, Y[:, chunk] = W₂ · cols(chunk), chunk by chunk;
* :class:`ShiftedConvTranspose`, ∂T/∂x: conv2d's input gradient, and the transposed convolution layer.
  Pixel p of phase (a, b) receives W_tᵀ · G[:, p − off_t] from every tap t of that phase: the same sum
  of shifted products, read at negative offsets, so it gathers its columns from G exactly as the
  convolution gathers them from the frame (no scattered adds);
* :class:`ShiftedConvWeight`, ∂T/∂W: conv2d's weight gradient, Σ_q G[:, q] · F[:, q + off_t]ᵀ for each
  tap t, a product of two slices of arrays that already exist.

The gradient of each face is the other two faces, so each op's backward is two calls of the others, and
derivatives of any order run these three loops and nothing else. The ops take and give the output in
its wide form, (O, OH·Wf·N); :class:`Crop` and :class:`Uncrop` convert, each the other's gradient.

**Taps.** ``taps`` restricts the kernel to some of its positions: the others count as zero and receive
zero gradient, exactly as a 0/1 mask that is constant over channels would make them. A PixelCNN's type-B
3×3 kernel uses 5 of its 9 taps, and the products skip the other 4/9 of the work.
"""


from __future__ import annotations

import math
import threading

from scratchgen import backend
from scratchgen.autograd import Function
from scratchgen.backend import xp

__all__ = ["ConvGeometry", "ShiftedConv", "ShiftedConvTranspose", "ShiftedConvWeight", "Crop", "Uncrop",
           "CHUNK_BYTES", "SMALL_PRODUCT"]

#: Bytes of columns built at a time. A chunk of 4 MB stays in this generation's caches (1-2 MB of L2 per
#: core, tens of MB of L3)...
CHUNK_BYTES = 4 * 2**20
#: ...but never fewer columns than this: a matrix product much narrower than a few thousand columns
#: spends more on starting its threads and packing its operands than on arithmetic.
MIN_CHUNK_COLUMNS = 4096


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


#: A matrix product of at most this many multiply-adds is a "small" one to OpenBLAS (0.3.x, x86-64), which
#: multiplies it without first copying its operands into packed blocks. For the weight gradient's thin
#: products, (O × K)·(K × C) with O·C of a few hundred, that is about twice as fast per multiply-add as one
#: long product (measured on this project's 2-core VM, one thread: 16×16, 16×32 and 32×32 outputs).
SMALL_PRODUCT = 10**6
#: ...as long as the columns it allows are not so few that each product's call costs more than it saves.
MIN_SMALL_COLUMNS = 512


def chunks(total: int, rows: int, itemsize: int, columns: int | None = None):
    """(start, stop) ranges covering 0..total columns, each of CHUNK_BYTES of ``rows`` rows of
    ``itemsize``-byte numbers (or MIN_CHUNK_COLUMNS columns), or of ``columns`` columns if given; one range
    on a GPU, whose memory is fast and whose every call costs a launch."""
    if backend.get_backend() == "cupy":
        return [(0, total)]
    step = columns or max(MIN_CHUNK_COLUMNS, CHUNK_BYTES // (itemsize * rows))
    return [(start, min(start + step, total)) for start in range(0, total, step)]


def small_product_columns(rows: int, cols: int) -> int | None:
    """K such that (rows × K)·(K × cols) is a small product (SMALL_PRODUCT multiply-adds), or None where
    that K would be under MIN_SMALL_COLUMNS."""
    columns = SMALL_PRODUCT // (rows * cols)
    return columns if columns >= MIN_SMALL_COLUMNS else None


_scratch = threading.local()


def scratch(name: str, shape, dtype):
    """An uninitialised array of ``shape`` for work that never leaves an op (a frame, a chunk's columns),
    reusing the memory of the last call with the same ``name``.

    A fresh array of a few MB costs a page fault per 4 KB the first time it is written, which on some
    machines takes longer than filling it. On a GPU, CuPy's memory pool already reuses memory.
    """
    size = math.prod(shape)
    if backend.get_backend() == "cupy":
        return xp.empty(shape, dtype=dtype)
    buffers = _scratch.__dict__.setdefault("buffers", {})
    key = (name, xp.dtype(dtype).str)
    if key not in buffers or buffers[key].size < size:
        buffers[key] = xp.empty(size, dtype=dtype)
    return buffers[key][:size].reshape(shape)


def product_into(a, b, out) -> None:
    """out[...] = a @ b, written straight into ``out`` (a block of columns of a larger array) where the
    backend's matmul can (NumPy's can; CuPy's wants a contiguous ``out``, so it gets a copy)."""
    if backend.get_backend() == "cupy":
        out[...] = a @ b
    else:
        xp.matmul(a, b, out=out)


def gather(sources, offsets, start: int, stop: int, buffer):
    """Columns (R·T, stop - start): row (r, t) is ``sources[t][r, start + offsets[t] : stop + offsets[t]]``,
    zero where that runs off either end of the source. One contiguous copy per t, written into ``buffer``."""
    rows, taps, width = sources[0].shape[0], len(sources), stop - start
    cols = buffer[: rows * taps * width].reshape(rows, taps, width)
    for t, (source, offset) in enumerate(zip(sources, offsets)):
        lo, hi = max(start + offset, 0), min(stop + offset, source.shape[1])
        if lo >= hi:
            cols[:, t] = 0
            continue
        cols[:, t, lo - start - offset : hi - start - offset] = source[:, lo:hi]
        cols[:, t, : lo - start - offset] = 0
        cols[:, t, hi - start - offset :] = 0
    return cols.reshape(rows * taps, width)


class ConvGeometry:
    """Where every tap of one convolution reads in the frame, shared by the ops of that convolution.

    Args:
        x_shape: (N, C, H, W) of the unpadded input image.
        kernel_size, stride, padding, dilation: (height, width) pairs.
        out_size: (OH, OW), the window positions per axis (a transposed convolution may ask for fewer than
            :func:`~scratchgen.ops.conv.conv_output_size` gives).
        taps: the kernel positions (i, j) in use, all kh·kw of them by default.
    """

    def __init__(self, x_shape, kernel_size, stride, padding, dilation, out_size, taps=None):
        self.x_shape, self.kernel_size, self.out_size = tuple(x_shape), tuple(kernel_size), tuple(out_size)
        self.stride, self.padding, self.dilation = tuple(stride), tuple(padding), tuple(dilation)
        (n, _, h, w), (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = (
            self.x_shape, self.kernel_size, self.stride, self.padding, self.dilation, self.out_size)
        if taps is None:
            taps = [(i, j) for i in range(kh) for j in range(kw)]
        self.taps = tuple((int(i), int(j)) for i, j in taps)
        if not self.taps or not all(0 <= i < kh and 0 <= j < kw for i, j in self.taps):
            raise ValueError(f"taps {self.taps} must be a non-empty list of positions in the {kh}×{kw} kernel")
        # Each tap reads phase (d·i mod s, d·j mod s) at row and column shift (⌊d·i/s⌋, ⌊d·j/s⌋).
        self.phases = [((dh * i) % sh, (dw * j) % sw) for i, j in self.taps]
        self.shifts = shifts = [((dh * i) // sh, (dw * j) // sw) for i, j in self.taps]
        reach_h, reach_w = max(r for r, _ in shifts), max(col for _, col in shifts)
        # The frame holds every padded pixel, and room for the wide reads of the last output row: they run
        # reach_w numbers past that row's end, into one more row.
        self.frame_width = max(_ceil_div(w + 2 * pw, sw), ow + reach_w)
        self.frame_height = max(_ceil_div(h + 2 * ph, sh), oh + reach_h + (reach_w > 0))
        self.offsets = [(r * self.frame_width + col) * n for r, col in shifts]
        self.wide = oh * self.frame_width * n  # output positions computed: OH rows of Wf, OW of each kept

    @property
    def waste(self) -> float:
        """Output positions computed per position kept: Wf / OW, the price of the wide output."""
        return self.frame_width / self.out_size[1]

    # ------------------------------------------------------------------ the frame and its inverse

    def phase_slices(self):
        """For each phase (a, b) that holds pixels of the image: its (rows, columns) in the frame, and the
        image's (rows, columns) that they hold."""
        (_, _, h, w), (sh, sw), (ph, pw) = self.x_shape, self.stride, self.padding
        for a in range(sh):
            for b in range(sw):
                # Padded row r = s·y + a holds image row r - p; the first inside the image is at y = y0.
                y0, x0 = max(0, _ceil_div(ph - a, sh)), max(0, _ceil_div(pw - b, sw))
                rows, cols = range(sh * y0 + a - ph, h, sh), range(sw * x0 + b - pw, w, sw)
                if len(rows) and len(cols):
                    frame_part = (slice(y0, y0 + len(rows)), slice(x0, x0 + len(cols)))
                    image_part = (slice(rows.start, None, sh), slice(cols.start, None, sw))
                    yield (a, b), frame_part, image_part

    def frame(self, x, reuse: bool = False, fill: float = 0.0):
        """The padded image x (N, C, H, W) as phases (s_h, s_w, C, Hf, Wf, N), ``fill`` around it; in
        :func:`scratch` memory if ``reuse`` (for a frame that the op using it does not return)."""
        n, c = self.x_shape[:2]
        shape = self.stride + (c, self.frame_height, self.frame_width, n)
        if reuse:
            frame = scratch("frame", shape, x.dtype)
            frame[...] = fill
        else:
            frame = xp.full(shape, fill, dtype=x.dtype)
        image = x.transpose(1, 2, 3, 0)  # (C, H, W, N)
        for (a, b), (fy, fx), (iy, ix) in self.phase_slices():
            frame[a, b, :, fy, fx] = image[:, iy, ix]
        return frame

    def unframe(self, frame):
        """The image (N, C, H, W) inside a frame: :meth:`frame`'s inverse on the pixels, dropping padding.
        With stride 1 the frame is the padded image itself, and this is a view of it."""
        n, c, h, w = self.x_shape
        if self.stride == (1, 1):
            (ph, pw) = self.padding
            return frame[0, 0, :, ph : ph + h, pw : pw + w].transpose(3, 0, 1, 2)
        image = xp.empty((c, h, w, n), dtype=frame.dtype)
        for (a, b), (fy, fx), (iy, ix) in self.phase_slices():
            image[:, iy, ix] = frame[a, b, :, fy, fx]
        return image.transpose(3, 0, 1, 2)

    def rows(self, frame):
        """Each tap's phase of the frame as (C, Hf·Wf·N), a view: its channels' rows of numbers."""
        return [frame[a, b].reshape(self.x_shape[1], -1) for a, b in self.phases]

    def weight_matrix(self, weight, taps=None):
        """(O, C, T): the weight at the taps in use (or at ``taps``, indices into them)."""
        positions = self.taps if taps is None else [self.taps[t] for t in taps]
        rows, cols = zip(*positions)
        return weight[:, :, list(rows), list(cols)]


class ShiftedConv(Function):
    """Y = conv2d(x, W) + b in wide form (O, OH·Wf·N) = ∂T/∂G (+ b): for each chunk of output positions,
    Y[:, chunk] = W₂ · cols(chunk), where row (c, t) of cols is channel c of the frame shifted by off_t.

    Its input gradient is :class:`ShiftedConvTranspose`, its weight gradient :class:`ShiftedConvWeight`,
    its bias gradient the sum of the output gradient over positions. (The bias is added here, in place,
    rather than by an op of its own, which would keep one more output-sized array until the backward.)
    """

    saved_inputs = (0, 1)
    saves_output = False

    def forward(self, x, weight, bias=None, *, geometry):
        self.geometry = g = geometry
        rows, (c, taps) = g.rows(g.frame(x, reuse=True)), (x.shape[1], len(g.taps))
        matrix = g.weight_matrix(weight).reshape(weight.shape[0], c * taps)  # W₂, columns (c, t)
        wide = xp.empty((weight.shape[0], g.wide), dtype=x.dtype)
        parts = chunks(g.wide, c * taps, x.dtype.itemsize)
        buffer = scratch("columns", (c * taps * max(stop - start for start, stop in parts),), x.dtype)
        for start, stop in parts:
            product_into(matrix, gather(rows, g.offsets, start, stop, buffer), wide[:, start:stop])
        if bias is not None:
            wide += bias[:, None]
        return wide

    def backward(self, grad):
        (x, weight, *bias), g = self.inputs, self.geometry
        grad_x = ShiftedConvTranspose.apply(grad, weight, geometry=g) if self.needs_input_grad[0] else None
        grad_w = ShiftedConvWeight.apply(x, grad, geometry=g) if self.needs_input_grad[1] else None
        if not bias:
            return grad_x, grad_w
        return grad_x, grad_w, (grad.sum(axis=1) if self.needs_input_grad[2] else None)


class ShiftedConvTranspose(Function):
    """x = conv2d's input gradient for a wide output gradient G (O, OH·Wf·N) = ∂T/∂x (+ b), an image of
    the geometry's ``x_shape``: pixel p of phase (a, b) is Σ_t W_tᵀ · G[:, p − off_t] over that phase's
    taps, a product of W₂ᵀ with columns gathered from G at negative offsets. Also the transposed
    convolution, whose bias b (C,) is added in place.
    """

    saved_inputs = (0, 1)
    saves_output = False

    def forward(self, grad_y, weight, bias=None, *, geometry):
        self.geometry = g = geometry
        n, c = g.x_shape[:2]
        o = grad_y.shape[0]
        # Only the frame's pixels are read back (unframe), and every one of them is computed below.
        frame = xp.empty(g.stride + (c, g.frame_height, g.frame_width, n), dtype=grad_y.dtype)
        row_length = g.frame_width * n
        for (a, b), (fy, _), _ in g.phase_slices():
            taps = [t for t, phase in enumerate(g.phases) if phase == (a, b)]
            if not taps:  # no tap reads these pixels: their gradient is zero
                frame[a, b] = 0
                continue
            matrix_t = g.weight_matrix(weight, taps).transpose(1, 0, 2).reshape(c, o * len(taps))  # (C, O·T)
            target = frame[a, b].reshape(c, -1)
            sources, offsets = [grad_y] * len(taps), [-g.offsets[t] for t in taps]
            # Only the frame's rows that hold pixels of the image are computed; the rest is padding.
            parts = chunks((fy.stop - fy.start) * row_length, o * len(taps), grad_y.dtype.itemsize)
            buffer = scratch("columns", (o * len(taps) * max(stop - start for start, stop in parts),), grad_y.dtype)
            first = fy.start * row_length
            for start, stop in parts:
                cols = gather(sources, offsets, first + start, first + stop, buffer)
                product_into(matrix_t, cols, target[:, first + start : first + stop])
        image = g.unframe(frame)
        if bias is not None:
            image += bias[:, None, None]
        return image

    def backward(self, grad):
        (grad_y, weight, *bias), g = self.inputs, self.geometry
        grad_g = ShiftedConv.apply(grad, weight, geometry=g) if self.needs_input_grad[0] else None
        grad_w = ShiftedConvWeight.apply(grad, grad_y, geometry=g) if self.needs_input_grad[1] else None
        if not bias:
            return grad_g, grad_w
        return grad_g, grad_w, (grad.sum(axis=(0, 2, 3)) if self.needs_input_grad[2] else None)


class ShiftedConvWeight(Function):
    """W = conv2d's weight gradient for input x and wide output gradient G = ∂T/∂W: for each tap t,
    W[:, :, i_t, j_t] = Σ_q G[:, q] · F[:, q + off_t]ᵀ, chunk by chunk, each a product of two slices of
    arrays that exist already (no columns are built). Zero at the taps not in use.
    """

    saved_inputs = (0, 1)
    saves_output = False

    def forward(self, x, grad_y, *, geometry):
        self.geometry = g = geometry
        rows, (o, c) = g.rows(g.frame(x, reuse=True)), (grad_y.shape[0], x.shape[1])
        per_tap = xp.zeros((len(g.taps), o, c), dtype=x.dtype)
        columns = small_product_columns(o, c)
        for start, stop in chunks(g.wide, o + c * len(g.taps), x.dtype.itemsize, columns):
            block = grad_y[:, start:stop]
            for t, (phase_rows, offset) in enumerate(zip(rows, g.offsets)):
                per_tap[t] += block @ phase_rows[:, offset + start : offset + stop].T
        weight = xp.zeros((o, c) + g.kernel_size, dtype=x.dtype)
        i, j = zip(*g.taps)
        weight[:, :, list(i), list(j)] = per_tap.transpose(1, 2, 0)
        return weight

    def backward(self, grad):
        (x, grad_y), g = self.inputs, self.geometry
        grad_x = ShiftedConvTranspose.apply(grad_y, grad, geometry=g) if self.needs_input_grad[0] else None
        grad_g = ShiftedConv.apply(x, grad, geometry=g) if self.needs_input_grad[1] else None
        return grad_x, grad_g


class Crop(Function):
    """The wide output (O, OH·Wf·N) as the convolution's (N, O, OH, OW): a view, dropping the columns
    ow ≥ OW. Its gradient is :class:`Uncrop`."""

    saved_inputs = ()
    saves_output = False

    def forward(self, wide, geometry):
        self.geometry = g = geometry
        (n, _, _, _), (oh, ow) = g.x_shape, g.out_size
        return wide.reshape(-1, oh, g.frame_width, n)[:, :, :ow].transpose(3, 0, 1, 2)

    def backward(self, grad):
        return Uncrop.apply(grad, geometry=self.geometry)


class Uncrop(Function):
    """An output-shaped y (N, O, OH, OW) in wide form (O, OH·Wf·N), zeros in the extra columns: the
    adjoint of :class:`Crop`, and its gradient."""

    saved_inputs = ()
    saves_output = False

    def forward(self, y, geometry):
        self.geometry = g = geometry
        (n, _, _, _), (oh, ow) = g.x_shape, g.out_size
        wide = xp.zeros((y.shape[1], oh, g.frame_width, n), dtype=y.dtype)
        wide[:, :, :ow] = y.transpose(1, 2, 3, 0)
        return wide.reshape(y.shape[1], -1)

    def backward(self, grad):
        return Crop.apply(grad, geometry=self.geometry)

"""The shifted-product path of the convolutions (scratchgen.ops.conv_shifted) and the choice between paths.

Every case of tests/test_conv.py runs again on the shifted path, forward against the same plain-NumPy
loops and backward by gradcheck and gradgradcheck in float64, with the columns built in chunks so small
that every case crosses several chunk boundaries. Then: the two paths agree; restricting a kernel to its
taps is the same as masking it; "auto" picks by shape; a col2im that assigns instead of adding is caught.
"""

import numpy as np
import pytest
from conftest import host, t64
from test_conv import CONV_CASES, TRANSPOSED_CASES, reference_conv2d, reference_conv_transpose2d

import scratchgen as sg
from scratchgen.ops import conv, conv_shifted

# Cases beyond test_conv's: 1×1, a 7×7 with "same" padding, batch 1 on a wide image, and stride 3 > kernel.
EXTRA_CASES = [
    (3, 4, 5, 6, 2, (1, 1), (1, 1), (0, 0), (1, 1)),
    (2, 1, 8, 7, 2, (7, 7), (1, 1), (3, 3), (1, 1)),
    (1, 2, 4, 11, 2, (3, 3), (1, 2), (1, 1), (1, 1)),
    (2, 2, 10, 9, 2, (2, 2), (3, 3), (1, 0), (1, 1)),
]


@pytest.fixture(autouse=True)
def tiny_chunks(monkeypatch):
    """Columns 7 at a time: each case below then runs through many chunks and a ragged last one."""
    monkeypatch.setattr(conv_shifted, "CHUNK_BYTES", 1)
    monkeypatch.setattr(conv_shifted, "MIN_CHUNK_COLUMNS", 7)
    monkeypatch.setattr(conv_shifted, "SMALL_PRODUCT", 0)  # the weight gradient's chunks too


@pytest.mark.parametrize("case", CONV_CASES + EXTRA_CASES)
def test_shifted_conv2d_forward_matches_the_loops(case, rng):
    n, c, h, w, o, k, s, p, d = case
    x, weight, bias = rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c) + k), rng.standard_normal(o)
    out = conv.conv2d(sg.tensor(x), sg.tensor(weight), sg.tensor(bias), s, p, d, method="shifted")
    np.testing.assert_allclose(out.numpy(), reference_conv2d(x, weight, bias, s, p, d), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", CONV_CASES + EXTRA_CASES)
def test_shifted_conv2d_gradients_to_second_order(case, rng):
    n, c, h, w, o, k, s, p, d = case
    x, weight, bias = (t64(rng.standard_normal(shape)) for shape in ((n, c, h, w), (o, c) + k, (o,)))

    def f(x, w, b):
        return conv.conv2d(x, w, b, s, p, d, method="shifted")

    assert sg.gradcheck(f, [x, weight, bias])
    assert sg.gradgradcheck(f, [x, weight, bias])


@pytest.mark.parametrize("case", TRANSPOSED_CASES)
def test_shifted_conv_transpose2d_forward_and_gradients(case, rng):
    n, c, h, w, o, k, s, p, op, d = case
    x, weight, bias = rng.standard_normal((n, c, h, w)), rng.standard_normal((c, o) + k), rng.standard_normal(o)
    out = conv.conv_transpose2d(sg.tensor(x), sg.tensor(weight), sg.tensor(bias), s, p, op, d, method="shifted")
    np.testing.assert_allclose(out.numpy(), reference_conv_transpose2d(x, weight, bias, s, p, op, d),
                               rtol=1e-10, atol=1e-12)

    def f(x, w, b):
        return conv.conv_transpose2d(x, w, b, s, p, op, d, method="shifted")

    args = [t64(x), t64(weight), t64(bias)]
    assert sg.gradcheck(f, args)
    assert sg.gradgradcheck(f, args)


def test_the_two_paths_agree_in_float32_on_a_pixelcnn_layer(rng):
    """Forward and both gradients of a 3×3 "same" conv over 32 channels, batch 8, default chunk sizes: the
    weight gradient's products then take 976 of the 6,720 columns at a time, the last chunk ragged."""
    # The real sizes, restored after by the fixture.
    conv_shifted.CHUNK_BYTES, conv_shifted.MIN_CHUNK_COLUMNS, conv_shifted.SMALL_PRODUCT = 4 * 2**20, 4096, 10**6
    assert conv_shifted.small_product_columns(32, 32) == 976
    x = rng.standard_normal((8, 32, 28, 28)).astype(np.float32)
    w = (rng.standard_normal((32, 32, 3, 3)) / 17).astype(np.float32)
    results = {}
    for method in ("im2col", "shifted"):
        xt, wt = sg.tensor(x, requires_grad=True), sg.tensor(w, requires_grad=True)
        y = conv.conv2d(xt, wt, None, (1, 1), (1, 1), (1, 1), method=method)
        (y * y).sum().backward()
        results[method] = (y.numpy(), host(xt.grad), host(wt.grad))
    for ours, reference in zip(results["shifted"], results["im2col"]):
        assert ours.dtype == np.float32
        np.testing.assert_allclose(ours, reference, rtol=2e-4, atol=2e-4 * np.abs(reference).max())


def test_small_products_only_where_they_leave_enough_columns(monkeypatch):
    monkeypatch.setattr(conv_shifted, "SMALL_PRODUCT", 10**6)
    assert conv_shifted.small_product_columns(16, 32) == 1953
    assert 16 * 32 * 1953 <= 10**6 < 16 * 32 * 1954
    assert conv_shifted.small_product_columns(64, 64) is None  # 244 columns: below MIN_SMALL_COLUMNS


@pytest.mark.parametrize("method", ["im2col", "shifted"])
def test_a_kernel_restricted_to_taps_is_the_kernel_masked(method, rng):
    """taps = PixelCNN's type-B positions gives conv2d(x, W ⊙ M), and zero gradient where M is zero."""
    x, w = t64(rng.standard_normal((2, 3, 6, 5))), t64(rng.standard_normal((4, 3, 3, 3)))
    taps = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    mask = np.zeros((3, 3))
    mask[tuple(zip(*taps))] = 1
    out = conv.conv2d(x, w, None, (1, 1), (1, 1), (1, 1), taps=taps, method=method)
    expected = reference_conv2d(x.numpy(), w.numpy() * mask, None, (1, 1), (1, 1), (1, 1))
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-12)
    out.sum().backward()
    assert np.all(host(w.grad)[:, :, mask == 0] == 0) and np.all(host(w.grad)[:, :, mask == 1] != 0)
    assert sg.gradgradcheck(lambda x, w: conv.conv2d(x, w, None, (1, 1), (1, 1), (1, 1), taps=taps, method=method),
                            [x, w])


def test_auto_takes_im2col_for_small_layers_and_the_shifted_path_for_large_ones():
    def choice(x_shape, kernel, padding=(1, 1), stride=(1, 1)):
        out = conv.conv_output_size(x_shape[2:], kernel, stride, padding, (1, 1))
        geometry = conv_shifted.ConvGeometry(x_shape, kernel, stride, padding, (1, 1), out)
        return conv.choose_method("auto", geometry, itemsize=4)

    assert choice((2, 3, 8, 8), (3, 3)) == "im2col"  # 3·9·64·2·4 bytes of columns: in cache
    assert choice((64, 32, 28, 28), (3, 3)) == "shifted"  # 58 MB of columns
    # A 7×7 kernel over 8×8 maps leaves 2 of every 8 wide positions: im2col, whatever its size (3 MB).
    assert choice((64, 64, 8, 8), (7, 7), padding=(0, 0)) == "im2col"
    # Strided and 1×1 convolutions make few copies of their input: im2col.
    assert choice((64, 32, 28, 28), (3, 3), stride=(2, 2)) == "im2col"
    assert choice((64, 32, 28, 28), (1, 1), padding=(0, 0)) == "im2col"
    with pytest.raises(ValueError, match=r"method must be one of \('auto', 'im2col', 'shifted'\), got 'fast'"):
        conv.conv2d(sg.tensor(np.ones((1, 1, 3, 3))), sg.tensor(np.ones((1, 1, 2, 2))), method="fast")


def test_gradcheck_catches_a_transposed_convolution_that_forgets_to_flip_the_kernel(monkeypatch, rng):
    """The classic bug of a transposed convolution: reading G at +off_t (the kernel as it is) instead of
    at −off_t (the kernel flipped). The forward is untouched; the gradient check must catch the backward."""
    gather = conv_shifted.gather

    def gather_unflipped(sources, offsets, start, stop, buffer):
        return gather(sources, [abs(offset) for offset in offsets], start, stop, buffer)  # the bug

    monkeypatch.setattr(conv_shifted, "gather", gather_unflipped)
    x, w = t64(rng.standard_normal((1, 2, 5, 5))), t64(rng.standard_normal((2, 2, 3, 3)))
    with pytest.raises(sg.GradcheckError, match="input 0"):
        sg.gradcheck(lambda x, w: conv.conv2d(x, w, padding=(1, 1), method="shifted"), [x, w])

"""Tests of scratchgen.ops.conv and the Conv2d / ConvTranspose2d layers of scratchgen.nn.conv.

The forward passes are compared with the definition written as plain loops over tiny shapes; the
backward passes with finite differences (gradcheck, float64); im2col and col2im with each other (they
are adjoint); the shapes with PyTorch's formulas; the layers' initialisation with PyTorch's bounds.
"""

import math

import numpy as np
import pytest
from conftest import host, t64

import scratchgen as sg
from scratchgen import nn
from scratchgen.nn import functional as F
from scratchgen.ops.conv import col2im, conv_output_size, im2col


def reference_conv2d(x, w, b, stride, padding, dilation):
    """y[n, o, oh, ow] = b[o] + Σ_{c,i,j} w[o, c, i, j]·x_pad[n, c, s·oh + d·i, s·ow + d·j], by loops."""
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (wd + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    y = np.zeros((n, o, oh, ow))
    for a in range(oh):
        for bb in range(ow):
            for i in range(kh):
                for j in range(kw):
                    patch = xp[:, :, sh * a + dh * i, sw * bb + dw * j]  # (N, C)
                    y[:, :, a, bb] += patch @ w[:, :, i, j].T
    return y + (0 if b is None else b[None, :, None, None])


def reference_conv_transpose2d(x, w, b, stride, padding, output_padding, dilation):
    """Each input pixel scatters w[c, :, i, j]·x[n, c, h, w] to (s·h + d·i, s·w + d·j), then p is cropped."""
    (sh, sw), (ph, pw), (oph, opw), (dh, dw) = stride, padding, output_padding, dilation
    n, c, h, wd = x.shape
    _, o, kh, kw = w.shape
    oh = (h - 1) * sh - 2 * ph + dh * (kh - 1) + oph + 1
    ow = (wd - 1) * sw - 2 * pw + dw * (kw - 1) + opw + 1
    full = np.zeros((n, o, oh + 2 * ph, ow + 2 * pw))
    for a in range(h):
        for bb in range(wd):
            for i in range(kh):
                for j in range(kw):
                    full[:, :, sh * a + dh * i, sw * bb + dw * j] += x[:, :, a, bb] @ w[:, :, i, j]
    y = full[:, :, ph:ph + oh, pw:pw + ow]
    return y + (0 if b is None else b[None, :, None, None])


# (N, C_in, H, W, C_out, kernel, stride, padding, dilation): square and not, stride 2, dilation, batch 1
CONV_CASES = [
    (2, 3, 7, 9, 4, (3, 2), (2, 1), (1, 0), (1, 2)),
    (1, 2, 5, 5, 3, (3, 3), (1, 1), (1, 1), (1, 1)),
    (2, 2, 8, 6, 3, (4, 4), (2, 2), (1, 1), (1, 1)),
    (1, 1, 6, 7, 2, (2, 3), (3, 2), (0, 1), (2, 1)),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_forward_matches_the_loops(case, rng):
    n, c, h, w, o, k, s, p, d = case
    x, weight, bias = rng.standard_normal((n, c, h, w)), rng.standard_normal((o, c) + k), rng.standard_normal(o)
    out = F.conv2d(sg.tensor(x), sg.tensor(weight), sg.tensor(bias), s, p, d)
    np.testing.assert_allclose(out.numpy(), reference_conv2d(x, weight, bias, s, p, d), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_gradients(case, rng):
    n, c, h, w, o, k, s, p, d = case
    x, weight, bias = (t64(rng.standard_normal(shape)) for shape in ((n, c, h, w), (o, c) + k, (o,)))
    assert sg.gradcheck(lambda x, w, b: F.conv2d(x, w, b, s, p, d), [x, weight, bias])
    assert sg.gradgradcheck(lambda x, w, b: F.conv2d(x, w, b, s, p, d), [x, weight, bias])
    assert sg.gradcheck(lambda x, w: F.conv2d(x, w, None, s, p, d), [x, weight])
    assert sg.gradgradcheck(lambda x, w: F.conv2d(x, w, None, s, p, d), [x, weight])


# (N, C_in, H, W, C_out, kernel, stride, padding, output_padding, dilation)
TRANSPOSED_CASES = [
    (2, 3, 3, 4, 2, (3, 2), (2, 1), (1, 0), (1, 0), (1, 2)),
    (1, 2, 4, 4, 3, (4, 4), (2, 2), (1, 1), (0, 0), (1, 1)),
    (2, 2, 3, 2, 1, (2, 3), (3, 2), (0, 1), (2, 1), (1, 1)),
    (1, 1, 3, 3, 2, (3, 3), (1, 1), (0, 0), (1, 1), (2, 2)),  # output_padding ≥ stride, allowed by dilation
]


@pytest.mark.parametrize("case", TRANSPOSED_CASES)
def test_conv_transpose2d_forward_matches_the_loops(case, rng):
    n, c, h, w, o, k, s, p, op, d = case
    x, weight, bias = rng.standard_normal((n, c, h, w)), rng.standard_normal((c, o) + k), rng.standard_normal(o)
    out = F.conv_transpose2d(sg.tensor(x), sg.tensor(weight), sg.tensor(bias), s, p, op, d)
    expected = reference_conv_transpose2d(x, weight, bias, s, p, op, d)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case", TRANSPOSED_CASES)
def test_conv_transpose2d_gradients(case, rng):
    n, c, h, w, o, k, s, p, op, d = case
    x, weight, bias = (t64(rng.standard_normal(shape)) for shape in ((n, c, h, w), (c, o) + k, (o,)))
    assert sg.gradcheck(lambda x, w, b: F.conv_transpose2d(x, w, b, s, p, op, d), [x, weight, bias])
    assert sg.gradgradcheck(lambda x, w, b: F.conv_transpose2d(x, w, b, s, p, op, d), [x, weight, bias])
    assert sg.gradcheck(lambda x, w: F.conv_transpose2d(x, w, None, s, p, op, d), [x, weight])
    assert sg.gradgradcheck(lambda x, w: F.conv_transpose2d(x, w, None, s, p, op, d), [x, weight])


def test_conv_transpose2d_is_the_input_gradient_of_conv2d(rng):
    """For the same weight, ⟨conv2d(x), y⟩ = ⟨x, conv_transpose2d(y)⟩: the two are adjoint linear maps."""
    weight = rng.standard_normal((3, 2, 4, 3))  # conv2d: 2 -> 3 channels; transposed: 3 -> 2
    x = rng.standard_normal((2, 2, 9, 8))
    y = rng.standard_normal((2, 3, 4, 4))
    forward = F.conv2d(sg.tensor(x), sg.tensor(weight), stride=2, padding=1).numpy()
    backward = F.conv_transpose2d(sg.tensor(y), sg.tensor(weight), stride=2, padding=1, output_padding=1).numpy()
    assert forward.shape == y.shape and backward.shape == x.shape
    np.testing.assert_allclose((forward * y).sum(), (x * backward).sum(), rtol=1e-10)


def test_im2col_and_col2im_are_adjoint(rng):
    """⟨im2col(x), C⟩ = ⟨x, col2im(C)⟩ for every x and C, which is what makes col2im im2col's gradient."""
    geometry = ((3, 2), (2, 1), (1, 2), (2, 1))  # kernel, stride, padding, dilation
    x = sg.backend.asarray(rng.standard_normal((2, 3, 7, 6)))  # im2col and col2im work on the backend's arrays
    out_size = conv_output_size(x.shape[2:], *geometry)
    cols = im2col(x, *geometry, out_size)
    assert cols.shape == (3 * 3 * 2, out_size[0] * out_size[1] * 2)
    other = sg.backend.asarray(rng.standard_normal(cols.shape))
    back = col2im(other, x.shape, *geometry, out_size)
    np.testing.assert_allclose(host((cols * other).sum()), host((x * back).sum()), rtol=1e-10)


@pytest.mark.parametrize("size, kernel, stride, padding, dilation", [
    ((28, 28), (3, 3), (1, 1), (1, 1), (1, 1)),
    ((28, 28), (4, 4), (2, 2), (1, 1), (1, 1)),
    ((15, 9), (5, 2), (3, 2), (2, 0), (1, 3)),
    ((7, 7), (7, 7), (1, 1), (0, 0), (1, 1)),
    ((10, 11), (3, 3), (4, 5), (0, 2), (2, 2)),
])
def test_output_shapes_follow_pytorchs_formulas(size, kernel, stride, padding, dilation, rng):
    x = sg.tensor(rng.standard_normal((2, 3) + size).astype(np.float32))
    layer = nn.Conv2d(3, 5, kernel, stride, padding, dilation)
    out = layer(x)
    expected = tuple((n + 2 * p - d * (k - 1) - 1) // s + 1
                     for n, k, s, p, d in zip(size, kernel, stride, padding, dilation))
    assert out.shape == (2, 5) + expected
    transposed = nn.ConvTranspose2d(5, 3, kernel, stride, padding, output_padding=(stride[0] - 1, 0), dilation=dilation)
    back = transposed(out)
    expected_back = tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, k, s, p, d, op
                          in zip(expected, kernel, stride, padding, dilation, (stride[0] - 1, 0)))
    assert back.shape == (2, 3) + expected_back


def test_layers_gradcheck_through_their_parameters(rng):
    conv = nn.Conv2d(2, 3, (3, 2), stride=2, padding=(1, 0), dilation=(1, 2))
    transposed = nn.ConvTranspose2d(3, 2, 3, stride=2, padding=1, output_padding=1)
    for layer in (conv, transposed):
        for p in layer.parameters():
            p.data = p.data.astype(np.float64)
    x = t64(rng.standard_normal((1, 2, 7, 8)))  # batch size 1
    params = [conv.weight, conv.bias, transposed.weight, transposed.bias]
    assert sg.gradcheck(lambda x, *params: transposed(conv(x)), [x] + params)
    assert sg.gradgradcheck(lambda x, *params: transposed(conv(x)), [x] + params)


def test_parameter_names_shapes_and_pytorch_default_initialisation():
    sg.manual_seed(0)
    conv = nn.Conv2d(16, 32, (3, 5))
    assert {k: v.shape for k, v in conv.state_dict().items()} == {"weight": (32, 16, 3, 5), "bias": (32,)}
    transposed = nn.ConvTranspose2d(16, 32, (3, 5), bias=False)
    assert {k: v.shape for k, v in transposed.state_dict().items()} == {"weight": (16, 32, 3, 5)}
    # U(-1/√fan_in, 1/√fan_in) with fan_in = weight.shape[1]·kh·kw: in·kh·kw for Conv2d, out·kh·kw transposed.
    for layer, fan_in in ((conv, 16 * 15), (transposed, 32 * 15)):
        bound = 1 / math.sqrt(fan_in)
        for p in layer.parameters():
            values = p.numpy()
            assert values.dtype == np.float32
            assert np.abs(values).max() <= bound
            assert np.abs(values).max() > 0.9 * bound  # uses the whole range, not a narrower one
        weight = layer.weight.numpy()
        assert abs(weight.std() - bound / math.sqrt(3)) < 0.05 * bound  # the std of a uniform on [-b, b]


def test_shape_errors_name_the_layer_and_the_shapes(rng):
    conv = nn.Conv2d(3, 8, 5)
    with pytest.raises(ValueError, match=r"Conv2d\(3, 8, kernel_size=\(5, 5\).*4-D input.*\(3, 10, 10\)"):
        conv(sg.zeros(3, 10, 10))
    with pytest.raises(ValueError, match=r"Conv2d\(3, 8.*input has 1 channels.*\(2, 1, 10, 10\).*expects 3"):
        conv(sg.zeros(2, 1, 10, 10))
    with pytest.raises(ValueError, match=r"Conv2d\(3, 8.*spans 5×5 pixels, more than the padded input 4×6"):
        conv(sg.zeros(2, 3, 4, 6))
    padded = nn.Conv2d(3, 8, 5, padding=1)
    assert padded(sg.zeros(1, 3, 3, 3)).shape == (1, 8, 1, 1)  # 3 + 2·1 = 5: just fits
    transposed = nn.ConvTranspose2d(4, 2, 3, stride=2)
    with pytest.raises(ValueError, match=r"ConvTranspose2d\(4, 2.*input has 3 channels.*expects 4"):
        transposed(sg.zeros(1, 3, 5, 5))
    with pytest.raises(ValueError, match=r"output_padding"):
        F.conv_transpose2d(sg.zeros(1, 4, 5, 5), transposed.weight, stride=2, output_padding=2)
    with pytest.raises(ValueError, match=r"stride must be an int or a pair"):
        nn.Conv2d(3, 8, 3, stride=(1, 2, 3))


def test_float32_stays_float32_and_output_is_a_new_array(rng):
    x = sg.tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32), requires_grad=True)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    y = conv(x)
    assert y.dtype == np.float32
    y.sum().backward()
    assert x.grad.dtype == np.float32 and conv.weight.grad.dtype == np.float32
    assert not np.shares_memory(sg.backend.to_numpy(y.data), sg.backend.to_numpy(x.data))


def test_conv_runs_on_each_backend(backend, rng):
    """Forward and gradients on the active backend (NumPy, and CuPy where a GPU is present) match NumPy loops."""
    x, w, b = rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((4, 3, 3, 2)), rng.standard_normal(4)
    tensors = [sg.tensor(a, requires_grad=True) for a in (x, w, b)]
    out = F.conv2d(*tensors, stride=2, padding=1, dilation=(1, 2))
    np.testing.assert_allclose(out.numpy(), reference_conv2d(x, w, b, (2, 2), (1, 1), (1, 2)), rtol=1e-10, atol=1e-12)
    out.sum().backward()
    n, _, oh, ow = out.shape
    np.testing.assert_allclose(sg.backend.to_numpy(tensors[2].grad), np.full(4, n * oh * ow))  # Σ of ones
    transposed = F.conv_transpose2d(out, tensors[1], stride=2, padding=1, output_padding=1, dilation=(1, 2))
    expected = reference_conv_transpose2d(out.numpy(), w, None, (2, 2), (1, 1), (1, 1), (1, 2))
    np.testing.assert_allclose(transposed.numpy(), expected, rtol=1e-10, atol=1e-12)


def test_gradcheck_catches_a_col2im_that_forgets_overlapping_windows(monkeypatch, rng):
    """A classic bug: assigning each tap's slice instead of adding it. Overlapping windows (stride 1 < kernel)
    then lose all but one contribution per pixel, and the gradient check must say so."""
    import scratchgen.ops.conv as conv_module

    def col2im_assigning(cols, x_shape, kernel_size, stride, padding, dilation, out_size):
        n, c, h, w = x_shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw), (oh, ow) = kernel_size, stride, padding, dilation, out_size
        cols = cols.reshape(c, kh, kw, oh, ow, n).transpose(5, 0, 1, 2, 3, 4)
        frame = sg.backend.xp.zeros((n, c, h + 2 * ph, w + 2 * pw))
        for i in range(kh):
            for j in range(kw):
                frame[:, :, dh * i:dh * i + sh * oh:sh, dw * j:dw * j + sw * ow:sw] = cols[:, :, i, j]  # the bug
        return frame[:, :, ph:ph + h, pw:pw + w]

    monkeypatch.setattr(conv_module, "col2im", col2im_assigning)
    x, w = t64(rng.standard_normal((1, 2, 5, 5))), t64(rng.standard_normal((2, 2, 3, 3)))
    with pytest.raises(sg.GradcheckError, match="input 0"):
        sg.gradcheck(lambda x, w: F.conv2d(x, w, padding=1), [x, w])

"""Tests of scratchgen.ops.pool and the MaxPool2d, AvgPool2d and Upsample layers of scratchgen.nn.conv.

Forward passes against loops over the windows (tiny shapes), backward passes by gradcheck in float64,
the tie convention of max pooling, shapes against PyTorch's formula, and the errors.
"""

import numpy as np
import pytest
from conftest import host, t64

import scratchgen as sg
from scratchgen import nn
from scratchgen.nn import functional as F


def reference_pool(x, kernel, stride, padding, dilation, reduce, pad_value):
    """Each output pixel reduces the window x_pad[n, c, s·oh + d·i, s·ow + d·j] over (i, j), by loops."""
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    n, c, h, w = x.shape
    xp = np.full((n, c, h + 2 * ph, w + 2 * pw), pad_value)
    xp[:, :, ph:ph + h, pw:pw + w] = x
    oh = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    ow = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    out = np.zeros((n, c, oh, ow))
    for a in range(oh):
        for b in range(ow):
            window = xp[:, :, sh * a:sh * a + dh * (kh - 1) + 1:dh, sw * b:sw * b + dw * (kw - 1) + 1:dw]
            out[:, :, a, b] = reduce(window.reshape(n, c, -1), axis=2)
    return out


# (input shape, kernel, stride, padding, dilation)
MAX_CASES = [
    ((2, 3, 6, 6), (2, 2), (2, 2), (0, 0), (1, 1)),
    ((1, 2, 7, 8), (3, 3), (2, 2), (1, 1), (1, 1)),
    ((2, 1, 7, 9), (2, 3), (1, 2), (1, 0), (2, 1)),
]


@pytest.mark.parametrize("shape, kernel, stride, padding, dilation", MAX_CASES)
def test_max_pool2d_forward_and_gradient(shape, kernel, stride, padding, dilation, rng):
    x = rng.standard_normal(shape)
    out = F.max_pool2d(sg.tensor(x), kernel, stride, padding, dilation)
    np.testing.assert_array_equal(out.numpy(), reference_pool(x, kernel, stride, padding, dilation, np.max, -np.inf))
    # Distinct random values: no ties, so max is differentiable at x and gradcheck applies.
    assert sg.gradcheck(lambda x: F.max_pool2d(x, kernel, stride, padding, dilation), [t64(x)])
    assert sg.gradgradcheck(lambda x: F.max_pool2d(x, kernel, stride, padding, dilation), [t64(x)])


AVG_CASES = [
    ((2, 3, 6, 6), (2, 2), (2, 2), (0, 0)),
    ((1, 2, 7, 8), (3, 3), (2, 2), (1, 1)),
    ((2, 1, 5, 9), (2, 3), (1, 2), (1, 0)),
]


@pytest.mark.parametrize("shape, kernel, stride, padding", AVG_CASES)
def test_avg_pool2d_forward_and_gradient(shape, kernel, stride, padding, rng):
    x = rng.standard_normal(shape)
    out = F.avg_pool2d(sg.tensor(x), kernel, stride, padding)
    # Padding zeros count in the mean (PyTorch's count_include_pad=True).
    expected = reference_pool(x, kernel, stride, padding, (1, 1), np.mean, 0.0)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)
    assert sg.gradcheck(lambda x: F.avg_pool2d(x, kernel, stride, padding), [t64(x)])
    assert sg.gradgradcheck(lambda x: F.avg_pool2d(x, kernel, stride, padding), [t64(x)])


@pytest.mark.parametrize("scale", [2, (2, 3), (1, 2)])
def test_nearest_upsampling_forward_and_gradient(scale, rng):
    x = rng.standard_normal((2, 3, 3, 4))
    sh, sw = (scale, scale) if isinstance(scale, int) else scale
    out = F.interpolate(sg.tensor(x), scale_factor=scale)
    np.testing.assert_array_equal(out.numpy(), x.repeat(sh, axis=2).repeat(sw, axis=3))
    assert sg.gradcheck(lambda x: F.interpolate(x, scale_factor=scale), [t64(x)])
    assert sg.gradgradcheck(lambda x: F.interpolate(x, scale_factor=scale), [t64(x)])


@pytest.mark.parametrize("scale", [2, (2, 3)])
def test_nearest_upsampling_of_a_batch_last_image(scale, rng):
    """An image laid out batch axis last (as convolutions leave theirs) takes the other copy: same numbers,
    forward and backward (the gradient also batch axis last)."""
    x = rng.standard_normal((3, 3, 4, 2)).transpose(3, 0, 1, 2)  # (N, C, H, W), N contiguous in memory
    sh, sw = (scale, scale) if isinstance(scale, int) else scale
    xt = sg.tensor(x, requires_grad=True)
    out = F.interpolate(xt, scale_factor=scale)
    np.testing.assert_array_equal(out.numpy(), x.repeat(sh, axis=2).repeat(sw, axis=3))
    grad = rng.standard_normal(out.shape[1:] + (2,)).transpose(3, 0, 1, 2)
    out.backward(sg.backend.asarray(grad))
    expected = grad.reshape(2, 3, 3, sh, 4, sw).sum(axis=(3, 5))
    np.testing.assert_allclose(host(xt.grad), expected, rtol=1e-12)
    assert sg.gradcheck(lambda x: F.interpolate(x, scale_factor=scale), [sg.tensor(x, requires_grad=True)])


def test_layers_match_their_functions_and_gradcheck(rng):
    x = t64(rng.standard_normal((1, 2, 8, 6)))  # batch size 1, non-square
    model = nn.Sequential(nn.Upsample(scale_factor=(1, 2)), nn.MaxPool2d(3, stride=2, padding=1),
                          nn.AvgPool2d((2, 3), stride=1))
    out = model(x)
    expected = F.avg_pool2d(F.max_pool2d(F.interpolate(x, (1, 2)), 3, 2, 1), (2, 3), 1)
    np.testing.assert_array_equal(out.numpy(), expected.numpy())
    assert out.shape == (1, 2, 3, 4)
    assert sg.gradcheck(model, [x])
    assert sg.gradgradcheck(model, [x])


def test_max_pool_gives_a_tied_window_gradient_to_its_first_maximum_only():
    """Ties (a constant image): the gradient is not shared out; it goes to the first maximum, as in PyTorch."""
    x = sg.tensor(np.ones((1, 1, 4, 4)), requires_grad=True)
    F.max_pool2d(x, 2).sum().backward()
    expected = np.zeros((4, 4))
    expected[::2, ::2] = 1  # the top-left pixel of each 2×2 window
    np.testing.assert_array_equal(sg.backend.to_numpy(x.grad)[0, 0], expected)


def test_overlapping_max_windows_add_their_gradients():
    """A pixel that is the maximum of several windows receives the gradient of each."""
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 5.0  # the maximum of all four 2×2 windows at stride 1
    xt = sg.tensor(x, requires_grad=True)
    F.max_pool2d(xt, 2, stride=1).sum().backward()
    assert sg.backend.to_numpy(xt.grad)[0, 0, 1, 1] == 4.0


def test_shapes_follow_pytorchs_formula_and_stride_defaults_to_the_kernel(rng):
    x = sg.tensor(rng.standard_normal((2, 3, 28, 27)).astype(np.float32))
    assert nn.MaxPool2d(2)(x).shape == (2, 3, 14, 13)
    assert nn.AvgPool2d(3, stride=2, padding=1)(x).shape == (2, 3, 14, 14)
    assert nn.MaxPool2d((3, 2), stride=(2, 3), dilation=2)(x).shape == (2, 3, 12, 9)
    assert nn.Upsample(scale_factor=2)(x).shape == (2, 3, 56, 54)
    assert nn.MaxPool2d(2)(x).dtype == np.float32


def test_errors_name_the_layer_and_the_shapes():
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=\(2, 2\).*4-D input.*\(3, 8, 8\)"):
        nn.MaxPool2d(2)(sg.zeros(3, 8, 8))
    with pytest.raises(ValueError, match=r"AvgPool2d\(kernel_size=\(2, 2\).*padding \(2, 2\) must be at most half"):
        nn.AvgPool2d(2, padding=2)(sg.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match=r"MaxPool2d\(kernel_size=\(5, 5\).*more than the padded input 4×4"):
        nn.MaxPool2d(5)(sg.zeros(1, 1, 4, 4))
    with pytest.raises(ValueError, match=r"only mode='nearest'"):
        nn.Upsample(2, mode="bilinear")
    with pytest.raises(ValueError, match=r"Upsample\(scale_factor=\(2, 2\).*4-D input"):
        nn.Upsample(2)(sg.zeros(2, 8))

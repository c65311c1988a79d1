"""Masked layers: forward against the formula, gradcheck, masked weights get exactly zero gradient, the
PixelCNN masks of types A and B, and the autoregressive property of a stack of masked convolutions."""

import numpy as np
import pytest

import scratchgen as sg
from conftest import host, t64
from scratchgen.nn.masked import conv_mask

nn = sg.nn


def _float64(module):
    """The module's parameters and masks as float64, for gradcheck."""
    for p in module.parameters():
        p.data = p.data.astype(np.float64)
    module.mask.data = module.mask.data.astype(np.float64)
    return module


def test_masked_linear_forward_is_the_masked_product_and_gradients_respect_the_mask(rng):
    mask = (rng.random((4, 6)) < 0.5).astype(np.float32)
    layer = _float64(nn.MaskedLinear(6, 4, mask=mask))
    x = t64(rng.normal(size=(5, 6)))
    expected = x.numpy() @ (layer.weight.numpy() * mask).T + layer.bias.numpy()
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-12)
    assert sg.gradcheck(lambda x, w, b: layer(x), [x, layer.weight, layer.bias])
    assert sg.gradgradcheck(lambda x, w, b: layer(x), [x, layer.weight, layer.bias])

    layer.zero_grad()
    layer(x).sum().backward()
    assert np.all(host(layer.weight.grad)[mask == 0] == 0.0)  # exactly zero, not merely small
    assert np.all(host(layer.weight.grad)[mask == 1] != 0.0)


def test_masked_linear_keeps_its_mask_in_the_state_dict_and_checks_it():
    layer = nn.MaskedLinear(3, 2, mask=[[1, 0, 0], [1, 1, 0]])
    other = nn.MaskedLinear(3, 2)
    np.testing.assert_array_equal(other.mask.numpy(), np.ones((2, 3)))  # no mask: a plain Linear
    other.load_state_dict(layer.state_dict())
    np.testing.assert_array_equal(other.mask.numpy(), [[1, 0, 0], [1, 1, 0]])
    assert "mask" in layer.state_dict() and "mask" not in dict(layer.named_parameters())
    with pytest.raises(ValueError, match=r"MaskedLinear\(3, 2\): mask of shape \(3, 2\), expected .*\(2, 3\)"):
        layer.set_mask(np.ones((3, 2)))
    with pytest.raises(ValueError, match="only 0 and 1"):
        layer.set_mask(np.full((2, 3), 0.5))


@pytest.mark.parametrize("mask_type, centre", [("A", 0.0), ("B", 1.0)])
def test_conv_masks_see_the_rows_above_and_the_pixels_to_the_left(mask_type, centre):
    mask = nn.MaskedConv2d(2, 3, 5, mask_type).mask.numpy()
    assert mask.shape == (3, 2, 5, 5)
    expected = np.zeros((5, 5))
    expected[:2] = 1
    expected[2, :2] = 1
    expected[2, 2] = centre
    for o in range(3):
        for c in range(2):
            np.testing.assert_array_equal(mask[o, c], expected)
    with pytest.raises(ValueError, match="mask_type must be 'A'"):
        nn.MaskedConv2d(1, 1, 3, "C")
    with pytest.raises(ValueError, match="odd sides"):
        nn.MaskedConv2d(1, 1, 4, "A")


def test_masked_conv_forward_and_gradcheck(rng):
    layer = _float64(nn.MaskedConv2d(2, 3, 3, "A"))
    assert layer.padding == (1, 1)  # "same" padding by default
    x = t64(rng.normal(size=(2, 2, 5, 4)))
    out = layer(x)
    assert out.shape == (2, 3, 5, 4)
    masked = nn.Conv2d(2, 3, 3, padding=1)
    masked.weight.data = layer.weight.data * layer.mask.data
    masked.bias.data = layer.bias.data
    np.testing.assert_allclose(out.numpy(), masked(x).numpy(), rtol=1e-12)
    assert sg.gradcheck(lambda x, w: layer(x), [x, layer.weight])
    assert sg.gradgradcheck(lambda x, w: layer(x), [x, layer.weight])

    layer.zero_grad()
    layer(x).sum().backward()
    assert np.all(host(layer.weight.grad)[layer.mask.numpy() == 0] == 0.0)


def _raster_jacobian(net, h, w):
    """J[i, j] = d out_i / d in_j for every pixel pair of an (h, w) one-channel image, by one backward:
    a batch of h·w copies of one random image, copy i seeded with a one-hot gradient at pixel i."""
    image = np.random.default_rng(0).normal(size=(1, 1, h, w))
    x = t64(np.repeat(image, h * w, axis=0))
    seed = np.eye(h * w).reshape(h * w, 1, h, w)
    net(x).backward(sg.backend.asarray(seed))
    return host(x.grad).reshape(h * w, h * w)


@pytest.mark.parametrize("first", ["A", "B"])
def test_stacked_masked_convs_see_only_earlier_pixels(first):
    """A (then B, B) sees exactly the pixels before it; starting with B, a pixel sees itself: the
    check that catches a wrong first layer."""
    layers = [nn.MaskedConv2d(1, 4, 3, first), nn.ReLU(), nn.MaskedConv2d(4, 4, 3, "B"), nn.ReLU(),
              nn.MaskedConv2d(4, 1, 3, "B")]
    net = nn.Sequential(*layers)
    for layer in net:
        if isinstance(layer, nn.MaskedConv2d):
            _float64(layer)
    jacobian = _raster_jacobian(net, 6, 5)
    future = np.triu(np.ones_like(jacobian), k=0 if first == "A" else 1) == 1  # j >= i (A) or j > i (B)
    assert np.all(jacobian[future] == 0.0)
    assert np.count_nonzero(jacobian[~future]) > 0.5 * (~future).sum()  # the past is really seen
    if first == "B":  # the check for type A would fail here: pixels see themselves
        assert np.count_nonzero(np.diag(jacobian)) > 0.5 * len(jacobian)


def test_a_masked_conv_follows_a_mask_loaded_after_its_first_forward(rng):
    """The taps a mask keeps are worked out once per version of the mask: a mask loaded later (type A
    over a type-B layer, say) must take effect on the next forward."""
    layer = nn.MaskedConv2d(2, 3, 3, "B")
    x = sg.tensor(rng.standard_normal((2, 2, 5, 5)).astype(np.float32))
    layer(x)
    state = layer.state_dict()
    state["mask"] = conv_mask("A", (3, 3), 3, 2)
    layer.load_state_dict(state)
    expected = sg.nn.functional.conv2d(x, layer.weight * sg.tensor(state["mask"]), layer.bias, padding=1)
    np.testing.assert_allclose(layer(x).numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)

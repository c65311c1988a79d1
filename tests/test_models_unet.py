"""The U-Net ε-network: its shapes at 28×28 and 8×8, that it reads t and y, its gradients through every
kind of layer it has (float64 gradcheck on a tiny one), its errors, and that it learns the diffusion loss
of a few 8×8 images inside Diffusion."""

import numpy as np
import pytest
from conftest import t64

import scratchgen as sg
from scratchgen.models.diffusion import Diffusion
from scratchgen.models.unet import ResidualBlock, UNet


def tiny(**kwargs):
    """Two resolutions, one block each, 2 and 4 channels: small enough for gradcheck."""
    settings = dict(base_channels=2, channel_mults=(1, 2), blocks_per_level=1, groups=2)
    return UNet(**{**settings, **kwargs})


def as_float64(module):
    for p in module.parameters():
        p.data = p.data.astype(np.float64)
    return module


def images(n, size, rng, dtype=np.float32):
    return sg.tensor(rng.standard_normal((n, 1, size, size)).astype(dtype))


def test_shapes_at_28_by_28_and_8_by_8(rng):
    net = UNet(base_channels=16)  # 28 -> 14 -> 7 and back
    assert net(images(2, 28, rng), np.array([1, 1000])).shape == (2, 1, 28, 28)
    assert [block.conv1.out_channels for block in net.down] == [16, 16, 32, 32, 32, 32]
    assert len(net.up) == 3 * 3 and len(net.downsample) == len(net.upsample) == 2
    small = UNet(base_channels=8, channel_mults=(1, 2), blocks_per_level=1, groups=4, classes=10)
    assert small(images(3, 8, rng), np.array([1, 2, 3]), np.array([0, 9, 10])).shape == (3, 1, 8, 8)
    assert net.embedding_dim == 64 and small.null_label == 10


def test_residual_block_has_a_1x1_skip_only_when_channels_change():
    assert isinstance(ResidualBlock(4, 8, 16, groups=2).skip, sg.nn.Conv2d)
    assert ResidualBlock(4, 8, 16, groups=2).skip.kernel_size == (1, 1)
    assert isinstance(ResidualBlock(8, 8, 16, groups=2).skip, sg.nn.Identity)


def test_output_depends_on_the_step_and_the_label(rng):
    net = tiny(classes=3)
    x = images(1, 8, rng)
    out = {(t, y): net(x, np.array([t]), np.array([y])).numpy() for t in (1, 40) for y in (0, 2)}
    assert not np.allclose(out[1, 0], out[40, 0])  # the step changes the prediction
    assert not np.allclose(out[1, 0], out[1, 2])  # so does the label
    # No label is the null label, a label of its own.
    np.testing.assert_array_equal(net(x, np.array([1])).numpy(), net(x, np.array([1]), np.array([3])).numpy())
    assert not np.allclose(net(x, np.array([1])).numpy(), out[1, 0])


def test_rows_of_a_batch_are_independent(rng):
    """Group norm normalises each sample alone, so a row's prediction does not depend on its batch."""
    net = tiny()
    x, t = images(3, 8, rng), np.array([5, 17, 30])
    batch = net(x, t).numpy()
    np.testing.assert_allclose(net(x[1:2], t[1:2]).numpy(), batch[1:2], rtol=1e-5, atol=1e-6)


def test_gradients_through_a_tiny_unet(rng):
    """Through convolutions, group norms, SiLU, the step and label embeddings, the skips and the upsampling."""
    net = as_float64(tiny(classes=2))
    x = t64(rng.standard_normal((2, 1, 4, 4)))
    t, y = np.array([3, 70]), np.array([1, 2])
    checked = [net.down[0].norm1.weight, net.up[0].embedding.weight, net.label_embedding.weight,
               net.time_embedding[0].bias, net.upsample[0][1].weight]
    for p in checked:  # off the initial ones and zeros, so no gradient is zero by symmetry
        p.data = p.data + sg.backend.asarray(rng.standard_normal(p.shape) * 0.3)
    assert sg.gradcheck(lambda x, *params: net(x, t, y), [x] + checked)


def test_errors_name_the_network_and_the_numbers(rng):
    with pytest.raises(ValueError, match=r"UNet: groups = 3 must divide every level's channels, got \[4, 8\]"):
        UNet(base_channels=4, channel_mults=(1, 2), groups=3)
    net = tiny()
    with pytest.raises(ValueError, match=r"UNet: the image size \(7, 7\) must be divisible by 2"):
        net(images(1, 7, rng), np.array([1]))
    with pytest.raises(ValueError, match=r"unconditional network \(classes=0\) was given labels"):
        net(images(1, 8, rng), np.array([1]), np.array([0]))
    with pytest.raises(ValueError, match=r"UNet: expected images \(N, 1, H, W\), got shape \(1, 3, 8, 8\)"):
        net(sg.zeros(1, 3, 8, 8), np.array([1]))
    with pytest.raises(ValueError, match=r"one_hot: labels must lie in \[0, 3\)"):
        tiny(classes=2)(images(1, 8, rng), np.array([1]), np.array([3]))


def test_unet_learns_the_diffusion_loss_of_four_8x8_images():
    """60 Adam steps (about 2 s) take the simple loss on a fixed set of (t, ε) from about 1.1, where a network
    that predicts nothing would sit (ε_θ = 0 gives E ε² = 1), to below 0.35."""
    rng = np.random.default_rng(0)
    pictures = -np.ones((4, 1, 8, 8), dtype=np.float32)  # a bar each way, a square, two lines, in [-1, 1]
    pictures[0, 0, :, 3:5] = pictures[1, 0, 3:5, :] = pictures[2, 0, 2:6, 2:6] = pictures[3, 0, [1, 6], :] = 1
    net = UNet(base_channels=8, channel_mults=(1, 2), blocks_per_level=1, groups=2)
    model = Diffusion(net, T=50)
    x0 = np.repeat(pictures, 7, axis=0)
    t, noise = np.tile(np.arange(1, 50, 8), 4), sg.backend.asarray(rng.standard_normal(x0.shape).astype(np.float32))

    def held_out_loss():
        with sg.no_grad():
            return model.loss(x0, t, noise).item()

    before = held_out_loss()
    opt = sg.optim.Adam(net.parameters(), lr=3e-3)
    for _ in range(60):
        opt.zero_grad()
        model.loss(np.repeat(pictures, 4, axis=0)).backward()
        opt.step()
    after = held_out_loss()
    assert before > 0.9 and after < 0.35, (before, after)

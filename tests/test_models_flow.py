"""Flows: every inverse undoes its forward, every log-determinant is log |det| of the autograd Jacobian (and a
wrong one is caught), a 2-D flow's density integrates to one, MAF's Jacobian is triangular in its ordering,
a flow learns the two moons, and the demo end to end; for images, the same for the logit transform, the
squeeze, the per-pixel mixture-of-logistics CDF and the checkerboard and channel couplings (affine and
mixture), the bits-per-dimension bookkeeping of dequantised pixels, a RealNVP that learns small digits,
per-pixel marginals that match the histogram's, and the demo's MNIST path."""

import math
import os

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import optim
from scratchgen.models.flow import (
    MAF, AffineCoupling, Flow, ImageRealNVP, LogisticMixtureCDF, LogitTransform, MAFLayer, MaskedAffineCoupling,
    MaskedMixtureCoupling, RealNVP, Squeeze, bits_per_dim_dequantized, channel_mask, checkerboard_mask, dequantize,
    independent_pixels_bits_per_dim, logistic_mixture_logit_cdf,
)
from conftest import load_demo, run_then_resume


def _walk(module):
    yield module
    for _, child in module.named_children():
        yield from _walk(child)


def cast(module):
    """float64 parameters and masks for every module below ``module``."""
    for p in module.parameters():
        p.data = p.data.astype(np.float64)
    for layer in _walk(module):
        if isinstance(layer, MAFLayer):
            layer.made.use_masks(int(layer.made.mask_index.data))
    return module


BIJECTIONS = {
    "coupling": lambda: AffineCoupling(3, hidden_sizes=(16, 16)),
    "coupling_flipped": lambda: AffineCoupling(3, flip=True, hidden_sizes=(16, 16)),
    "maf_layer": lambda: MAFLayer(3, hidden_sizes=(16, 16)),
    "maf_layer_reversed": lambda: MAFLayer(3, hidden_sizes=(16, 16), reverse=True),
    "maf_layer_unbounded": lambda: MAFLayer(3, hidden_sizes=(16, 16), max_log_scale=None),
    "realnvp": lambda: RealNVP(3, couplings=4, hidden_sizes=(16, 16)),
    "maf": lambda: MAF(3, layers=3, hidden_sizes=(16, 16)),
}


def points(n=6, d=3, seed=0):
    return sg.tensor(np.random.default_rng(seed).standard_normal((n, d)) * 1.5, requires_grad=True)


def jacobian(bijection, x):
    """∂u/∂x per example, (N, D, D), row i from autograd's gradient of Σ_n u[n, i] (examples are independent);
    images are flattened, x and u alike, so D = C·H·W."""
    u, _ = bijection(x)
    u = u.reshape(len(u), -1)
    rows = [sg.grad(u[:, i].sum(), x)[0].numpy().reshape(len(u), -1) for i in range(u.shape[1])]
    return np.stack(rows, axis=1)


def assert_log_det_matches(bijection, x, atol=1e-9):
    _, log_det = bijection(x)
    sign, expected = np.linalg.slogdet(jacobian(bijection, x))
    assert np.all(sign != 0)
    np.testing.assert_allclose(log_det.numpy(), expected, rtol=0, atol=atol,
                               err_msg=f"{type(bijection).__name__}: log|det| differs from the autograd Jacobian's")


@pytest.mark.parametrize("name", BIJECTIONS)
def test_inverse_undoes_forward(name):
    bijection = cast(BIJECTIONS[name]())
    x = points()
    with sg.no_grad():
        u, _ = bijection(x)
        back = bijection.inverse(u)
    assert np.abs(u.numpy() - x.numpy()).max() > 1e-2  # the map is not the identity
    np.testing.assert_allclose(back.numpy(), x.numpy(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("flow", [RealNVP(2, 8), MAF(2, 5)], ids=["realnvp", "maf"])
def test_inverse_in_float32(flow):
    x = sg.tensor(np.random.default_rng(1).standard_normal((200, 2)).astype(np.float32))
    with sg.no_grad():
        back = flow.inverse(flow(x)[0])
    np.testing.assert_allclose(back.numpy(), x.numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", BIJECTIONS)
def test_log_det_is_log_abs_det_of_the_autograd_jacobian(name):
    assert_log_det_matches(cast(BIJECTIONS[name]()), points())


def test_jacobian_agrees_with_finite_differences():
    """The autograd Jacobian the test above trusts, against central differences (step 1e-6, float64)."""
    flow = cast(RealNVP(3, couplings=2, hidden_sizes=(16, 16)))
    x = points(n=2)
    eps, numeric = 1e-6, np.empty((2, 3, 3))
    with sg.no_grad():
        for j in range(3):
            step = np.zeros(3)
            step[j] = eps
            plus, minus = flow(sg.tensor(x.numpy() + step))[0].numpy(), flow(sg.tensor(x.numpy() - step))[0].numpy()
            numeric[:, :, j] = (plus - minus) / (2 * eps)
    np.testing.assert_allclose(jacobian(flow, x), numeric, rtol=0, atol=1e-7)


def test_a_wrong_log_det_is_caught():
    """Negative test: a coupling that forgets the tanh in its log-determinant (Σ s_net instead of Σ tanh s_net)
    fails the check: the check can fail."""

    class Forgetful(AffineCoupling):
        def forward(self, x):
            kept, moved = self._halves(x)
            s, t = self._scale_and_shift(kept)
            return self._join(kept, moved * s.exp() + t), self.s_net(kept).sum(axis=1)

    with pytest.raises(AssertionError, match="log|det"):
        assert_log_det_matches(cast(Forgetful(3, hidden_sizes=(16, 16))), points())


def test_coupling_keeps_its_half():
    for flip, kept in ((False, [0]), (True, [1, 2])):
        coupling = cast(AffineCoupling(3, flip=flip, hidden_sizes=(8,)))
        x = points()
        with sg.no_grad():
            u, _ = coupling(x)
        np.testing.assert_array_equal(u.numpy()[:, kept], x.numpy()[:, kept])


@pytest.mark.parametrize("reverse", [False, True])
def test_maf_jacobian_is_triangular_in_its_ordering(reverse):
    """∂u_i/∂x_j is exactly zero for every j after i in the ordering, and the diagonal is exp(-α_i) > 0;
    the entries below are not all zero (each u_i does see the variables before it)."""
    layer = cast(MAFLayer(5, hidden_sizes=(32, 32), reverse=reverse))
    ordering = layer.made.ordering.numpy()
    position = np.empty(5, dtype=int)
    position[ordering] = np.arange(5)
    later = position[None, :] > position[:, None]  # later[i, j]: j comes after i
    earlier = position[None, :] < position[:, None]
    J = jacobian(layer, points(d=5))
    assert np.all(J[:, later] == 0)
    assert np.all(np.diagonal(J, axis1=1, axis2=2) > 0)
    assert np.all(np.abs(J[:, earlier]).max(axis=0) > 0)


@pytest.mark.parametrize("make, factor", [(lambda: RealNVP(2, 4, (16, 16)), 1.5), (lambda: MAF(2, 3, (16, 16)), 2)],
                         ids=["realnvp", "maf"])
def test_density_integrates_to_one(make, factor):
    """Σ p(x) Δ² over [-10, 10]² (a midpoint Riemann sum, Δ = 0.02, a million points) is 1 within 1e-3, for
    a flow whose weights are scaled up (by ``factor``) so that its density is far from the base's. The box
    holds all but a negligible share of the mass: these flows' samples stay within |x| < 7.1 to the
    99.99th percentile."""
    flow = cast(make())
    for p in flow.parameters():
        p.data = p.data * factor
    step = 0.02
    grid = np.arange(-10, 10, step) + step / 2
    xs, ys = np.meshgrid(grid, grid)
    plane = np.stack([xs.ravel(), ys.ravel()], axis=1)
    with sg.no_grad():
        log_p = np.concatenate([flow.log_prob(sg.tensor(plane[i:i + 200_000])).numpy()
                                for i in range(0, len(plane), 200_000)])
    total = np.exp(log_p).sum() * step ** 2
    assert abs(total - 1) < 1e-3, total
    assert np.exp(log_p).max() > 0.16 + 0.01  # not the base's density, whose peak is 1/2π ≈ 0.159


def test_sample_is_the_inverse_of_base_draws():
    flow = RealNVP(2, 4, (16, 16))
    sg.manual_seed(3)
    samples = flow.sample(50)
    sg.manual_seed(3)
    u = sg.randn(50, 2)
    with sg.no_grad():
        np.testing.assert_array_equal(samples.numpy(), flow.inverse(u).numpy())
    assert not samples.requires_grad


def test_flow_learns_the_two_moons():
    """A small RealNVP (4 couplings of 32-32) on 2,000 standardised points, 150 Adam steps at 1e-2 (about
    two seconds), beats the best Gaussian for the data by 0.4 nats per point on fresh points."""
    x = sg.data.two_moons(2000, rng=0)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    z, z_test = (x - mean) / scale, (sg.data.two_moons(2000, rng=10) - mean) / scale
    correlation = np.corrcoef(z, rowvar=False)
    best_gaussian = -(1 + math.log(2 * math.pi)) - 0.5 * np.linalg.slogdet(correlation)[1]  # D = 2
    flow = RealNVP(2, 4, (32, 32))
    opt = optim.Adam(flow.parameters(), lr=1e-2)
    loader = sg.data.DataLoader(z, batch_size=200, shuffle=True, seed=0)
    for _ in range(15):
        for (batch,) in loader:
            opt.zero_grad()
            loss = -flow.log_prob(batch).mean()
            loss.backward()
            opt.step()
    with sg.no_grad():
        test = flow.log_prob(sg.tensor(z_test)).mean().item()
    assert test > best_gaussian + 0.4, (test, best_gaussian)


def test_flow_needs_points():
    with pytest.raises(ValueError, match="expected points"):
        RealNVP(2, 2, (8,)).log_prob(sg.zeros(3))
    assert isinstance(MAF(2, 1, (8,)), Flow)


@pytest.mark.parametrize("kind", ["realnvp", "maf"])
def test_demo_writes_pictures_and_metrics_and_resumes(kind, tmp_path, capsys):
    demo = load_demo("flow")
    out = str(tmp_path / kind)
    argv = ["--dataset", "ring8", "--flow", kind, "--layers", "2", "--hidden", "8", "--limit", "300",
            "--out", out, "--quiet"]
    final, _ = run_then_resume(demo, argv, capsys)
    assert math.isfinite(final["test_log_likelihood"]) and final["true_test_log_likelihood"] > 4
    for name in ("density", "samples", "layers", "learning_curve"):
        assert os.path.getsize(os.path.join(out, f"{name}.png")) > 0, name


# ------------------------------------------------------------------------------------------------ images


def randomised(module, seed=0):
    """``module`` in float64, with every image coupling's last convolution (which starts at zero, making the
    coupling the identity) and its scales drawn at random, so that the maps tested are far from the identity."""
    rng = np.random.default_rng(seed)
    cast(module)
    for layer in _walk(module):
        if isinstance(layer, (MaskedAffineCoupling, MaskedMixtureCoupling)):
            last = layer.net[-1]
            last.weight.data = sg.backend.asarray(rng.standard_normal(last.weight.shape) * 0.3)
            last.bias.data = sg.backend.asarray(rng.standard_normal(last.bias.shape) * 0.3)
        if isinstance(layer, MaskedAffineCoupling):
            layer.scale.data = sg.backend.asarray(rng.uniform(0.5, 2.0, layer.scale.shape))
        if isinstance(layer, LogisticMixtureCDF):  # logits, means and log-scales each moved by a N(0, 1) draw
            step = rng.standard_normal(layer.theta.shape) / layer.speed
            layer.theta.data = layer.theta.data + sg.backend.asarray(step)
    return module


IMAGE_BIJECTIONS = {  # name: (the bijection, the shape of one input, whether its inputs are in (0, 1))
    "logit": (lambda: LogitTransform(0.05), (1, 4, 4), True),
    "squeeze": (lambda: Squeeze(), (2, 4, 4), False),
    "checkerboard": (lambda: MaskedAffineCoupling(checkerboard_mask((1, 4, 4), 0), hidden=8), (1, 4, 4), False),
    "checkerboard_odd": (lambda: MaskedAffineCoupling(checkerboard_mask((2, 4, 4), 1), hidden=8), (2, 4, 4), False),
    "channel": (lambda: MaskedAffineCoupling(channel_mask((4, 2, 2), 0), hidden=8), (4, 2, 2), False),
    "channel_flipped": (lambda: MaskedAffineCoupling(channel_mask((4, 2, 2), 1), hidden=8), (4, 2, 2), False),
    "image_realnvp": (lambda: ImageRealNVP((1, 4, 4), couplings=2, hidden=8), (1, 4, 4), True),
    "image_realnvp_two_scales": (lambda: ImageRealNVP((1, 4, 4), couplings=1, hidden=8, scales=2), (1, 4, 4), True),
    "mixture_cdf": (lambda: LogisticMixtureCDF((2, 2, 2), components=3), (2, 2, 2), False),
    "mixture_coupling": (lambda: MaskedMixtureCoupling(checkerboard_mask((1, 4, 4), 0), 8, 3), (1, 4, 4), False),
    "mixture_coupling_channel": (lambda: MaskedMixtureCoupling(channel_mask((4, 2, 2), 1), 8, 2), (4, 2, 2), False),
    "image_realnvp_mixtures": (lambda: ImageRealNVP((1, 4, 4), couplings=1, hidden=8, components=3,
                                                    coupling_components=2), (1, 4, 4), True),
}


def images(shape, unit, n=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.02, 0.98, (n,) + shape) if unit else rng.standard_normal((n,) + shape) * 1.5
    return sg.tensor(x, requires_grad=True)


@pytest.mark.parametrize("name", IMAGE_BIJECTIONS)
def test_image_inverse_undoes_forward(name):
    make, shape, unit = IMAGE_BIJECTIONS[name]
    bijection, x = randomised(make()), images(shape, unit)
    with sg.no_grad():
        u, log_det = bijection(x)
        back = bijection.inverse(u)
    assert log_det.shape == (3,)
    if name != "squeeze":  # a permutation: it moves numbers, does not change them
        assert np.abs(u.numpy().ravel() - x.numpy().ravel()).max() > 1e-2
    np.testing.assert_allclose(back.numpy(), x.numpy(), rtol=0, atol=1e-10)


@pytest.mark.parametrize("name", IMAGE_BIJECTIONS)
def test_image_log_det_is_log_abs_det_of_the_autograd_jacobian(name):
    make, shape, unit = IMAGE_BIJECTIONS[name]
    assert_log_det_matches(randomised(make()), images(shape, unit))


def test_image_jacobian_agrees_with_finite_differences():
    """The autograd Jacobian of a whole image flow, logit included, against central differences (float64)."""
    flow = randomised(ImageRealNVP((1, 2, 2), couplings=2, hidden=8, scales=1))
    x = images((1, 2, 2), unit=True, n=2)
    eps, numeric = 1e-6, np.empty((2, 4, 4))
    with sg.no_grad():
        for j in range(4):
            step = np.zeros(4)
            step[j] = eps
            step = step.reshape(1, 1, 2, 2)
            plus, minus = flow(sg.tensor(x.numpy() + step))[0].numpy(), flow(sg.tensor(x.numpy() - step))[0].numpy()
            numeric[:, :, j] = (plus - minus).reshape(2, 4) / (2 * eps)
    np.testing.assert_allclose(jacobian(flow, x), numeric, rtol=1e-6, atol=1e-6)


def test_one_standard_logistic_is_the_identity():
    """K = 1, μ = 0, s = 1: F = σ, so u = logit σ(y) = y and du/dy = 1; the log-space formulas keep this
    exact far into the tails, where F rounds to 0 or 1 in floating point (y = ±40)."""
    y = sg.tensor(np.array([[-40.0, -3.0, 0.0, 0.5, 7.0, 40.0]]))
    zero = sg.tensor(np.zeros((1, 6)))
    u, log_slope = logistic_mixture_logit_cdf(y, zero, zero, zero)
    np.testing.assert_allclose(u.numpy(), y.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_slope.numpy(), 0, atol=1e-12)


def test_mixture_cdf_gradients_and_far_inverse():
    """The log-determinant's gradient in the parameters θ, and the inverse's in u and θ (through its last
    Newton step), against finite differences (float64); the inverse also finds numbers far out in the tails
    of the mixture, where its bracket is widest."""
    layer = randomised(LogisticMixtureCDF((1, 2, 2), components=3))
    x = images((1, 2, 2), unit=False, n=2)
    assert sg.gradcheck(lambda theta: layer(x)[1], [layer.theta])
    u = sg.tensor(np.random.default_rng(1).standard_normal((2, 1, 2, 2)), requires_grad=True)
    assert sg.gradcheck(lambda u, theta: layer.inverse(u), [u, layer.theta])
    far = sg.tensor(np.array([-200.0, -30.0, 30.0, 200.0]).reshape(1, 1, 2, 2))
    with sg.no_grad():
        np.testing.assert_allclose(layer.inverse(layer(far)[0]).numpy(), far.numpy(), rtol=1e-12)


def test_mixture_inverse_reads_the_host_once():
    """The bisection's number of halvings is found before the first, from one number read back (on a GPU,
    one wait instead of one per halving), and the numbers it finds still undo the forward map, also where
    the brackets are widest (the strict backend counts the reads a GPU would wait for)."""
    with sg.use_backend("strict"):
        layer = randomised(LogisticMixtureCDF((1, 2, 2), components=3))
        x = sg.tensor(np.array([-200.0, -1.0, 0.5, 30.0, -3.0, 0.0, 2.0, 200.0]).reshape(2, 1, 2, 2))
        with sg.no_grad():
            u = layer(x)[0]
            sg.backend.strict_host_reads(reset=True)
            back = layer.inverse(u)
            assert sg.backend.strict_host_reads(reset=True) == 1
        np.testing.assert_allclose(back.numpy(), x.numpy(), rtol=1e-12, atol=1e-12)


def test_mixture_coupling_log_density_gradient():
    """The gradient of a mixture coupling's log-determinant in its network's last weights and biases (which
    choose the mixtures), against finite differences (float64)."""
    coupling = randomised(MaskedMixtureCoupling(checkerboard_mask((1, 2, 2), 1), hidden=4, components=2))
    x, last = images((1, 2, 2), unit=False, n=2), coupling.net[-1]
    assert sg.gradcheck(lambda weight, bias: coupling(x)[1], [last.weight, last.bias])


def test_image_flow_with_mixtures_inverts_in_float32():
    flow = ImageRealNVP((1, 4, 4), couplings=1, hidden=8, components=4, coupling_components=3)
    x = images((1, 4, 4), unit=True, n=20).astype("float32")
    with sg.no_grad():
        back = flow.inverse(flow(x)[0])
    np.testing.assert_allclose(back.numpy(), x.numpy(), rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", [MaskedAffineCoupling, MaskedMixtureCoupling])
def test_masked_coupling_keeps_the_masked_numbers(kind):
    for mask in (checkerboard_mask((2, 4, 4), 0), checkerboard_mask((2, 4, 4), 1), channel_mask((2, 4, 4), 0),
                 channel_mask((2, 4, 4), 1)):
        coupling, x = randomised(kind(mask, hidden=8)), images((2, 4, 4), unit=False)
        with sg.no_grad():
            u = coupling(x)[0].numpy()
        kept = np.broadcast_to(mask == 1, u.shape)
        assert kept.mean() == 0.5
        np.testing.assert_array_equal(u[kept], x.numpy()[kept])
        assert np.all(u[~kept] != x.numpy()[~kept])


def test_masks():
    np.testing.assert_array_equal(checkerboard_mask((1, 2, 3), 0)[0], [[1, 0, 1], [0, 1, 0]])
    np.testing.assert_array_equal(checkerboard_mask((2, 2, 2), 1), 1 - checkerboard_mask((2, 2, 2), 0))
    np.testing.assert_array_equal(channel_mask((4, 1, 1), 0).ravel(), [1, 1, 0, 0])
    np.testing.assert_array_equal(channel_mask((4, 1, 1), 1).ravel(), [0, 0, 1, 1])
    with pytest.raises(ValueError, match="even number of channels"):
        channel_mask((3, 2, 2))


def test_squeeze_puts_each_2x2_block_into_channels():
    """Channel 4c + 2i + j of the output holds pixel (2h + i, 2w + j) of channel c."""
    x = np.arange(2 * 2 * 4 * 6, dtype=np.float64).reshape(2, 2, 4, 6)
    u, log_det = Squeeze()(sg.tensor(x))
    assert u.shape == (2, 8, 2, 3)
    for c, i, j in np.ndindex(2, 2, 2):
        np.testing.assert_array_equal(u.numpy()[:, 4 * c + 2 * i + j], x[:, c, i::2, j::2])
    np.testing.assert_array_equal(log_det.numpy(), 0)
    with pytest.raises(ValueError, match="even height and width"):
        Squeeze()(sg.tensor(np.zeros((1, 1, 3, 4))))


def test_image_realnvp_starts_as_the_logit_and_samples_its_shape():
    """Its couplings start as the identity (the last convolutions are zero), so u is the logit of the
    input, reordered by the squeeze; samples come back as (n, C, H, W), and as pixels in 0..255."""
    flow, x = ImageRealNVP((1, 4, 4), couplings=2, hidden=8), images((1, 4, 4), unit=True).astype("float32")
    with sg.no_grad():
        u, _ = flow(x)
        y, _ = LogitTransform(0.05)(x)
        np.testing.assert_allclose(u.numpy(), Squeeze()(y)[0].numpy(), rtol=1e-6)
    assert flow.code_shape == (4, 2, 2) and flow.sample(5).shape == (5, 1, 4, 4)
    pixels = flow.sample_pixels(5, temperature=0.7)
    assert pixels.dtype == np.uint8 and pixels.shape == (5, 1, 4, 4)
    with pytest.raises(ValueError, match="divisible by 4"):
        ImageRealNVP((1, 6, 6), scales=2)


def logit_only_flow(shape):
    """The identity after the logit (and a squeeze, a permutation): u = logit(α + (1 - 2α) x), reordered."""
    return ImageRealNVP(shape, couplings=0)


def test_bits_per_dim_two_ways():
    """For a flow that is the identity after the logit, the bits per dimension of :meth:`bits_per_dim`
    equal the density of v = 256 x in [0, 256)^D computed directly, by the change of variables of the map
    v ↦ y = logit(α + (1 - 2α) v / 256) whose derivative is taken by central differences:
    -log p_v(v) = Σ_d [½ y_d² + ½ log 2π - log dy_d/dv_d], over D ln 2."""
    flow = logit_only_flow((1, 2, 2))
    pixels = np.array([0, 3, 128, 255, 17, 200, 254, 1]).reshape(2, 1, 2, 2)
    noise = np.random.default_rng(0).random(pixels.shape)
    x = dequantize(sg.tensor(pixels), sg.tensor(noise))
    assert x.dtype == np.float64
    v = pixels + noise

    def y_of(v):
        squeezed = 0.05 + 0.9 * v / 256
        return np.log(squeezed / (1 - squeezed))

    y, h = y_of(v), 1e-5
    dy_dv = (y_of(v + h) - y_of(v - h)) / (2 * h)
    nll_v = (0.5 * y ** 2 + 0.5 * math.log(2 * math.pi) - np.log(dy_dv)).reshape(2, -1).sum(axis=1)
    with sg.no_grad():
        bpd = flow.bits_per_dim(x).numpy()
    np.testing.assert_allclose(bpd, nll_v / (4 * math.log(2)), rtol=1e-8)
    np.testing.assert_allclose(bits_per_dim_dequantized(flow.log_prob(x).numpy(), 4), bpd, rtol=1e-12)


def test_dequantised_density_sums_to_a_distribution_over_the_pixels():
    """The discrete model behind the bits per dimension, P(k) = ∫_[0,1) p_v(k + ν) dν, summed over the 256
    values of one pixel, is the base's mass that the logit maps into [0, 256): N(0, 1)'s within
    ±logit(0.95), 0.99681. (Forgetting the D ln 256 would make the sum 1/256 of that.)"""
    flow = logit_only_flow((1, 2, 2))  # four independent pixels; the first pixel's density is p_v(v)^(1/4)
    step = 1 / 64
    v = np.arange(0, 256, step) + step / 2  # a midpoint rule on every unit cell
    x = np.repeat(v / 256, 4).reshape(-1, 1, 2, 2)
    with sg.no_grad():
        bpd = flow.bits_per_dim(sg.tensor(x)).numpy()
    density = 2.0 ** -bpd  # p_v of one pixel: the four pixels are independent and equal here
    total = density.sum() * step
    inside = math.erf(math.log(0.95 / 0.05) / math.sqrt(2))
    assert abs(total - inside) < 1e-5, (total, inside)


def test_independent_pixels_baseline():
    train = np.array([[0, 255], [0, 7], [1, 7]], dtype=np.uint8)
    test = np.array([[0, 7]], dtype=np.uint8)
    expected = -(math.log2(2 / 3) + math.log2(2 / 3)) / 2
    assert independent_pixels_bits_per_dim(train, test, smoothing=0) == pytest.approx(expected)
    assert independent_pixels_bits_per_dim(train, test, smoothing=1e12) == pytest.approx(8.0)  # uniform: 8 bits


def shrink(k):
    """28×28 digits (N, 28, 28) to 14×14 (N, 1, 14, 14) uint8: the mean of each 2×2 block."""
    return np.round(k.reshape(-1, 14, 2, 14, 2).mean(axis=(2, 4))).astype(np.uint8)[:, None]


def train_on_small_digits(flow, lr: float, epochs: int):
    """Train ``flow`` on 512 training digits shrunk to 14×14 (Adam, batch 64); its test bits per dimension on
    200 shrunk test digits (one fixed dequantisation) before and after, and the two sets of digits."""
    train, test = (sg.data.load_mnist("embedded", split)[0] for split in ("train", "test"))
    train, test = shrink(train[:512]), shrink(test[:200])
    x_test = dequantize(sg.tensor(test), sg.tensor(np.random.default_rng(1).random(test.shape, dtype=np.float32)))
    with sg.no_grad():
        before = flow.bits_per_dim(x_test).mean().item()
    opt = optim.Adam(flow.parameters(), lr=lr)
    loader = sg.data.DataLoader(train, batch_size=64, shuffle=True, seed=0)
    for _ in range(epochs):
        for (k,) in loader:
            opt.zero_grad()
            flow.bits_per_dim(dequantize(k)).mean().backward()
            opt.step()
    with sg.no_grad():
        after = flow.bits_per_dim(x_test).mean().item()
    return before, after, train, test


def test_image_flow_learns_small_digits():
    """An ImageRealNVP (2 couplings per group, 16 channels) on 512 training digits shrunk to 14×14, 6 epochs of
    Adam at 3e-3 (a few seconds): the test bits per dimension fall from about 10.5 at the start (the logit's
    standard normal) below 6.5."""
    before, after, _, _ = train_on_small_digits(ImageRealNVP((1, 14, 14), couplings=2, hidden=16), lr=3e-3, epochs=6)
    assert before > 10 and after < 6.5, (before, after)


def test_mixture_cdf_learns_the_pixels_marginals():
    """The logit and a 4-logistic marginal per pixel, without couplings (a model of independent pixels), on
    the 512 small digits of the test above, 10 epochs of Adam at 1e-2 (under a second): from 7.8 bits per
    dimension to within 0.1 of the per-pixel histogram's 2.87 on the test digits (2.86 to 2.88 over five
    seeds): its narrow components do hold the background's mass on the cell [0, 1/256)."""
    flow = ImageRealNVP((1, 14, 14), couplings=0, components=4)
    before, after, train, test = train_on_small_digits(flow, lr=1e-2, epochs=10)
    histogram = independent_pixels_bits_per_dim(train, test)
    assert before > 7 and after < histogram + 0.1, (before, after, histogram)


def test_demo_mnist_writes_pictures_and_metrics_and_resumes(tmp_path, capsys):
    demo = load_demo("flow")
    out = str(tmp_path / "mnist")
    argv = ["--dataset", "mnist", "--limit", "64", "--couplings", "1", "--channels", "4", "--components", "2",
            "--samples", "4", "--out", out, "--quiet"]
    final, report = run_then_resume(demo, argv, capsys)
    assert 0 < final["test_bits_per_dim"] < 12 and 0 < final["independent_pixels_bits_per_dim"] < 8
    assert all("test_bits_per_dim" in record for record in report["history"])
    for name in ("samples", "samples_t0.7", "bits_per_dim"):
        assert os.path.getsize(os.path.join(out, f"{name}.png")) > 0, name
    with pytest.raises(SystemExit):
        demo.parse_args(["--dataset", "mnist", "--flow", "maf"])

"""Flows: every inverse undoes its forward, every log-determinant is log |det| of the autograd Jacobian (and a
wrong one is caught), a 2-D flow's density integrates to one, MAF's Jacobian is triangular in its ordering,
a flow learns the two moons, and the demo end to end."""

import math
import os

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import optim
from scratchgen.models.flow import MAF, AffineCoupling, Flow, MAFLayer, RealNVP
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
    """∂u/∂x per example, (N, D, D), row i from autograd's gradient of Σ_n u[n, i] (examples are independent)."""
    u, _ = bijection(x)
    rows = [sg.grad(u[:, i].sum(), x)[0].numpy() for i in range(u.shape[1])]
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

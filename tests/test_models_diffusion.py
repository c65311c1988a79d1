"""Denoising diffusion: the forward process, the posterior, the samplers and the bound, each against its
formula or a second derivation; then a network that learns, and the demo on tiny settings.

The schedule (``Diffusion.alpha_bars``, ...) lives on the active backend, and the forward process's
methods (``q_sample``, ``q_step``, ...) take and return its arrays: the tests move their NumPy data there
with ``sg.backend.asarray`` and compare on the host (``host``). The oracle networks compute, as networks
do, on the active backend (``xp``)."""

import json
import math
import os

import numpy as np
import pytest

import scratchgen as sg
from conftest import host, last_json_line, load_demo
from scratchgen import optim
from scratchgen.data import ring8
from scratchgen.models.diffusion import (
    PREDICTIONS, DenoisingMLP, Diffusion, cosine_schedule, ddim_timesteps, linear_schedule, sinusoidal_embedding,
)


class Oracle(sg.nn.Module):
    """The ideal ε-network for data known in advance: ε = (x_t − √ᾱ_t x_0)/√(1 − ᾱ_t), x_0 row by row."""

    def __init__(self, x0):
        super().__init__()
        self.x0 = x0

    def forward(self, x, t):
        xp = sg.backend.xp
        a_bar = self.alpha_bars[t][:, None]
        return (x - sg.tensor(xp.sqrt(a_bar) * xp.asarray(self.x0))) * sg.tensor(1 / xp.sqrt(1 - a_bar))


class StandardNormalOracle(sg.nn.Module):
    """E[ε | x_t] when the data are N(0, I): ε_θ(x_t, t) = √(1 − ᾱ_t) x_t (or 0, a network that knows nothing)."""

    def __init__(self, knows: bool = True):
        super().__init__()
        self.knows = knows

    def forward(self, x, t):
        return x * sg.tensor(sg.backend.xp.sqrt(1 - self.alpha_bars[t])[:, None] * self.knows)


def with_net(net, **kwargs):
    """A Diffusion around an oracle, which is given the schedule it must know."""
    diffusion = Diffusion(net, **kwargs)
    net.alpha_bars = diffusion.alpha_bars
    return diffusion


# ------------------------------------------------------------------------------- schedules and codes


def test_schedules_match_their_papers():
    betas = linear_schedule(1000)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(0.02)  # Ho et al., section 4
    t = np.arange(1001)
    f = np.cos((t / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2
    alpha_bars = np.cumprod(1 - cosine_schedule(1000))
    np.testing.assert_allclose(alpha_bars[:990], (f / f[0])[1:991], rtol=1e-10)  # where β is not clipped
    assert ddim_timesteps(1000, 5) == [1000, 750, 500, 251, 1] and ddim_timesteps(4, 4) == [4, 3, 2, 1]


def test_sinusoidal_embedding_is_sines_then_cosines():
    code = host(sinusoidal_embedding(np.array([0, 7]), 8))
    assert code.shape == (2, 8) and code.dtype == np.float32
    np.testing.assert_allclose(code[0], [0, 0, 0, 0, 1, 1, 1, 1])
    frequencies = 10_000.0 ** (-np.arange(4) / 4)
    np.testing.assert_allclose(code[1], np.concatenate([np.sin(7 * frequencies), np.cos(7 * frequencies)]), rtol=1e-6)


# ------------------------------------------------------------------------------- the forward process


def test_closed_form_equals_composed_steps_by_formula():
    """Mean and variance of x_t after t steps of q(x_t | x_{t−1}) = N(√α_t x_{t−1}, β_t): the recurrence
    m_t = √α_t m_{t−1}, v_t = α_t v_{t−1} + β_t from m_0 = x_0, v_0 = 0 gives √ᾱ_t x_0 and 1 − ᾱ_t."""
    for schedule in ("linear", "cosine"):
        d = with_net(Oracle(None), T=100, schedule=schedule)
        alphas, betas = host(d.alphas), host(d.betas)
        x0 = np.array([[1.5, -0.3]])
        mean, variance = x0.copy(), 0.0
        for t in range(1, 101):
            mean, variance = math.sqrt(alphas[t]) * mean, alphas[t] * variance + betas[t]
            closed_mean, closed_variance = host(d.q_mean_variance(sg.backend.asarray(x0), t))
            np.testing.assert_allclose(closed_mean, mean, rtol=1e-12)
            np.testing.assert_allclose(closed_variance, variance, rtol=1e-12)


def test_closed_form_equals_composed_steps_by_sampling():
    """200,000 chains of 37 one-step transitions land where one jump q(x_37 | x_0) says."""
    d = with_net(Oracle(None), T=100)
    n, t = 200_000, 37
    x0 = sg.backend.asarray(np.tile([[1.5, -0.3]], (n, 1)))
    x = x0.copy()
    for step in range(1, t + 1):
        x = d.q_step(x, step)
    jumped = d.q_sample(x0, t)
    mean, variance = host(d.q_mean_variance(x0[:1], t))
    variance = variance.item()
    for sample in (host(x), host(jumped)):  # four standard errors: for the mean √(v/n), for the variance v·√(2/n)
        np.testing.assert_allclose(sample.mean(axis=0), mean[0], atol=4 * math.sqrt(variance / n))
        np.testing.assert_allclose(sample.var(axis=0), variance, atol=4 * variance * math.sqrt(2 / n))


def test_posterior_is_bayes_rule():
    """q(x_{t−1} | x_t, x_0) ∝ q(x_t | x_{t−1}) q(x_{t−1} | x_0), a product of two Gaussians in x_{t−1}:
    precision α_t/β_t + 1/(1 − ᾱ_{t−1}), mean (√α_t x_t/β_t + √ᾱ_{t−1} x_0/(1 − ᾱ_{t−1})) / precision."""
    d = with_net(Oracle(None), T=50, schedule="cosine")
    rng = np.random.default_rng(0)
    x0, x_t = rng.standard_normal((49, 2)), rng.standard_normal((49, 2))
    t = np.arange(2, 51)
    a, b, a_bar_prev = host(d.alphas)[t][:, None], host(d.betas)[t][:, None], host(d.alpha_bars)[t - 1][:, None]
    precision = a / b + 1 / (1 - a_bar_prev)
    mean, variance = host(d.q_posterior(sg.backend.asarray(x0), sg.backend.asarray(x_t), t))
    np.testing.assert_allclose(variance, 1 / precision, rtol=1e-10)
    np.testing.assert_allclose(mean, (np.sqrt(a) * x_t / b + np.sqrt(a_bar_prev) * x0 / (1 - a_bar_prev)) / precision,
                               rtol=1e-10)


# ------------------------------------------------------------------------------------------ samplers


def test_ddim_with_eta_0_is_deterministic():
    d = with_net(DenoisingMLP(), T=100)
    x_T = np.random.default_rng(0).standard_normal((50, 2)).astype(np.float32)
    sg.manual_seed(1)
    first = d.sample(50, "ddim", steps=10, x_T=x_T).numpy()
    sg.manual_seed(2)  # another random stream: η = 0 draws nothing from it
    np.testing.assert_array_equal(d.sample(50, "ddim", steps=10, x_T=x_T).numpy(), first)
    assert not np.array_equal(d.sample(50, "ddim", steps=10, eta=1.0, x_T=x_T).numpy(), first)


def test_ddim_with_eta_1_over_all_steps_is_the_ancestral_sampler():
    """σ² = β̃_t and mean μ̃(x_t, x̂_0) = μ_θ: the same path as Ho et al.'s sampler, given the same noise."""
    d = with_net(DenoisingMLP(), T=60)
    x_T = np.random.default_rng(0).standard_normal((40, 2)).astype(np.float32)
    sg.manual_seed(3)
    ancestral = [x for _, x in d.ancestral_steps(40, x_T)]
    sg.manual_seed(3)
    ddim = [x for _, x in d.ddim_steps(40, None, eta=1.0, x_T=x_T)]
    assert len(ancestral) == len(ddim) == 61
    for a, b in zip(ancestral, ddim):
        np.testing.assert_allclose(host(a), host(b), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("sampler, steps, eta", [("ancestral", None, 0.0), ("ddim", None, 0.0), ("ddim", 7, 0.0),
                                                 ("ddim", 7, 1.0)])
def test_a_network_that_knows_the_noise_makes_the_sampler_return_x0(sampler, steps, eta):
    x0 = np.random.default_rng(0).standard_normal((30, 2)) * 2
    d = with_net(Oracle(x0), T=100, schedule="cosine")
    x_T = np.random.default_rng(1).standard_normal((30, 2))
    np.testing.assert_allclose(d.sample(30, sampler, steps, eta, x_T=x_T).numpy(), x0, atol=1e-8)


# ------------------------------------------------------------------------------------------ the bound


def test_bound_terms_sum_to_minus_log_density_on_standard_normal_data():
    """Data N(0, I) are the forward chain's stationary law: every x_t is N(0, I) and the true reverse step
    is q(x_{t−1} | x_t) = N(√α_t x_t, β_t). A model with σ_t² = β_t and ε_θ = E[ε | x_t] = √(1 − ᾱ_t) x_t
    has exactly that reverse step, so p_θ(x_{0:T}) = q(x_{0:T}), the bound's gap KL(q(x_{1:T}|x_0) ‖
    p_θ(x_{1:T}|x_0)) is 0, and for each x_0 the terms' expectation is −log N(x_0; 0, I). Each term is
    estimated at random x_t (its sum has a standard deviation of about 1.6 nats), so the check is on a mean
    over 10,000 draws, to four standard errors (about 0.06 nats); a network that predicts ε = 0 misses by
    more than a nat."""
    d = with_net(StandardNormalOracle(), T=200, variance="beta")
    points = np.array([[0.0, 0.0], [1.0, -2.0], [-0.5, 0.3]])
    draws = 10_000
    x0 = np.repeat(points, draws, axis=0)
    terms = d.bound_terms(x0)
    assert terms.transitions.shape == (199, len(x0))
    a_bar_T = float(d.alpha_bars[-1])  # L_T in closed form: ½ Σ (ᾱ_T x_0² + (1 − ᾱ_T) − 1 − log(1 − ᾱ_T))
    np.testing.assert_allclose(terms.prior.numpy(), 0.5 * (a_bar_T * (x0 ** 2).sum(1) - 2 * a_bar_T
                                                           - 2 * np.log(1 - a_bar_T)), rtol=1e-10, atol=1e-15)
    bound = terms.bound.numpy().reshape(len(points), draws)
    minus_log_density = 0.5 * (points ** 2).sum(axis=1) + math.log(2 * math.pi)
    error = 4 * bound.std(axis=1) / math.sqrt(draws)
    assert (error < 0.08).all()
    np.testing.assert_array_less(np.abs(bound.mean(axis=1) - minus_log_density), error)

    ignorant = with_net(StandardNormalOracle(knows=False), T=200, variance="beta")
    assert (ignorant.bound_terms(points).bound.numpy() > minus_log_density + 1).all()


def test_simple_loss_is_the_mean_squared_noise_error():
    d = with_net(Oracle(np.zeros((4, 2))), T=10)
    noise = np.random.default_rng(0).standard_normal((4, 2))
    assert d.loss(np.zeros((4, 2)), t=np.array([1, 4, 7, 10]), noise=noise).item() == pytest.approx(0, abs=1e-12)
    blind = with_net(StandardNormalOracle(knows=False), T=10)  # predicts 0: the loss is mean ε²
    assert blind.loss(np.zeros((4, 2)), t=3, noise=noise).item() == pytest.approx((noise ** 2).mean())


# ------------------------------------------------------------------ what the network predicts; labels


class TargetOracle(sg.nn.Module):
    """The ideal network for data known in advance, whatever it predicts: from x_t it infers the noise
    ε = (x_t − √ᾱ_t x_0)/√(1 − ᾱ_t) and returns the Diffusion's target for (x_0, ε)."""

    def __init__(self, x0):
        super().__init__()
        self.x0 = x0

    def forward(self, x, t):
        xp = sg.backend.xp
        a_bar, x0 = self.diffusion.alpha_bars[t][:, None], xp.asarray(self.x0)
        noise = (x.data - xp.sqrt(a_bar) * x0) / xp.sqrt(1 - a_bar)
        return sg.tensor(self.diffusion.target(x0, t, noise))


@pytest.mark.parametrize("prediction", PREDICTIONS)
def test_every_prediction_reads_back_the_true_noise(prediction):
    """The target and its reading back are inverse: a network that outputs the exact target has zero loss,
    ε_θ equal to the true noise, and samplers that return x_0."""
    x0 = np.random.default_rng(0).standard_normal((30, 2)) * 2
    oracle = TargetOracle(x0)
    d = oracle.diffusion = Diffusion(oracle, T=100, schedule="cosine", prediction=prediction)
    t, noise = np.arange(1, 91, 3), np.random.default_rng(1).standard_normal(x0.shape)
    x_t = d.q_sample(sg.backend.asarray(x0), t, sg.backend.asarray(noise))
    np.testing.assert_allclose(d.predict_eps(sg.tensor(x_t), t).numpy(), noise, rtol=1e-6, atol=1e-6)
    assert d.loss(x0, t=t, noise=noise).item() == pytest.approx(0, abs=1e-20)
    x_T = np.random.default_rng(2).standard_normal(x0.shape)
    for sampler, steps in (("ancestral", None), ("ddim", 7)):
        np.testing.assert_allclose(d.sample(30, sampler, steps, x_T=x_T).numpy(), x0, atol=1e-6)


def test_v_loss_is_the_noise_loss_over_alpha_bar():
    """The module docstring's weighting: with x_t fixed, ‖ε̂ − ε‖² = ᾱ_t ‖v̂ − v‖², so v-prediction weighs
    the noisy steps (small ᾱ_t) 1/ᾱ_t times more than ε-prediction does."""
    sg.manual_seed(0)
    net = DenoisingMLP()
    d = Diffusion(net, T=1000, prediction="v")
    rng = np.random.default_rng(0)
    x0, noise = rng.standard_normal((2, 6, 2), dtype=np.float32)
    t = np.array([1, 50, 300, 600, 900, 1000])
    on_device = sg.backend.asarray(x0), t, sg.backend.asarray(noise)
    x_t = sg.tensor(d.q_sample(*on_device))
    v_error = ((net(x_t, t).numpy() - host(d.target(*on_device))) ** 2).sum(axis=1)
    eps_error = ((d.predict_eps(x_t, t).numpy() - noise) ** 2).sum(axis=1)
    alpha_bars = host(d.alpha_bars)
    np.testing.assert_allclose(eps_error, alpha_bars[t] * v_error, rtol=1e-3)
    assert alpha_bars[1000] < 1e-4 < 0.99 < alpha_bars[1]  # from almost no weight to the same weight


class LabelledNet(sg.nn.Module):
    """A conditional "network" that records the labels it is given and answers ε_θ(x, t, y) = y in every
    coordinate, with label 10 the null label ∅."""

    null_label = 10

    def forward(self, x, t, y=None):
        self.seen = np.array(host(y))  # a copy on the host
        return x * 0 + sg.tensor(self.seen.astype(np.float64)[:, None])


def test_label_dropout_replaces_a_share_of_the_labels_with_the_null_label():
    d = Diffusion(LabelledNet(), T=10)
    y = np.arange(20_000) % 10
    sg.manual_seed(0)
    d.loss(np.zeros((20_000, 2)), y=y, drop_labels=0.1)
    dropped = d.net.seen == 10
    assert 0.095 < dropped.mean() < 0.105  # 10% ± 2.4 standard errors
    np.testing.assert_array_equal(d.net.seen[~dropped], y[~dropped])
    d.loss(np.zeros((100, 2)), y=y[:100])
    np.testing.assert_array_equal(d.net.seen, y[:100])
    with pytest.raises(ValueError, match="drop_labels needs labels"):
        d.loss(np.zeros((4, 2)), drop_labels=0.1)
    with pytest.raises(ValueError, match="drop_labels is a probability"):
        d.loss(np.zeros((4, 2)), y=y[:4], drop_labels=1.5)


def test_guidance_mixes_the_conditional_and_unconditional_noise():
    """One DDIM step from T to 0 returns x̂_0 = (x_T − √(1 − ᾱ_T) ε̃)/√ᾱ_T, where ε̃ = (1 + w) ε_θ(x, y) − w ε_θ(x, ∅)
    = (1 + w) y − 10 w with the labelled net."""
    d = Diffusion(LabelledNet(), T=10)
    x_T, y, w = np.zeros((3, 2)), np.array([0, 4, 9]), 2.0
    a_bar = float(d.alpha_bars[10])
    for guidance, eps in ((0.0, y), (w, (1 + w) * y - 10 * w)):
        x0 = d.sample(3, "ddim", steps=[10], x_T=x_T, y=y, guidance=guidance).numpy()
        np.testing.assert_allclose(x0, np.repeat(-np.sqrt(1 - a_bar) * eps[:, None] / np.sqrt(a_bar), 2, axis=1))
    with pytest.raises(ValueError, match="guidance needs labels"):
        d.sample(3, "ddim", steps=[10], x_T=x_T, guidance=1.0)
    with pytest.raises(ValueError, match="3 samples but labels of shape"):
        d.sample(3, "ddim", steps=[10], x_T=x_T, y=np.arange(4))


@pytest.mark.parametrize("sampler, steps", [("ancestral", None), ("ddim", 10)])
def test_clipping_holds_the_predicted_x0_and_changes_nothing_inside(sampler, steps):
    """An oracle of data at ±3: clipped to [−1, 1], every sample ends at ±1; with a bound no x̂_0 reaches,
    the path is the unclipped one (for the ancestral sampler, μ̃_t(x_t, x̂_0) equals μ_θ)."""
    x0 = np.where(np.random.default_rng(0).random((20, 2)) < 0.5, -3.0, 3.0)
    d = with_net(Oracle(x0), T=50)
    x_T = np.random.default_rng(1).standard_normal(x0.shape)
    sg.manual_seed(0)
    free = d.sample(20, sampler, steps, x_T=x_T).numpy()
    sg.manual_seed(0)
    np.testing.assert_allclose(d.sample(20, sampler, steps, x_T=x_T, clip=1e6).numpy(), free, atol=1e-9)
    np.testing.assert_allclose(d.sample(20, sampler, steps, x_T=x_T, clip=1.0).numpy(), np.sign(x0))


# ------------------------------------------------------------------------------------------ learning


def test_the_mlp_learns_ring8_beyond_any_gaussian_fit():
    """Standardised ring8 has mean 0 and covariance I. The best ε-predictor for Gaussian data of that
    covariance is linear, √(1 − ᾱ_t) x_t, with loss E_t[ᾱ_t] = 0.2755 for the linear schedule: a loss
    below 0.24 means the network has learned the ring's shape, not just its two moments. (It sits near
    0.2755 for the first few hundred steps, and reaches 0.222 after 1,200, in about 3 s.)"""
    sg.manual_seed(0)
    d = Diffusion(DenoisingMLP(), T=1000)
    opt = optim.Adam(d.parameters(), lr=1e-3)
    reference = ring8(20_000, rng=0)
    mean, scale = reference.mean(axis=0), reference.std(axis=0)
    for _ in range(1200):
        loss = d.loss(sg.tensor((ring8(256) - mean) / scale))
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = sg.tensor((ring8(4000, rng=1) - mean) / scale)
    with sg.no_grad():
        losses = [d.loss(test).item() for _ in range(5)]  # 20,000 (x_0, t, ε) triples
    gaussian_fit = float(d.alpha_bars[1:].mean())
    assert gaussian_fit == pytest.approx(0.2755, abs=1e-4)
    assert np.mean(losses) < 0.24 < gaussian_fit


# ------------------------------------------------------------------------------------------ the demo


@pytest.fixture(scope="module")
def demo():
    return load_demo("diffusion")


TINY = ["--epochs", "1", "--steps-per-epoch", "30", "--T", "20", "--batch-size", "64", "--eval-samples", "200",
        "--bound-points", "20", "--quiet"]


def test_demo_writes_its_pictures_and_metrics_and_resumes(demo, tmp_path, capsys):
    out = str(tmp_path / "ring")
    demo.main(TINY + ["--out", out])
    assert set(last_json_line(capsys)) == {"steps", "train_wall_time_s", "sample_wall_time_s", "modes",
                                           "high_quality", "test_elbo", "true_test_log_likelihood"}
    with pytest.warns(UserWarning, match="differ from the checkpoint"):  # the sampler may change: it is warned of
        demo.main(TINY[2:] + ["--epochs", "2", "--out", out, "--resume", "--sampler", "ddim", "--ddim-steps", "5"])
    final = last_json_line(capsys)
    with open(os.path.join(out, "metrics.json")) as file:
        report = json.load(file)
    assert report["final"] == final and final["steps"] == 60
    assert report["changed_on_resume"][0]["sampler"] == ["ancestral", "ddim"]
    assert [record["epoch"] for record in report["history"]] == [1, 2]
    assert 0 <= final["modes"] <= 8 and 0 <= final["high_quality"] <= 1
    for name in ("samples", "reverse_process", "losses"):
        assert os.path.getsize(os.path.join(out, f"{name}.png")) > 0, name


def test_demo_on_two_moons_has_no_mode_scores(demo, tmp_path, capsys):
    demo.main(TINY + ["--dataset", "two_moons", "--schedule", "cosine", "--out", str(tmp_path / "moons")])
    assert set(last_json_line(capsys)) == {"steps", "train_wall_time_s", "sample_wall_time_s", "test_elbo"}


MNIST_TINY = ["--dataset", "mnist", "--limit", "64", "--epochs", "1", "--base-channels", "8", "--T", "50",
              "--eval-samples", "20", "--ddim-steps", "3", "--judge-subset", "300", "--judge-epochs", "1", "--quiet"]


def test_mnist_demo_writes_its_pictures_and_the_judges_figures(demo, tmp_path, capsys):
    out = str(tmp_path / "mnist")
    demo.main(MNIST_TINY + ["--out", out])
    final = last_json_line(capsys)
    assert final["steps"] == 2 and len(final["class_shares"]) == 10  # 64 digits at the default batch of 32
    assert 0 < final["inception_score"] <= 10 and final["frechet_distance"] >= 0
    assert final["real_inception_score"] > 1 and "nearest_train_distance_median" in final
    for name in ("samples", "reverse_process", "nearest_training", "losses"):
        assert os.path.getsize(os.path.join(out, f"{name}.png")) > 0, name


def test_mnist_demo_with_guidance_asks_for_every_digit(demo, tmp_path, capsys):
    demo.main(MNIST_TINY + ["--guidance", "1", "--out", str(tmp_path / "guided")])
    final = last_json_line(capsys)
    assert final["guidance"] == 1 and 0 <= final["conditional_accuracy"] <= 1


@pytest.mark.parametrize("argv, message", [
    (["--guidance", "2"], "--guidance is for --dataset mnist"),
    (["--eta", "1"], "need --sampler ddim"),
    (["--sampler", "ddim", "--ddim-steps", "30", "--T", "20"], "more than --T"),
    (["--eta", "1.5", "--sampler", "ddim"], "from 0 to 1"),
])
def test_demo_refuses_bad_arguments_before_any_work(demo, argv, message, capsys):
    with pytest.raises(SystemExit):
        demo.parse_args(argv)
    assert message in capsys.readouterr().err

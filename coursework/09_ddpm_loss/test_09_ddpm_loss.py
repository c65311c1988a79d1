"""Grader of assignment 9: the DDPM training loss (Ho et al. 2020, Algorithm 1).

    python -m pytest coursework/09_ddpm_loss                            # grades ddpm_loss.py in this folder
    python -m pytest coursework/09_ddpm_loss --solution my_ddpm_loss.py   # grades another file

Checks, in the order a student meets them: q_sample against the library's
``scratchgen.models.diffusion.Diffusion.q_sample`` for given noise (exactly), and its mean √ᾱ_t x_0 and
variance 1 − ᾱ_t over 20,000 draws of its own noise; the loss against the library's ``Diffusion.loss`` for
fixed t and ε; t drawn uniformly from 1..T and ε from N(0, I); the loss's gradient in every parameter of
the network, against the library's; and a small denoiser trained with your loss on the standardised ring
of 8 Gaussians, measured with the library's loss.

Your functions take arrays of the active backend (NumPy, or CuPy on a GPU), as ``Diffusion.alpha_bars`` is
one: the grader makes its data with NumPy on the host, moves it there with ``asarray``, and brings what
comes back to the host with ``to_numpy`` for its own arithmetic.
"""

import numpy as np

import scratchgen as sg
from scratchgen import optim
from scratchgen.backend import asarray, to_numpy
from scratchgen.data import ring8
from scratchgen.models.diffusion import DenoisingMLP, Diffusion
from scratchgen.nn import functional as F

STARTER = "ddpm_loss.py"
REQUIRED = ("q_sample", "ddpm_loss")


def _diffusion(T=100, seed=0, dtype=np.float64):
    sg.manual_seed(seed)
    net = DenoisingMLP(hidden=(16, 16), embedding_dim=8)
    for p in net.parameters():
        p.data = p.data.astype(dtype)
    return Diffusion(net, T=T)


def _data(n=6, seed=0):
    """x_0 and ε, NumPy arrays on the host."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 2)) + np.array([2.0, -1.0]), rng.standard_normal((n, 2))


def _q_sample_mistake(x_t, x0, t, noise, alpha_bars) -> str:
    """Which classic mistake gives x_t, if one does; '' otherwise. Host arrays, alpha_bars included."""
    alpha_bars = to_numpy(alpha_bars)
    a = alpha_bars[t][:, None]
    a_prev = alpha_bars[t - 1][:, None]
    guesses = {
        "x_t = ᾱ_t x_0 + (1 − ᾱ_t) ε: the square roots are missing. √ᾱ_t scales the mean and 1 − ᾱ_t is the "
        "variance, so ε is scaled by its square root, √(1 − ᾱ_t)": a * x0 + (1 - a) * noise,
        "ε is scaled by 1 − ᾱ_t, the variance: scale it by the standard deviation √(1 − ᾱ_t)":
            np.sqrt(a) * x0 + (1 - a) * noise,
        "you used ᾱ_{t−1} (alpha_bars[t − 1]), one step too early: the array holds ᾱ_0 = 1 at index 0, so ᾱ_t "
        "is alpha_bars[t]": np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * noise,
    }
    return next((why for why, guess in guesses.items() if np.allclose(x_t, guess, rtol=1e-6, atol=1e-9)), "")


# -------------------------------------------------------------------------------------------- q_sample


def test_q_sample_is_exact_for_given_noise(solution):
    d = _diffusion()
    x0, noise = _data()
    t = np.array([1, 2, 10, 50, 99, 100])
    got = to_numpy(solution.q_sample(asarray(x0), asarray(t), d.alpha_bars, asarray(noise)))
    expected = to_numpy(d.q_sample(asarray(x0), asarray(t), asarray(noise)))
    assert got.shape == x0.shape, f"q_sample gave shape {got.shape} for x0 of shape {x0.shape}"
    mistake = _q_sample_mistake(got, x0, t, noise, d.alpha_bars)
    assert np.allclose(got, expected, rtol=1e-9, atol=1e-12), (
        f"for t = {t.tolist()} and given ε, x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε differs from yours by up to "
        f"{np.abs(got - expected).max():.3g}{': ' + mistake if mistake else ''}")
    x32 = to_numpy(solution.q_sample(asarray(x0, np.float32), asarray(t), d.alpha_bars, asarray(noise, np.float32)))
    assert x32.dtype == np.float32, (f"q_sample turned float32 data into {x32.dtype}: cast ᾱ_t (a float64 array) "
                                     f"to x0.dtype first")


def test_q_sample_has_the_mean_and_variance_of_q(solution):
    d = _diffusion()
    n, point = 20_000, np.array([2.0, -1.0])
    for step in (30, 1):
        x_t = to_numpy(solution.q_sample(asarray(np.tile(point, (n, 1))), asarray(np.full(n, step)), d.alpha_bars))
        x_t = x_t.astype(np.float64)
        a_bar, a_bar_before = float(d.alpha_bars[step]), float(d.alpha_bars[step - 1])
        mean, variance = x_t.mean(axis=0), x_t.var(axis=0)
        # over 20,000 draws the standard error of the mean is √((1 − ᾱ_t)/20,000) ≤ 0.007, that of the
        # variance about 1% of it: the tolerances are more than 4 standard errors
        hint = (" (yours is ᾱ_t x_0: the mean is scaled by √ᾱ_t)" if np.allclose(mean, a_bar * point, atol=0.03) else
                f" (yours is √ᾱ_{{t−1}} x_0: ᾱ_t is alpha_bars[t], not alpha_bars[t − 1])"
                if np.allclose(mean, np.sqrt(a_bar_before) * point, atol=0.03) else "")
        assert np.allclose(mean, np.sqrt(a_bar) * point, atol=0.03), (
            f"at t = {step}, ᾱ_t = {a_bar:.4f}: over {n} draws from the point {point.tolist()} your x_t has mean "
            f"{np.round(mean, 4).tolist()}; q(x_t | x_0) has mean √ᾱ_t x_0 = "
            f"{np.round(np.sqrt(a_bar) * point, 4).tolist()}{hint}")
        hint = (" (yours is 0: no noise at all; ᾱ_1 is alpha_bars[1], not alpha_bars[0] = 1)"
                if variance.max() == 0 else
                f" (yours is (1 − ᾱ_t)² = {(1 - a_bar) ** 2:.5g}: scale ε by √(1 − ᾱ_t), the standard deviation)"
                if np.allclose(variance, (1 - a_bar) ** 2, rtol=0.05) else
                f" (yours is 1 − ᾱ_{{t−1}} = {1 - a_bar_before:.5g}: ᾱ_t is alpha_bars[t])"
                if np.allclose(variance, 1 - a_bar_before, rtol=0.02) else "")
        assert np.allclose(variance, 1 - a_bar, rtol=0.05), (
            f"at t = {step}: your x_t has variance {np.round(variance, 5).tolist()} per coordinate; q(x_t | x_0) has "
            f"variance 1 − ᾱ_t = {1 - a_bar:.5g}{hint}")


# ------------------------------------------------------------------------------------------- the loss


def test_loss_matches_the_library_for_fixed_t_and_noise(solution):
    d = _diffusion()
    x0, noise = _data()
    t = np.array([1, 3, 10, 40, 77, 100])
    on_device = asarray(x0), asarray(t), asarray(noise)
    got = solution.ddpm_loss(d.net, on_device[0], d.alpha_bars, *on_device[1:]).item()
    expected = d.loss(*on_device).item()
    with sg.no_grad():
        prediction = d.net(sg.tensor(d.q_sample(*on_device)), on_device[1])
        predicting_x0 = F.mse_loss(prediction, sg.tensor(x0)).item()
    x_t = to_numpy(solution.q_sample(on_device[0], on_device[1], d.alpha_bars, on_device[2]))
    mistake = _q_sample_mistake(x_t, x0, t, noise, d.alpha_bars)
    hint = (f" Your q_sample is wrong ({mistake})." if mistake else
            " That is the squared error against x_0: the network predicts the noise ε that made x_t, and the loss "
            "compares it with ε." if abs(got - predicting_x0) < 1e-9 * max(1.0, predicting_x0) else
            f" That is {x0.size} times the mean: average over the batch and the coordinates (F.mse_loss)."
            if abs(got - x0.size * expected) < 1e-9 * x0.size * expected else
            " That is the mean over the batch of the sum over coordinates; take the mean over both."
            if abs(got - 2 * expected) < 1e-9 * expected else "")
    assert abs(got - expected) < 1e-9 * max(1.0, expected), (
        f"with fixed t and ε, L_simple = mean (ε − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t))² is {expected:.6g} (the "
        f"library's Diffusion.loss with the same network); yours is {got:.6g}.{hint}")


class _Recorder(sg.nn.Module):
    """A noise predictor that always answers 0 (so the loss is mean ε²) and keeps the steps it is shown."""

    def __init__(self):
        super().__init__()
        self.scale = sg.tensor(np.zeros(1), requires_grad=True)
        self.steps = []

    def forward(self, x, t):
        self.steps.append(to_numpy(t))
        return x * self.scale


def test_loss_draws_t_uniformly_from_1_to_T_and_the_noise_from_a_standard_normal(solution):
    T, n = 10, 20_000
    d = _diffusion(T=T)
    net = _Recorder()
    mean_square = solution.ddpm_loss(net, asarray(np.zeros((n, 2))), d.alpha_bars).item()
    assert net.steps, "ddpm_loss never called the network"
    t = net.steps[-1]
    assert t.shape == (n,), f"t had shape {t.shape} for {n} points; expected ({n},): one step per point"
    assert t.min() >= 1 and t.max() <= T, (
        f"t ranged over {t.min()}..{t.max()} with T = {T}: steps run from 1 to T"
        + (" (rng.integers(1, T + 1) draws from 1 to T; rng.integers(0, T) from 0 to T − 1)" if t.min() == 0 else ""))
    shares = np.bincount(t, minlength=T + 1)[1:] / n
    assert np.abs(shares - 1 / T).max() < 0.01, (  # 0.01 is about 5 standard errors of a share
        f"over {n} draws the shares of the steps 1..{T} were {np.round(shares, 3).tolist()}; uniform is {1 / T} each")
    # the network predicts 0, so the loss is the mean of ε² over 40,000 numbers: 1 within 0.05 (7 standard errors)
    hint = (" Yours is 0 because the data are 0 here: the target is x_0, not the noise ε." if mean_square < 1e-12 else
            " Draw ε with sg.backend.rng().standard_normal, and compare the prediction with it.")
    assert abs(mean_square - 1) < 0.05, (
        f"from data x_0 = 0 and with a network that predicts 0, your loss is {mean_square:.4f}; it should be the mean "
        f"of ε² over {2 * n} numbers, 1 for ε ~ N(0, I) (within 0.05).{hint}")


def test_gradients_reach_the_network(solution):
    d = _diffusion(seed=1)
    x0, noise = _data(seed=1)
    x0, t, noise = asarray(x0), asarray(np.array([2, 5, 20, 50, 80, 99])), asarray(noise)
    loss = solution.ddpm_loss(d.net, x0, d.alpha_bars, t, noise)
    assert isinstance(loss, sg.Tensor) and loss.requires_grad, (
        "ddpm_loss returned something with no gradient: compute the loss from the network's output Tensor with "
        "Tensor ops (F.mse_loss), never on .numpy() arrays or with .item()")
    d.net.zero_grad()
    loss.backward()
    yours = {name: None if p.grad is None else to_numpy(p.grad).copy() for name, p in d.net.named_parameters()}
    d.net.zero_grad()
    d.loss(x0, t, noise).backward()
    for name, p in d.net.named_parameters():
        assert yours[name] is not None, f"your loss sent no gradient into the network's {name}"
        library = to_numpy(p.grad)
        assert np.allclose(yours[name], library, rtol=1e-6, atol=1e-12), (
            f"the gradient of your loss in {name} differs from that of the library's by up to "
            f"{np.abs(yours[name] - library).max():.3g}: compare the loss's value first (the check above)")


# ------------------------------------------------------------------------------------------ learning


def test_a_denoiser_trained_with_your_loss_learns_the_ring(solution):
    """The standardised ring (mean 0, covariance I): the best predictor that sees only its two moments is
    linear, √(1 − ᾱ_t) x_t, whose loss is E_t[ᾱ_t] = 0.271 for T = 100; a correct loss takes a 64-64 network
    to about 0.228 in 600 Adam steps (about a second), measured with the library's loss on fresh points."""
    sg.manual_seed(0)
    d = Diffusion(DenoisingMLP(hidden=(64, 64), embedding_dim=16), T=100)
    opt = optim.Adam(d.parameters(), lr=2e-3)
    reference = ring8(20_000, rng=0)
    mean, scale = reference.mean(axis=0), reference.std(axis=0)
    for _ in range(600):
        loss = solution.ddpm_loss(d.net, asarray((ring8(256) - mean) / scale), d.alpha_bars)
        opt.zero_grad()
        loss.backward()
        opt.step()
    test = asarray((ring8(4000, rng=1) - mean) / scale)
    sg.manual_seed(1)
    with sg.no_grad():
        measured = float(np.mean([d.loss(test).item() for _ in range(5)]))  # 20,000 (x_0, t, ε) triples
    gaussian_fit = float(d.alpha_bars[1:].mean())
    assert measured < 0.25, (
        f"after 600 Adam steps with your loss, the library's loss on fresh points is {measured:.4f}; the best "
        f"Gaussian fit gets {gaussian_fit:.4f}, and a correct loss reaches about 0.228 (below 0.25 passes). The "
        f"library measures how well the network predicts ε from √ᾱ_t x_0 + √(1 − ᾱ_t) ε at t ~ U{{1..T}}: a loss "
        f"that makes x_t another way, or asks for another target, trains it for another task")

"""Grader of assignment 3: the VAE's reparameterisation and loss.

    python -m pytest coursework/03_vae                            # grades vae_loss.py in this folder
    python -m pytest coursework/03_vae --solution my_vae_loss.py   # grades another file

Gradient checks alone cannot catch the classic VAE bug, a sampler and a KL that disagree about what
logvar means: each half is differentiated correctly. So besides gradcheck the grader pins the
convention σ = exp(½·logvar) with known values, compares every term with the library's
``scratchgen.models.vae`` on a real model, and trains a small VAE with your loss, then measures it with
the library's ELBO.
"""

import math

import numpy as np

import scratchgen as sg
from scratchgen import optim
from scratchgen.models import DenseVAE
from scratchgen.models import vae as library
from scratchgen.models.vae import evaluate
from scratchgen.nn import functional as F

STARTER = "vae_loss.py"
REQUIRED = ("reparameterize", "gaussian_kl", "vae_loss")


def _t(array, requires_grad=False):
    return sg.tensor(np.asarray(array, dtype=np.float64), requires_grad=requires_grad)


def _gaussians(n=5, d=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d)), rng.standard_normal((n, d)) * 0.7, rng.standard_normal((n, d))


def test_reparameterize_uses_sigma_equal_to_exp_half_logvar(solution):
    z = float(solution.reparameterize(_t([[0.0]]), _t([[math.log(9.0)]]), _t([[1.0]])).numpy().reshape(-1)[0])
    diagnosis = {9.0: "σ = exp(logvar) is the variance, not the standard deviation",
                 4.5: "σ = exp(logvar) / 2 halves the variance, not its logarithm",
                 math.log(9.0) / 2: "the ½·logvar needs an exp"}
    known = next((why for value, why in diagnosis.items() if abs(z - value) < 1e-6), "")
    assert abs(z - 3.0) < 1e-9, (f"with μ = 0, logvar = log 9 (variance 9, σ = 3) and ε = 1, z = μ + σ·ε should "
                                 f"be 3, got {z:.6g}. {known}")


def test_reparameterize_matches_the_library(solution):
    mu, logvar, eps = (_t(a) for a in _gaussians())
    got = solution.reparameterize(mu, logvar, eps).numpy()
    expected = library.reparameterize(mu, logvar, eps).numpy()
    assert np.allclose(got, expected, rtol=1e-12), (
        f"reparameterize differs from scratchgen.models.vae.reparameterize by up to {np.abs(got - expected).max():.3g}")


def test_gradients_flow_through_the_sample(solution):
    mu, logvar, eps = _gaussians()
    try:
        sg.gradcheck(lambda m, v: solution.reparameterize(m, v, _t(eps)), [_t(mu, True), _t(logvar, True)])
    except sg.GradcheckError as err:
        raise AssertionError(f"{err} (input 0 is mu, input 1 is logvar)") from None
    except NotImplementedError:  # a RuntimeError too, but it means the gap is empty: say so
        raise
    except (RuntimeError, TypeError) as err:
        raise AssertionError(f"no gradient flows from z back to mu and logvar ({err}): write z with Tensor "
                             f"operations, not on .numpy() arrays") from None


def test_gaussian_kl_known_values(solution):
    cases = [  # (mu, logvar, KL): N(0, 1) is the prior itself; a shifted mean; a wider Gaussian
        ([[0.0, 0.0]], [[0.0, 0.0]], 0.0),
        ([[1.0, 0.0]], [[0.0, 0.0]], 0.5),
        ([[0.0, 0.0]], [[math.log(9.0), 0.0]], 0.5 * (9.0 - 1.0 - math.log(9.0))),
    ]
    for mu, logvar, expected in cases:
        got = solution.gaussian_kl(_t(mu), _t(logvar)).numpy()
        assert got.shape == (1,), f"gaussian_kl of one example (N, D) = (1, 2) should have shape (1,), got {got.shape}"
        assert abs(got[0] - expected) < 1e-9, (
            f"KL(N(μ={mu[0]}, σ²=exp({[round(v, 4) for v in logvar[0]]})) ‖ N(0, I)) is {expected:.6g}, got "
            f"{got[0]:.6g}. KL = ½ Σ_j (μ_j² + σ_j² − 1 − log σ_j²) with σ_j² = exp(logvar_j).")


def test_gaussian_kl_matches_the_library_and_its_gradient(solution):
    mu, logvar, _ = _gaussians(seed=1)
    got = solution.gaussian_kl(_t(mu), _t(logvar)).numpy()
    expected = F.gaussian_kl(_t(mu), _t(logvar), reduction="none").numpy()
    assert np.allclose(got, expected, rtol=1e-12), (f"gaussian_kl differs from scratchgen.nn.functional.gaussian_kl: "
                                                    f"yours {np.round(got, 5)}, the library's {np.round(expected, 5)}")
    try:
        sg.gradcheck(solution.gaussian_kl, [_t(mu, True), _t(logvar, True)])
    except sg.GradcheckError as err:
        raise AssertionError(f"{err} (input 0 is mu, input 1 is logvar)") from None


def _model_and_batch(seed=0):
    sg.manual_seed(seed)
    model = DenseVAE(hidden=16, latent_dim=3, image_shape=(1, 6, 6))
    rng = np.random.default_rng(seed)
    x = sg.tensor((rng.random((8, 1, 6, 6)) < 0.4).astype(np.float32))
    eps = sg.tensor(rng.standard_normal((8, 3)).astype(np.float32))
    return model, x, eps


def test_vae_loss_matches_the_library_on_a_real_model(solution):
    model, x, eps = _model_and_batch()
    logits, mu, logvar = model(x, eps)
    loss, rec, kl = (float(t.item()) for t in solution.vae_loss(logits, x, mu, logvar))
    expected = model.loss(x, eps)
    pixels, batch = 36, 8
    for name, got, want in (("rec", rec, expected.rec.item()), ("kl", kl, expected.kl.item()),
                            ("loss", loss, expected.loss.item())):
        if abs(got - want) <= 1e-4 * max(1.0, abs(want)):
            continue
        why = ""
        if abs(got - want / pixels) < 1e-4 * abs(want) and name == "rec":
            why = " It equals the library's divided by the number of pixels: sum over pixels, do not average."
        elif abs(got - want * batch) < 1e-4 * abs(want * batch):
            why = " It equals the library's times the batch size: average over the batch, do not sum."
        elif abs(got + want) < 1e-4 * abs(want):
            why = " It has the wrong sign: the loss is the *negative* ELBO, which is positive."
        raise AssertionError(f"{name} = {got:.6g} but the library's VAE.loss gives {want:.6g} on the same logits, "
                             f"μ and logvar (nats per image).{why}")


def test_vae_loss_is_an_average_over_the_batch(solution):
    model, x, eps = _model_and_batch(seed=1)
    logits, mu, logvar = model(x, eps)
    once = solution.vae_loss(logits, x, mu, logvar)[0].item()
    twice = solution.vae_loss(sg.concatenate([logits, logits]), sg.concatenate([x, x]),
                              sg.concatenate([mu, mu]), sg.concatenate([logvar, logvar]))[0].item()
    assert abs(once - twice) < 1e-4 * abs(once), (f"the loss of a batch repeated twice is {twice:.6g}, of the batch "
                                                  f"once {once:.6g}: average over the batch (nats per image)")


def test_vae_loss_gradcheck(solution):
    rng = np.random.default_rng(2)
    logits, x = _t(rng.standard_normal((3, 1, 2, 2)), True), _t(rng.random((3, 1, 2, 2)) < 0.5)
    mu, logvar = _t(rng.standard_normal((3, 2)), True), _t(rng.standard_normal((3, 2)) * 0.5, True)
    try:
        sg.gradcheck(lambda a, b, c: solution.vae_loss(a, x, b, c)[0], [logits, mu, logvar])
    except sg.GradcheckError as err:
        raise AssertionError(f"{err} (input 0 is the logits, 1 is mu, 2 is logvar)") from None


def test_a_small_vae_trained_with_your_loss_has_a_good_elbo(solution):
    # 16-pixel binary images: 4 prototypes with 5% of pixels flipped. Their entropy is about 4.6 nats.
    rng = np.random.default_rng(0)
    prototypes = (rng.random((4, 16)) < 0.5).astype(np.float32)
    x = prototypes[rng.integers(0, 4, 512)]
    data = np.where(rng.random(x.shape) < 0.05, 1 - x, x).reshape(512, 1, 4, 4).astype(np.float32)
    model = DenseVAE(hidden=32, latent_dim=2, image_shape=(1, 4, 4))
    opt = optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        batch = sg.tensor(data[rng.integers(0, 512, 64)])
        mu, logvar = model.encode(batch)
        z = solution.reparameterize(mu, logvar, sg.randn(*mu.shape))
        loss = solution.vae_loss(model.decode(z), batch, mu, logvar)[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
    neg_elbo = evaluate(model, data)["neg_elbo"]  # measured with the library's loss
    assert neg_elbo < 5.8, (
        f"after 300 Adam steps with your loss, the library measures a negative ELBO of {neg_elbo:.3f} nats per image "
        f"(your own loss said {loss.item():.3f}); a correct loss reaches about 5.3. {_why_training_failed(solution)}")


def _why_training_failed(solution) -> str:
    """Which of the classic mistakes made the trained VAE bad, found by probing each part on known values."""
    try:
        z = float(solution.reparameterize(_t([[0.0]]), _t([[math.log(9.0)]]), _t([[1.0]])).numpy().reshape(-1)[0])
        kl = float(solution.gaussian_kl(_t([[0.0]]), _t([[math.log(9.0)]])).numpy().reshape(-1)[0])
        model, x, eps = _model_and_batch()
        logits, mu, logvar = model(x, eps)
        rec = solution.vae_loss(logits, x, mu, logvar)[1].item()
        expected = model.loss(x, eps).rec.item()
    except Exception:  # noqa: BLE001  (a part that crashes has its own failing check above)
        return "Read the first failing check above: the parts of your loss are checked one by one there."
    if abs(z - 3.0) > 1e-6 and abs(kl - 0.5 * (9.0 - 1.0 - math.log(9.0))) < 1e-9:
        return (f"Your sampler and your KL disagree about σ: with logvar = log 9 your KL takes σ² = 9, but your "
                f"sampler uses σ = {z:.4g}, not 3. The encoder learns to please the KL with a σ the sampler "
                f"never draws: σ = exp(½·logvar) in both.")
    pixels = x[0].size
    if abs(rec - expected / pixels) < 1e-4 * abs(expected):
        return (f"Your reconstruction term is averaged over the {pixels} pixels instead of summed: it weighs "
                f"1/{pixels} of what it should against the KL, so the KL wins and the codes carry almost nothing. "
                f"Sum over the pixels, average over the batch.")
    return ("Compare each term with the library's (the checks above): the sampler's σ, the KL, and the "
            "reconstruction summed over pixels and averaged over the batch.")

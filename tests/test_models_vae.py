"""The VAE: its conventions (σ = exp(½·logvar), the loss's reduction), the KL against sampling, gradients
through the reparameterisation, the k-sample bound against log p(x) by quadrature, shapes, and learning."""

import math

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import optim
from scratchgen.data import DataLoader, binarize, load_mnist
from scratchgen.models.vae import (
    ConvVAE, DenseVAE, evaluate, importance_sampled_nll, log_normal, log_standard_normal, reparameterize,
)
from scratchgen.nn import functional as F

from conftest import t64


def _float64(model):
    """The model with float64 parameters, for gradcheck and exact comparisons."""
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    return model


def _tiny(likelihood="bernoulli", latent_dim=3, image_shape=(1, 2, 3)):
    return _float64(DenseVAE(hidden=5, latent_dim=latent_dim, likelihood=likelihood, image_shape=image_shape))


def _binary(rng, *shape):
    return (rng.random(shape) < 0.5).astype(np.float64)


def _np_sigmoid(a):
    return 1 / (1 + np.exp(-a))


# ------------------------------------------------------------------------ the Gaussian conventions


def test_gaussian_kl_is_zero_at_the_prior_and_agrees_with_monte_carlo(rng):
    zero = sg.zeros(4, 3, dtype=np.float64)
    np.testing.assert_array_equal(F.gaussian_kl(zero, zero).numpy(), 0.0)

    mu, logvar = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    samples = 100_000
    eps = rng.standard_normal((samples, 4, 3))
    z = reparameterize(sg.tensor(mu), sg.tensor(logvar), eps).numpy()
    # E_q[log q(z) − log p(z)] with the textbook densities, σ² = exp(logvar): if the sampler used another σ
    # than the closed-form KL does, the two would disagree by far more than the sampling error.
    sigma2 = np.exp(logvar)
    log_q = -0.5 * ((z - mu) ** 2 / sigma2 + np.log(2 * np.pi * sigma2)).sum(axis=-1)
    log_p = -0.5 * (z ** 2 + np.log(2 * np.pi)).sum(axis=-1)
    estimates = log_q - log_p  # (samples, 4)
    closed_form = F.gaussian_kl(sg.tensor(mu), sg.tensor(logvar)).numpy()
    standard_error = estimates.std(axis=0) / math.sqrt(samples)
    assert np.all(np.abs(estimates.mean(axis=0) - closed_form) < 4 * standard_error + 1e-9), \
        f"Monte Carlo {estimates.mean(axis=0)} vs closed form {closed_form} (standard error {standard_error})"


def test_reparameterised_samples_have_mean_mu_and_variance_exp_logvar():
    logvar = np.array([-3.0, -1.0, 0.0, 1.0, 2.5], dtype=np.float32)
    mu = np.array([0.5, -1.0, 2.0, 0.0, 3.0], dtype=np.float32)
    rows = 200_000
    z = reparameterize(sg.tensor(np.tile(mu, (rows, 1))), sg.tensor(np.tile(logvar, (rows, 1)))).numpy()
    np.testing.assert_allclose(z.var(axis=0), np.exp(logvar), rtol=0.02)
    assert np.all(np.abs(z.mean(axis=0) - mu) < 4 * np.exp(0.5 * logvar) / math.sqrt(rows))


def test_reparameterize_with_fixed_noise_is_mu_plus_sigma_eps_and_broadcasts_over_samples(rng):
    mu, logvar, eps = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)), rng.normal(size=(5, 2, 3))
    z = reparameterize(sg.tensor(mu), sg.tensor(logvar), eps)
    np.testing.assert_allclose(z.numpy(), mu + np.exp(0.5 * logvar) * eps, rtol=1e-12)
    with pytest.raises(ValueError, match="reparameterize"):
        reparameterize(sg.tensor(mu), sg.tensor(logvar), rng.normal(size=(5, 3, 2)))


def test_log_densities_match_the_textbook_formulas(rng):
    z, mu, logvar = rng.normal(size=(4, 3)), rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    sigma2 = np.exp(logvar)
    expected = (-0.5 * (z - mu) ** 2 / sigma2 - 0.5 * np.log(2 * np.pi * sigma2)).sum(axis=-1)
    np.testing.assert_allclose(log_normal(sg.tensor(z), sg.tensor(mu), sg.tensor(logvar)).numpy(), expected)
    zero = sg.zeros(4, 3, dtype=np.float64)
    np.testing.assert_allclose(log_standard_normal(sg.tensor(z)).numpy(),
                               log_normal(sg.tensor(z), zero, zero).numpy())


# ------------------------------------------------------------------------ the loss and its gradients


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_loss_is_summed_over_pixels_and_latents_and_averaged_over_the_batch(likelihood, rng, backend):
    model = _tiny(likelihood)
    if likelihood == "gaussian":
        model.log_sigma2.data[...] = 0.7  # a variance other than 1
    x, eps = _binary(rng, 4, 1, 2, 3) * rng.random((4, 1, 2, 3)), rng.normal(size=(4, 3))
    if likelihood == "bernoulli":
        x = (x > 0).astype(np.float64)
    out = model.loss(sg.tensor(x), eps)

    # The same computation in NumPy from the model's weights.
    p = {name: v.numpy() for name, v in model.named_parameters()}
    flat = x.reshape(4, -1)
    h = np.maximum(flat @ p["encoder.1.weight"].T + p["encoder.1.bias"], 0)
    mu = h @ p["fc_mu.weight"].T + p["fc_mu.bias"]
    logvar = h @ p["fc_logvar.weight"].T + p["fc_logvar.bias"]
    z = mu + np.exp(0.5 * logvar) * eps
    hz = np.maximum(z @ p["decoder.0.weight"].T + p["decoder.0.bias"], 0)
    logits = hz @ p["decoder.2.weight"].T + p["decoder.2.bias"]
    if likelihood == "bernoulli":
        q = _np_sigmoid(logits)
        rec = -(flat * np.log(q) + (1 - flat) * np.log(1 - q)).sum(axis=1)  # summed over pixels
    else:
        s2 = np.exp(p["log_sigma2"])
        rec = 0.5 * ((flat - _np_sigmoid(logits)) ** 2 / s2 + np.log(2 * np.pi * s2)).sum(axis=1)
    kl = 0.5 * (mu ** 2 + np.exp(logvar) - 1 - logvar).sum(axis=1)  # summed over latent dimensions
    np.testing.assert_allclose(out.rec.item(), rec.mean(), rtol=1e-10)  # averaged over the batch
    np.testing.assert_allclose(out.kl.item(), kl.mean(), rtol=1e-10)
    np.testing.assert_allclose(out.loss.item(), rec.mean() + kl.mean(), rtol=1e-10)

    # Averaged, not summed: the batch twice over has the same loss.
    twice = model.loss(sg.tensor(np.concatenate([x, x])), np.concatenate([eps, eps]))
    np.testing.assert_allclose(twice.loss.item(), out.loss.item(), rtol=1e-12)


def test_gradients_through_the_reparameterisation_pass_gradcheck_with_fixed_noise(rng):
    eps = rng.normal(size=(4, 3))
    sg.gradcheck(lambda mu, logvar: reparameterize(mu, logvar, eps) ** 2,
                 [t64(rng.normal(size=(4, 3))), t64(rng.normal(size=(4, 3)))])

    x = sg.tensor(_binary(rng, 4, 6))
    model = _tiny()
    encoder_weights = [model.encoder[1].weight, model.fc_mu.weight, model.fc_logvar.weight, model.fc_logvar.bias]
    sg.gradcheck(lambda *weights: model.loss(x, eps).loss, encoder_weights)
    eps_k = rng.normal(size=(3, 4, 3))  # k = 3 samples for each of the 4 images
    sg.gradcheck(lambda *weights: model.iwae_bound(x, 3, eps_k).sum(), encoder_weights)

    gaussian = _tiny("gaussian")
    grey = sg.tensor(rng.random((4, 6)))
    sg.gradcheck(lambda *weights: gaussian.loss(grey, eps).loss, [gaussian.log_sigma2, gaussian.fc_logvar.weight])


# ------------------------------------------------------------------------ the k-sample bound


def test_one_sample_bound_is_an_unbiased_estimate_of_the_elbo(rng):
    model, rows = _tiny(), 20_000
    x = sg.tensor(np.repeat(_binary(rng, 2, 6), rows // 2, axis=0))
    eps = rng.normal(size=(1, rows, 3))
    with sg.no_grad():
        bound = model.iwae_bound(x, 1, eps).numpy()
        mu, logvar = model.encode(x)
        z = reparameterize(mu, logvar, eps[0])
        elbo = (model.log_likelihood(x, model.decode(z)) - F.gaussian_kl(mu, logvar)).numpy()
    # Same z, so the difference is log p(z) − log q(z|x) + KL, whose expectation under q is zero.
    difference = bound - elbo
    assert abs(difference.mean()) < 4 * difference.std() / math.sqrt(rows)
    np.testing.assert_allclose(bound.mean(), elbo.mean(), atol=4 * difference.std() / math.sqrt(rows))


def test_k_sample_bound_tightens_with_k_towards_log_px_by_quadrature(rng):
    # A 1-D code, so that log p(x) = log ∫ N(z; 0, 1) p(x|z) dz can be computed on a fine grid.
    model = _tiny(latent_dim=1, image_shape=(6,))
    for p in model.decoder.parameters():
        p.data = 4 * p.data  # a sharp p(x|z), so that the posterior is narrow ...
    for head, value in ((model.fc_mu, 0.0), (model.fc_logvar, math.log(4.0))):
        head.weight.data[...], head.bias.data[...] = 0.0, value  # ... and q(z|x) = N(0, 2²) is much broader
    x = _binary(rng, 3, 6)
    grid = np.linspace(-10, 10, 20_001)
    with sg.no_grad():
        logits = model.decode(sg.tensor(grid[:, None])).numpy()  # (G, 6)
        log_joint = model.log_likelihood(sg.tensor(x), sg.tensor(np.repeat(logits[:, None], 3, axis=1))).numpy()
    log_joint = log_joint - 0.5 * (grid[:, None] ** 2 + math.log(2 * math.pi))  # + log p(z): (G, 3)
    top = log_joint.max(axis=0)
    log_px = top + np.log(np.exp(log_joint - top).sum(axis=0) * (grid[1] - grid[0]))

    means, errors = {}, {}
    with sg.no_grad():
        for k in (1, 3, 30, 1000):
            repeats = 90_000 // k
            bounds = model.iwae_bound(sg.tensor(np.repeat(x, repeats, axis=0)), k).numpy().reshape(3, repeats)
            means[k], errors[k] = bounds.mean(axis=1), bounds.std(axis=1) / math.sqrt(repeats)
    assert np.all(log_px - means[1] > 0.5), "the test needs a visible gap at k = 1"
    for small, large in ((1, 3), (3, 30)):
        margin = 4 * np.hypot(errors[small], errors[large])
        assert np.all(means[small] + margin < means[large]), f"L_{small} = {means[small]}, L_{large} = {means[large]}"
    for k in means:
        assert np.all(means[k] <= log_px + 4 * errors[k]), f"L_{k} = {means[k]} above log p(x) = {log_px}"
    assert np.all(np.abs(means[1000] - log_px) < 4 * errors[1000] + 5e-3), (means[1000], log_px)


def test_importance_sampled_nll_decodes_at_most_max_samples_at_once(rng, monkeypatch):
    model = DenseVAE(hidden=16, latent_dim=4)
    images = (rng.random((37, 1, 28, 28)) < 0.2).astype(np.float32)
    sizes, original = [], model.iwae_bound
    monkeypatch.setattr(model, "iwae_bound", lambda x, k, y=None: sizes.append(len(x) * k) or original(x, k, y=y))
    nll = importance_sampled_nll(model, images, k=50, max_samples=400)
    assert sum(sizes) == 37 * 50 and max(sizes) <= 400
    neg_elbo = evaluate(model, images)["neg_elbo"]
    assert 0 < nll < neg_elbo + 1.0  # an average of bounds tighter than the ELBO, up to sampling noise


def test_evaluate_weights_batches_by_their_size(rng):
    model = DenseVAE(hidden=16, latent_dim=4)
    images = (rng.random((7, 1, 28, 28)) < 0.2).astype(np.float32)
    with sg.no_grad():
        kl = F.gaussian_kl(*model.encode(sg.tensor(images))).numpy().mean()
    # The KL is deterministic, so whatever the batches, the dataset's mean must come out.
    np.testing.assert_allclose(evaluate(model, images, batch_size=3)["kl"], kl, rtol=1e-5)


# ------------------------------------------------------------------------ shapes and errors


@pytest.mark.parametrize("make", [lambda: DenseVAE(hidden=32, latent_dim=5),
                                  lambda: ConvVAE(channels=(4, 8), hidden=16, latent_dim=5, likelihood="gaussian")])
def test_shapes_of_encode_decode_sample_reconstruct_interpolate_and_bound(make, backend):
    model = make()
    x = sg.rand(3, 1, 28, 28)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (3, 5)
    assert model.encode(x.reshape(3, 784))[0].shape == (3, 5)  # flattened images are accepted too
    assert model.decode(mu).shape == (3, 1, 28, 28)
    assert model.decode(sg.randn(4, 3, 5)).shape == (4, 3, 1, 28, 28)
    logits, mu, logvar = model(x)
    assert logits.shape == (3, 1, 28, 28)
    assert model.iwae_bound(x, 4).shape == (3,)
    samples = model.sample(6).numpy()
    assert samples.shape == (6, 1, 28, 28) and samples.min() >= 0 and samples.max() <= 1
    assert model.reconstruct(x).shape == (3, 1, 28, 28)
    walk = model.interpolate(x[:2], x[1:], steps=7)
    assert walk.shape == (2, 7, 1, 28, 28)
    np.testing.assert_allclose(walk.numpy()[:, 0], model.reconstruct(x[:2]).numpy(), atol=1e-6)
    np.testing.assert_allclose(walk.numpy()[:, -1], model.reconstruct(x[1:]).numpy(), atol=1e-6)
    terms = model.loss(x)
    assert terms.loss.shape == terms.rec.shape == terms.kl.shape == ()


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_sample_draws_x_from_p_x_given_z_around_the_decoders_means(likelihood):
    sg.manual_seed(0)
    model = DenseVAE(hidden=16, latent_dim=3, likelihood=likelihood)
    z = sg.tensor(np.repeat(np.random.default_rng(0).standard_normal((1, 3), dtype=np.float32), 4000, axis=0))
    means, draws = model.sample(4000, z=z).numpy(), model.sample(4000, z=z, mean=False).numpy()
    assert draws.shape == means.shape == (4000, 1, 28, 28)
    if likelihood == "bernoulli":
        assert set(np.unique(draws)) <= {0.0, 1.0}
        # Every pixel's frequency of ones within 5 standard errors (at most 0.5 / sqrt(4000)) of σ(logits).
        np.testing.assert_allclose(draws.mean(axis=0), means[0], atol=5 * 0.5 / np.sqrt(4000))
    else:
        # x = mean + s·ε with s = exp(½·log s²) = 0.1 before training: s, not s² = 0.01 nor exp(log s²).
        residual = draws - means
        assert residual.std() == pytest.approx(np.exp(0.5 * model.log_sigma2.numpy()[0]), rel=0.01)
        assert abs(residual.mean()) < 1e-3


def test_bad_arguments_are_explained():
    with pytest.raises(ValueError, match="likelihood"):
        DenseVAE(likelihood="poisson")
    with pytest.raises(ValueError, match="divisible by 4"):
        ConvVAE(image_shape=(1, 30, 30))
    with pytest.raises(ValueError, match=r"DenseVAE: input of shape \(2, 100\)"):
        DenseVAE(hidden=8, latent_dim=2).encode(sg.rand(2, 100))
    with pytest.raises(ValueError, match="k must be"):
        DenseVAE(hidden=8, latent_dim=2).iwae_bound(sg.rand(2, 784), 0)
    with pytest.raises(ValueError, match=r"expected \(k, N, D\) = \(3, 2, 2\)"):
        DenseVAE(hidden=8, latent_dim=2).iwae_bound(sg.rand(2, 784), 3, eps=np.zeros((4, 2, 2)))


# ------------------------------------------------------------------------ learning


def test_dense_vae_learns_far_beyond_independent_pixels_in_seconds():
    x_train, _ = load_mnist("embedded", "train")
    x_test, _ = load_mnist("embedded", "test")
    x_train, x_test = binarize(x_train[:2000])[:, None], binarize(x_test[:500])[:, None]
    # The best model with independent pixels (each pixel's training frequency) scores about 211 nats.
    p = x_train.mean(axis=0).clip(1e-3, 1 - 1e-3)
    independent = -(x_test * np.log(p) + (1 - x_test) * np.log(1 - p)).sum(axis=(1, 2, 3)).mean()

    model = DenseVAE(hidden=200, latent_dim=10)
    opt = optim.Adam(model.parameters(), lr=2e-3)
    loader = DataLoader(x_train, batch_size=50, shuffle=True, seed=0)
    for _ in range(5):
        for (x,) in loader:
            opt.zero_grad()
            model.loss(x).loss.backward()
            opt.step()
    result = evaluate(model, x_test)
    assert result["neg_elbo"] < independent - 40, f"{result} vs {independent:.1f} nats for independent pixels"
    assert result["kl"] > 5, "the codes carry information (no posterior collapse)"

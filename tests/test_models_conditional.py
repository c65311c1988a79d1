"""Conditional and joint models of p(x, y): the label helpers, the conditional GAN (a projection
discriminator, the conditional game, the joint generator), the conditional VAE, the class-conditional MADE
and its Bayes classifier, and the metrics that judge samples by their labels.

Each model is checked three ways: its numbers against a direct formula, gradcheck through every new
layer, and learning on a small problem where the label decides the answer, to a stated threshold."""

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import metrics, nn, optim
from scratchgen.data import ring8_mixture
from scratchgen.models.gan import GANTrainer, JointGenerator, MLPDiscriminator, MLPGenerator, r1_penalty
from scratchgen.models.made import MADE
from scratchgen.models.vae import DenseVAE, importance_sampled_nll, marginal_nll
from scratchgen.nn import functional as F
from conftest import t64


def _float64(module):
    for p in module.parameters():
        p.data = p.data.astype(np.float64)
    return module


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


# ------------------------------------------------------------------------------------------ labels


def test_one_hot_and_label_vectors_against_numpy(rng):
    labels = rng.integers(0, 4, 9)
    np.testing.assert_array_equal(F.one_hot(labels, 4).numpy(), np.eye(4, dtype=np.float32)[labels])
    rows = rng.random((9, 4))
    np.testing.assert_array_equal(F.label_vectors(rows, 4).numpy(), rows.astype(np.float32))  # soft rows pass through
    with pytest.raises(ValueError, match=r"one_hot: labels must lie in \[0, 4\), got values from 0 to 4"):
        F.one_hot(np.array([0, 4]), 4)
    with pytest.raises(TypeError, match="one_hot: labels must be integers"):
        F.one_hot(np.array([0.0, 1.0]), 4)
    with pytest.raises(ValueError, match=r"label_vectors: expected integer labels \(N,\) or label rows \(N, 4\)"):
        F.label_vectors(rng.random((9, 3)), 4)


def test_with_labels_repeats_the_labels_along_leading_axes_and_passes_gradcheck(rng):
    x, rows = t64(rng.normal(size=(3, 5, 2))), t64(rng.random((5, 4)))
    out = F.with_labels(x, rows, 4)
    assert out.shape == (3, 5, 6)
    np.testing.assert_array_equal(out.numpy()[:, :, 2:], np.broadcast_to(rows.numpy(), (3, 5, 4)))
    sg.gradcheck(lambda a, b: F.with_labels(a, b, 4) ** 2, [x, rows])  # the label rows' gradient sums the copies
    with pytest.raises(ValueError, match="needs labels"):
        F.with_labels(x, None, 4)
    with pytest.raises(ValueError, match="unconditional network"):
        F.with_labels(x, np.zeros(5, dtype=np.int64), 0)
    with pytest.raises(ValueError, match=r"input of shape \(3, 5, 2\) but 4 labels"):
        F.with_labels(x, np.zeros(4, dtype=np.int64), 4)


# -------------------------------------------------------------------------------- the conditional GAN


def test_projection_discriminator_is_psi_of_h_plus_the_labels_embedding_times_h(rng):
    discriminator = _float64(MLPDiscriminator((2,), hidden=(6,), classes=3))
    x, y = rng.normal(size=(5, 2)), rng.integers(0, 3, 5)
    w1, b1 = discriminator.body[1].weight.numpy(), discriminator.body[1].bias.numpy()
    h = x @ w1.T + b1
    h = np.where(h > 0, h, 0.2 * h)
    embedding = discriminator.embed.weight.numpy().T  # (classes, features): row y is embed(y)
    expected = h @ discriminator.head.weight.numpy().T + discriminator.head.bias.numpy() + (embedding[y] * h).sum(1, keepdims=True)
    np.testing.assert_allclose(discriminator(t64(x), y).numpy(), expected, rtol=1e-12)


def test_conditional_networks_pass_gradcheck_in_inputs_soft_labels_and_weights(rng):
    generator = _float64(MLPGenerator(latent_dim=2, out_shape=(2,), hidden=(5,), classes=3))
    discriminator = _float64(MLPDiscriminator((2,), hidden=(5,), classes=3))
    z, x, rows = t64(rng.normal(size=(4, 2))), t64(rng.normal(size=(4, 2))), t64(rng.dirichlet(np.ones(3), 4))
    sg.gradcheck(lambda z, rows: generator(z, rows), [z, rows])
    sg.gradcheck(lambda x, rows: discriminator(x, rows), [x, rows])
    sg.gradcheck(lambda *weights: discriminator(x, rows), [discriminator.embed.weight, discriminator.head.weight])
    joint = _float64(JointGenerator(generator, hidden=4))
    sg.gradcheck(lambda z: joint(z)[0] + joint(z)[1][:, :2], [z])
    # R1 on pairs: the double backward reaches the embedding through <embed(y), h(x)>.
    labels = rng.integers(0, 3, 4)
    sg.gradcheck(lambda *weights: r1_penalty(discriminator, x, 1.0, labels), [discriminator.embed.weight])


def test_a_conditional_generator_changes_its_output_with_the_label_at_a_fixed_code(rng):
    generator = MLPGenerator(latent_dim=2, out_shape=(2,), hidden=(8,), classes=4)
    z = sg.tensor(np.repeat(rng.normal(size=(1, 2)), 4, axis=0).astype(np.float32))
    out = generator(z, np.arange(4)).numpy()
    assert min(np.abs(out[i] - out[j]).max() for i in range(4) for j in range(i)) > 1e-4
    with pytest.raises(ValueError, match="conditional network .* needs labels"):
        generator(z)


def test_the_trainer_refuses_mismatched_or_unsupported_conditioning():
    def trainer(g_classes, d_classes, **kwargs):
        g, d = MLPGenerator(classes=g_classes), MLPDiscriminator(classes=d_classes)
        return GANTrainer(g, d, optim.Adam(g.parameters()), optim.Adam(d.parameters()), **kwargs)

    with pytest.raises(ValueError, match="generator is conditioned on 3 classes and the discriminator on 0"):
        trainer(3, 0)
    with pytest.raises(ValueError, match="wgan-gp.*unconditional"):
        trainer(3, 3, loss="wgan-gp")
    with pytest.raises(ValueError, match="label_prior must be 3 probabilities"):
        trainer(3, 3, label_prior=[0.5, 0.5])
    with pytest.raises(ValueError, match="packing=2 is for unconditional"):
        MLPDiscriminator(classes=3, packing=2)
    with pytest.raises(ValueError, match="pairs"):
        trainer(3, 3).discriminator_step(sg.randn(4, 2))


def test_labels_drawn_for_fakes_and_pairs_follow_the_label_prior():
    prior = np.array([0.5, 0.3, 0.15, 0.05])
    g, d = MLPGenerator(classes=4, hidden=(4,)), MLPDiscriminator(classes=4, hidden=(4,))
    trainer = GANTrainer(g, d, optim.Adam(g.parameters()), optim.Adam(d.parameters()), label_prior=prior)
    sg.manual_seed(0)
    samples, labels = trainer.sample_pairs(20_000)
    shares = np.bincount(sg.backend.to_numpy(labels), minlength=4) / 20_000
    # Binomial standard errors are at most 0.0035: four of them is a bound the sampler fails only by a bug.
    np.testing.assert_allclose(shares, prior, atol=0.014)
    assert samples.shape == (20_000, 2)


def _ring_trainer(joint: bool = False, seed: int = 0):
    sg.manual_seed(seed)
    generator = MLPGenerator(latent_dim=2, out_shape=(2,), hidden=(64, 64), classes=8)
    if joint:
        generator = JointGenerator(generator, hidden=32)
    discriminator = MLPDiscriminator((2,), hidden=(64, 64), classes=8)
    adam = lambda params: optim.Adam(params, lr=1e-3, betas=(0.5, 0.999))  # noqa: E731
    return GANTrainer(generator, discriminator, adam(generator.parameters()), adam(discriminator.parameters()))


def _ring_batch(mixture, m: int = 64):
    points, modes = mixture.sample(m, return_labels=True)
    return sg.tensor(points), modes


def test_a_conditional_gan_learns_to_put_each_label_on_its_own_mode_of_the_ring():
    # The label is the ring's mode: asked for mode c, the generator must land nearest mode c. Before
    # training about 1/8 of the samples do; after 1,500 iterations (a few seconds) at least 90%.
    mixture, trainer = ring8_mixture(), _ring_trainer()
    for _ in range(1500):
        trainer.train_iteration(lambda: _ring_batch(mixture))
    asked = np.repeat(np.arange(8), 250)
    samples = trainer.sample(len(asked), labels=asked).numpy()
    nearest, distance = mixture.nearest_mode(samples)
    assert (nearest == asked).mean() >= 0.9
    assert (distance <= 3 * mixture.std).mean() >= 0.5  # and on the mode, not merely on its side


def test_a_joint_gan_draws_labels_that_agree_with_its_points_and_cover_the_labels():
    mixture, trainer = ring8_mixture(), _ring_trainer(joint=True)
    for _ in range(2000):
        trainer.train_iteration(lambda: _ring_batch(mixture))
    samples, labels = trainer.sample_pairs(2000)
    nearest, _ = mixture.nearest_mode(samples.numpy())
    labels = sg.backend.to_numpy(labels)
    assert (nearest == labels).mean() >= 0.9  # the drawn label names the drawn point's mode
    # Most labels are drawn, but not all: G draws its labels itself, and a label (with its mode) that G
    # stops drawing gets no gradient back, the mode dropping of any GAN. Over seeds 0-2, 2,000 iterations
    # left one to three of the eight unused; the conditional GAN, whose labels come from the prior, cannot.
    assert len(np.unique(labels)) >= 5


# ------------------------------------------------------------------------------ the conditional VAE


def test_cvae_kl_and_elbo_against_direct_formulas(rng):
    model = _float64(DenseVAE(hidden=6, latent_dim=3, image_shape=(1, 2, 2), classes=3))
    x, y, eps = (rng.random((4, 1, 2, 2)) < 0.5).astype(np.float64), rng.integers(0, 3, 4), rng.normal(size=(4, 3))
    onehot = np.eye(3)[y]

    def dense(layer, a):
        return a @ layer.weight.numpy().T + (0 if layer.bias is None else layer.bias.numpy())

    h = np.maximum(dense(model.encoder.head[0], np.hstack([x.reshape(4, -1), onehot])), 0)  # y beside the pixels
    mu, logvar = dense(model.fc_mu, h), dense(model.fc_logvar, h)
    z = mu + np.exp(0.5 * logvar) * eps
    logits = dense(model.decoder[2], np.maximum(dense(model.decoder[0], np.hstack([z, onehot])), 0))
    p = _sigmoid(logits)
    rec = -(x.reshape(4, -1) * np.log(p) + (1 - x.reshape(4, -1)) * np.log(1 - p)).sum(1).mean()
    kl = (0.5 * (mu**2 + np.exp(logvar) - 1 - logvar)).sum(1).mean()
    loss = model.loss(t64(x, requires_grad=False), eps=eps, y=y)
    assert loss.kl.item() == pytest.approx(kl, rel=1e-10)
    assert loss.rec.item() == pytest.approx(rec, rel=1e-10)
    assert loss.loss.item() == pytest.approx(rec + kl, rel=1e-10)
    sg.gradcheck(lambda *weights: model.loss(t64(x, requires_grad=False), eps=eps, y=y).loss,
                 [model.encoder.head[0].weight, model.fc_mu.weight, model.decoder[0].weight])


def test_cvae_marginal_nll_is_the_logsumexp_of_the_conditionals(rng, monkeypatch):
    # With a fixed bound per label (a stub iwae_bound returning log p(x|y) = -(10 + y)), the marginal
    # must be -log sum_y p(y) exp(-(10 + y)), exactly.
    model = DenseVAE(hidden=4, latent_dim=2, image_shape=(1, 2, 2), classes=3)
    monkeypatch.setattr(model, "iwae_bound", lambda x, k, y: sg.tensor(-(10.0 + y).astype(np.float64)))
    images = np.zeros((5, 1, 2, 2), dtype=np.float32)
    prior = np.array([0.2, 0.3, 0.5])
    expected = -np.log((prior * np.exp(-(10.0 + np.arange(3)))).sum())
    assert marginal_nll(model, images, k=1, prior=prior) == pytest.approx(expected, rel=1e-12)
    with pytest.raises(ValueError, match="unconditional"):
        marginal_nll(DenseVAE(hidden=4, latent_dim=2, image_shape=(1, 2, 2)), images)


def test_a_cvae_learns_to_use_its_label():
    # Two classes of 4x4 binary images that differ only in which half is on, with noise. Given the right
    # label, -log p(x|y) must come out at least 2 nats below the same images given the wrong label.
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 600)
    halves = np.zeros((2, 16), dtype=np.float32)
    halves[0, :8], halves[1, 8:] = 1, 1
    x = np.abs(halves[y] - (rng.random((600, 16)) < 0.05)).astype(np.float32).reshape(600, 1, 4, 4)
    sg.manual_seed(0)
    model = DenseVAE(hidden=32, latent_dim=2, image_shape=(1, 4, 4), classes=2)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        batch = rng.integers(0, 600, 64)
        opt.zero_grad()
        model.loss(sg.tensor(x[batch]), y=y[batch]).loss.backward()
        opt.step()
    right = importance_sampled_nll(model, x[:200], k=20, labels=y[:200])
    wrong = importance_sampled_nll(model, x[:200], k=20, labels=1 - y[:200])
    assert right < 6.0 and wrong - right > 2.0


# ------------------------------------------------------------------------ the class-conditional MADE


def test_conditional_made_keeps_the_autoregressive_property_and_passes_gradcheck(rng):
    model = _float64(MADE(5, (12,), classes=3))
    x, y = t64(rng.random((1, 5))), np.array([2])
    sg.gradcheck(lambda x: model(x, y), [x])
    sg.gradcheck(lambda *w: model(x, y), [model.label_layers[0].weight, model.label_layers[1].weight])
    for d in range(5):  # output d has zero gradient in inputs d, d+1, ... whatever the label
        x.grad = None
        model(x, y)[0, d].backward()
        assert not np.any(x.grad_tensor.numpy()[0, d:])


def test_bayes_classification_sums_to_one_and_is_the_posterior_of_the_conditionals(rng):
    model = _float64(MADE(6, (10,), classes=4))
    x = t64((rng.random((7, 6)) < 0.5), requires_grad=False)
    prior = np.array([0.1, 0.2, 0.3, 0.4])
    posterior = model.classify(x, prior=prior).numpy()
    np.testing.assert_allclose(posterior.sum(axis=1), 1.0, rtol=1e-12)
    with sg.no_grad():
        log_joint = np.stack([model.log_prob(x, y=np.full(7, c)).numpy() for c in range(4)], axis=1) + np.log(prior)
    expected = np.exp(log_joint - log_joint.max(1, keepdims=True))
    np.testing.assert_allclose(posterior, expected / expected.sum(1, keepdims=True), rtol=1e-10)


def test_a_conditional_made_learns_a_classifier_by_bayes_rule():
    # Three classes of 12-pixel binary patterns, each pixel flipped with probability 0.15. The true
    # p(x|y) is known, so is the best classifier (the pattern nearest in Hamming distance): the Bayes
    # classifier of the learned p(x|y) must come within 2 points of its accuracy on fresh examples.
    rng = np.random.default_rng(0)
    patterns = np.kron(np.eye(3), np.ones(4)).astype(np.float32)  # pixels 0-3, 4-7 or 8-11 on

    def draw(n):
        y = rng.integers(0, 3, n)
        return np.abs(patterns[y] - (rng.random((n, 12)) < 0.15)).astype(np.float32), y

    x, y = draw(1500)
    sg.manual_seed(0)
    model = MADE(12, (64,), classes=3)
    opt = optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(300):
        batch = rng.integers(0, 1500, 100)
        opt.zero_grad()
        (-model.log_prob(sg.tensor(x[batch]), y=y[batch]).mean()).backward()
        opt.step()
    test_x, test_y = draw(2000)
    accuracy = (model.classify(sg.tensor(test_x)).numpy().argmax(axis=1) == test_y).mean()
    hamming = np.abs(test_x[:, None, :] - patterns[None]).sum(-1)
    best = (hamming.argmin(axis=1) == test_y).mean()  # ties go to the first: the optimum, up to ties
    assert best > 0.9 and accuracy >= best - 0.02
    samples = model.sample(300, y=np.repeat(np.arange(3), 100)).numpy()
    nearest = np.abs(samples[:, None, :] - patterns[None]).sum(-1).argmin(-1)
    assert (nearest == np.repeat(np.arange(3), 100)).mean() >= 0.95  # it draws the class it is asked for


# ------------------------------------------------------------------------------------------- metrics


class _PixelJudge(nn.Module):
    """A classifier whose class is the brightest of the first ten pixels: its verdicts are known."""

    def features(self, x):
        return x.reshape(len(x), -1)[:, :10]

    def head(self, h):
        return h * 100.0


def test_conditional_accuracy_is_the_share_the_judge_agrees_with(rng):
    asked = rng.integers(0, 10, 50)
    images = np.zeros((50, 1, 28, 28), dtype=np.float32)
    verdicts = np.where(rng.random(50) < 0.7, asked, (asked + 1) % 10)
    images[np.arange(50), 0, 0, verdicts] = 1.0
    assert metrics.conditional_accuracy(_PixelJudge(), images, asked) == pytest.approx((verdicts == asked).mean())
    with pytest.raises(ValueError, match="50 images but labels of shape"):
        metrics.conditional_accuracy(_PixelJudge(), images, asked[:3])


def test_the_classification_accuracy_score_rewards_right_labels_and_not_shuffled_ones():
    images, labels = sg.data.load_mnist("embedded", "train")
    test_images, test_labels = sg.data.load_mnist("embedded", "test")
    right = metrics.classification_accuracy_score(images[:600], labels[:600], test_images[:300], test_labels[:300],
                                                  epochs=2)
    shuffled = metrics.classification_accuracy_score(images[:600], np.random.default_rng(0).permutation(labels[:600]),
                                                     test_images[:300], test_labels[:300], epochs=2)
    assert right >= 0.7 and shuffled <= 0.3

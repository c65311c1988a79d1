"""The GAN: its losses, Algorithm 1's steps (who moves, in which direction, how often), the networks'
shapes and packing, a GAN that learns a 2-D Gaussian, checkpoints, and the demo; WGAN-GP and R1: the
two gradient penalties against hand-computed values and finite differences, the settings they refuse,
a WGAN-GP that learns a 2-D Gaussian, and the demo's flags."""

import copy
import json

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import metrics, nn, optim
from scratchgen.models import gan
from scratchgen.models.gan import (
    DCGANDiscriminator, DCGANGenerator, GANTrainer, MLPDiscriminator, MLPGenerator, critic_loss, discriminator_loss,
    frozen, generator_loss, gradient_penalty, pack, r1_penalty, value_function,
)
from conftest import host, last_json_line, load_demo, t64


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _small_trainer(k=None, loss="saturating", lr=0.01, optimizer=optim.SGD, hidden=(16, 16), **penalties):
    generator = MLPGenerator(latent_dim=2, out_shape=(2,), hidden=hidden)
    discriminator = MLPDiscriminator((2,), hidden=hidden)
    return GANTrainer(generator, discriminator, optimizer(generator.parameters(), lr=lr),
                      optimizer(discriminator.parameters(), lr=lr), k=k, loss=loss, **penalties)


def _value(trainer, real, noise) -> float:
    with sg.no_grad():
        fake = trainer.generator(noise)
        return value_function(trainer.discriminator(real), trainer.discriminator(fake)).item()


def _parameters(module):
    """Host copies of the module's parameters, to compare with later (``p.numpy()``)."""
    return [p.numpy() for p in module.parameters()]


def _float64(module):
    """The module with float64 parameters, for exact comparisons and finite differences."""
    for p in module.parameters():
        p.data = p.data.astype(np.float64)
    return module


# ------------------------------------------------------------------------------------------- losses


def test_losses_agree_with_direct_formulas(rng):
    real, fake = rng.normal(0, 2, (64, 1)), rng.normal(0, 2, (64, 1))
    v = value_function(sg.tensor(real), sg.tensor(fake)).item()
    expected_v = np.mean(np.log(_sigmoid(real))) + np.mean(np.log(1 - _sigmoid(fake)))
    assert v == pytest.approx(expected_v, rel=1e-10)
    assert discriminator_loss(sg.tensor(real), sg.tensor(fake)).item() == pytest.approx(-expected_v, rel=1e-10)
    assert generator_loss(sg.tensor(fake), "saturating").item() == pytest.approx(
        np.mean(np.log(1 - _sigmoid(fake))), rel=1e-10)
    assert generator_loss(sg.tensor(fake), "non_saturating").item() == pytest.approx(
        -np.mean(np.log(_sigmoid(fake))), rel=1e-10)


def test_losses_stay_finite_for_saturated_discriminators():
    # σ(±200) is 0 or 1 in float32, and log(0) = -inf; from logits the limits are exact instead.
    logits = sg.tensor(np.array([[200.0], [-200.0]], dtype=np.float32))
    assert generator_loss(logits[:1], "saturating").item() == pytest.approx(-200.0)
    assert generator_loss(logits[1:], "non_saturating").item() == pytest.approx(200.0)
    assert np.isfinite(discriminator_loss(logits[1:], logits[:1]).item())


def test_loss_gradients_pass_gradcheck(rng):
    real, fake = t64(rng.normal(size=(5, 1))), t64(rng.normal(size=(5, 1)))
    sg.gradcheck(value_function, (real, fake))
    for loss in ("saturating", "non_saturating"):
        sg.gradcheck(lambda f, loss=loss: generator_loss(f, loss), (fake,))


def test_saturating_loss_vanishes_where_the_non_saturating_one_does_not():
    # Early in training D rejects G's samples (logit -8). Both losses fall as the logit rises, but
    # log(1 - D) = -softplus(l) has slope -σ(l) ≈ -3e-4 there, while -log D = softplus(-l) has slope
    # -(1 - σ(l)) ≈ -1: the gradient G needs most is the one the saturating loss withholds.
    grads = {}
    for loss in ("saturating", "non_saturating"):
        logits = sg.tensor(np.array([[-8.0]]), requires_grad=True)
        generator_loss(logits, loss).backward()
        grads[loss] = float(logits.grad[0, 0])
    assert grads["saturating"] == pytest.approx(-_sigmoid(-8.0), rel=1e-9)
    assert grads["non_saturating"] == pytest.approx(-(1 - _sigmoid(-8.0)), rel=1e-9)


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="non_saturating"):
        generator_loss(sg.zeros(3, 1), "wasserstein")
    with pytest.raises(ValueError, match="loss"):
        _small_trainer(loss="hinge")
    with pytest.raises(ValueError, match="k"):
        _small_trainer(k=0)


# ------------------------------------------------------------------------------------- Algorithm 1


def test_a_discriminator_step_increases_the_value_function_on_its_minibatch():
    trainer = _small_trainer()
    real, noise = sg.tensor(sg.data.ring8(64, rng=0)), trainer.noise(64)
    before = _value(trainer, real, noise)
    trainer.discriminator_step(real, noise)
    assert _value(trainer, real, noise) > before


def test_a_generator_step_decreases_the_value_function_with_the_saturating_loss():
    trainer = _small_trainer(loss="saturating")
    real, noise = sg.tensor(sg.data.ring8(64, rng=0)), trainer.noise(64)
    before = _value(trainer, real, noise)
    trainer.generator_step(64, noise)
    assert _value(trainer, real, noise) < before


def test_each_step_moves_only_its_own_player():
    trainer = _small_trainer(optimizer=optim.Adam)
    real = sg.tensor(sg.data.ring8(32, rng=0))
    g_before, d_before = _parameters(trainer.generator), _parameters(trainer.discriminator)
    trainer.discriminator_step(real)
    assert all(np.array_equal(a, p.numpy()) for a, p in zip(g_before, trainer.generator.parameters()))
    assert not any(trainer.generator_optimizer.state)  # G's optimiser never stepped
    assert not all(np.array_equal(a, p.numpy()) for a, p in zip(d_before, trainer.discriminator.parameters()))

    d_after = _parameters(trainer.discriminator)
    d_state = copy.deepcopy(trainer.discriminator_optimizer.state)
    trainer.generator_step(32)
    assert all(np.array_equal(a, p.numpy()) for a, p in zip(d_after, trainer.discriminator.parameters()))
    assert all(np.array_equal(host(s["exp_avg"]), host(t["exp_avg"]))
               for s, t in zip(d_state, trainer.discriminator_optimizer.state))
    assert not all(np.array_equal(a, p.numpy()) for a, p in zip(g_before, trainer.generator.parameters()))
    assert all(p.requires_grad for p in trainer.discriminator.parameters())  # unfrozen afterwards


def test_generator_step_reports_the_global_norm_of_gs_gradient():
    trainer = _small_trainer()
    stats = trainer.generator_step(16)
    # The step leaves the gradients in place (optimisers never write to them): the norm of what it used.
    expected = np.sqrt(sum((host(p.grad).astype(np.float64) ** 2).sum() for p in trainer.generator.parameters()))
    assert stats["g_grad_norm"].item() == pytest.approx(expected, rel=1e-5)
    assert not stats["g_grad_norm"].requires_grad


def test_the_saturating_losss_gradient_vanishes_when_d_rejects_gs_samples():
    # D's output bias at -8 makes D(G(z)) about σ(-8) = 3e-4: G's gradient is D(G(z)) times the same
    # backward under the saturating loss and (1 - D(G(z))) times it under the non-saturating one.
    trainer = _small_trainer()
    trainer.discriminator.head.bias.data[...] = -8.0
    noise, norms = trainer.noise(32), {}
    for loss in ("saturating", "non_saturating"):
        game = copy.deepcopy(trainer)
        game.loss = loss
        norms[loss] = game.generator_step(32, noise)["g_grad_norm"].item()
    assert 0 < norms["saturating"] < 1e-3 * norms["non_saturating"]


def test_frozen_lets_gradients_through_but_not_into_the_module():
    layer = nn.Linear(3, 1)
    x = sg.randn(4, 3, requires_grad=True)
    with frozen(layer):
        layer(x).sum().backward()
    assert x.grad is not None and layer.weight.grad is None
    assert layer.weight.requires_grad


class _CountingSGD(optim.SGD):
    steps = 0

    def step(self):
        self.steps += 1
        super().step()


def test_k_discriminator_steps_per_generator_step_each_on_fresh_data():
    generator, discriminator = MLPGenerator(hidden=(8,)), MLPDiscriminator(hidden=(8,))
    g_opt, d_opt = _CountingSGD(generator.parameters(), lr=0.01), _CountingSGD(discriminator.parameters(), lr=0.01)
    trainer = GANTrainer(generator, discriminator, g_opt, d_opt, k=3)
    batches = []

    def real_batch():
        batches.append(sg.tensor(sg.data.ring8(10, rng=len(batches))))
        return batches[-1]

    for _ in range(4):
        trainer.train_iteration(real_batch)
    assert (d_opt.steps, g_opt.steps, len(batches)) == (12, 4, 12)
    assert (trainer.discriminator_steps, trainer.generator_steps, trainer.iteration) == (12, 4, 4)


GAUSSIAN_MEAN, GAUSSIAN_COV = np.array([1.0, -2.0]), np.array([[1.0, 0.5], [0.5, 0.75]])


def _learn_gaussian(iterations, lr, final_lr, final_from, batch, betas, **game):
    """Train an affine G (a family that holds N(μ, Σ) exactly: b = μ, AAᵀ = Σ) against a discriminator of
    two hidden layers of 32 on N(μ, Σ), with Adam at lr, then final_lr from iteration final_from on; return
    the mean and covariance of 4,000 samples (sampling error about 0.02)."""
    sg.manual_seed(0)
    root = np.linalg.cholesky(GAUSSIAN_COV)
    data_rng = np.random.default_rng(0)
    generator, discriminator = MLPGenerator(2, (2,), hidden=()), MLPDiscriminator((2,), hidden=(32, 32))
    adam = lambda params: optim.Adam(params, lr=lr, betas=betas)  # noqa: E731
    trainer = GANTrainer(generator, discriminator, adam(generator.parameters()), adam(discriminator.parameters()),
                         **game)
    for i in range(iterations):
        if i == final_from:
            trainer.generator_optimizer.lr = trainer.discriminator_optimizer.lr = final_lr
        trainer.train_iteration(
            lambda: sg.tensor((GAUSSIAN_MEAN + data_rng.standard_normal((batch, 2)) @ root.T).astype(np.float32)))
    samples = trainer.sample(4000).numpy().astype(np.float64)
    return samples.mean(axis=0), np.cov(samples, rowvar=False)


def test_a_dense_gan_learns_the_mean_and_covariance_of_a_gaussian():
    # Adam 1e-2, then 2e-3 for the last 300 of 1,000 iterations to let the oscillation settle. Thresholds:
    # every entry of the sample mean and covariance within 0.15 of the truth, from an untrained mean 2 away.
    # Here it ends within about 0.06; seeds 0-5 all ended within 0.16.
    mean, cov = _learn_gaussian(1000, 1e-2, 2e-3, 700, 64, (0.5, 0.999))
    np.testing.assert_allclose(mean, GAUSSIAN_MEAN, atol=0.15)
    np.testing.assert_allclose(cov, GAUSSIAN_COV, atol=0.15)


@pytest.mark.numpy_only("resuming exactly restores the saved random state, which only NumPy's generator can save")
def test_a_trainer_resumed_from_its_state_dict_continues_identically(tmp_path):
    def fresh():
        sg.manual_seed(1)
        return _small_trainer(optimizer=optim.Adam)

    data = lambda: sg.tensor(sg.data.ring8(16, rng=7))  # noqa: E731
    whole = fresh()
    for _ in range(6):
        whole.train_iteration(data)

    part = fresh()
    for _ in range(3):
        part.train_iteration(data)
    sg.save({"trainer": part.state_dict(), "rng": sg.backend.get_rng_state()}, tmp_path / "ckpt.npz")
    state = sg.load(tmp_path / "ckpt.npz")
    resumed = fresh()
    resumed.load_state_dict(state["trainer"])
    sg.backend.set_rng_state(state["rng"])
    for _ in range(3):
        resumed.train_iteration(data)
    assert resumed.iteration == whole.iteration == 6
    for a, b in zip(whole.generator.parameters(), resumed.generator.parameters()):
        np.testing.assert_array_equal(a.data, b.data)


# ------------------------------------------------------------------------------------ the networks


def test_pack_puts_consecutive_samples_side_by_side():
    x = sg.tensor(np.arange(12, dtype=np.float32).reshape(6, 2))
    packed = pack(x, 3)
    np.testing.assert_array_equal(packed.numpy(), [[0, 1, 2, 3, 4, 5], [6, 7, 8, 9, 10, 11]])
    images = sg.randn(4, 1, 28, 28)
    packed = pack(images, 2)
    assert packed.shape == (2, 2, 28, 28)
    np.testing.assert_array_equal(packed.numpy()[1, 0], images.numpy()[2, 0])
    with pytest.raises(ValueError, match="multiple of the packing"):
        pack(sg.randn(5, 2), 2)


def test_dense_networks_shapes():
    assert MLPGenerator()(sg.randn(7, 2)).shape == (7, 2)
    images = MLPGenerator(100, (1, 28, 28), hidden=(32,), tanh=True)(sg.randn(3, 100))
    assert images.shape == (3, 1, 28, 28) and np.abs(images.numpy()).max() < 1
    assert MLPDiscriminator()(sg.randn(8, 2)).shape == (8, 1)
    assert MLPDiscriminator(packing=4)(sg.randn(8, 2)).shape == (2, 1)
    assert MLPDiscriminator((1, 28, 28), hidden=(16,), packing=2)(sg.randn(6, 1, 28, 28)).shape == (3, 1)


def test_dcgan_shapes_and_parameter_layout():
    generator, discriminator = DCGANGenerator(), DCGANDiscriminator(packing=2)
    images = generator(sg.randn(4, 100))
    assert images.shape == (4, 1, 28, 28) and np.abs(images.numpy()).max() <= 1
    assert discriminator(images).shape == (2, 1)
    shapes = {name: p.shape for name, p in generator.named_parameters()}
    assert shapes["net.0.weight"] == (128 * 7 * 7, 100) and shapes["net.4.weight"] == (128, 64, 4, 4)
    assert DCGANDiscriminator().body[0].weight.shape == (32, 1, 4, 4)


def test_dcgan_networks_start_from_dcgan_initialisation():
    # N(0, 0.02²) weights (600,000 of them in the first layer: the sample std is within 1e-4 of 0.02),
    # zero biases, batch-norm scales N(1, 0.02²).
    generator, discriminator = DCGANGenerator(), DCGANDiscriminator()
    for layer in (generator.net[0], generator.net[4], discriminator.body[2], discriminator.head):
        weight = layer.weight.numpy()
        assert abs(weight.std() - 0.02) < 0.002 and abs(weight.mean()) < 0.002
        assert not layer.bias.numpy().any()
    gamma = generator.net[1].weight.numpy()
    assert abs(gamma.mean() - 1) < 0.002 and abs(gamma.std() - 0.02) < 0.002
    assert not generator.net[1].bias.numpy().any()


def test_sampling_uses_eval_mode_and_restores_training_mode():
    trainer = GANTrainer(DCGANGenerator(latent_dim=8), DCGANDiscriminator(),
                         optim.Adam(DCGANGenerator(latent_dim=8).parameters()), optim.Adam(DCGANDiscriminator().parameters()))
    noise = trainer.noise(6)
    one = trainer.sample(6, noise=noise).numpy()
    two = np.concatenate([trainer.sample(3, noise=noise[:3]).numpy(), trainer.sample(3, noise=noise[3:]).numpy()])
    np.testing.assert_allclose(one, two, atol=1e-6)  # eval mode: a sample does not depend on its batch
    assert trainer.generator.training
    assert trainer.sample(5, batch_size=2).shape == (5, 1, 28, 28)


# ------------------------------------------------------------------------------ WGAN-GP and R1


@pytest.mark.parametrize("packing", [1, 2])
def test_gradient_penalty_of_a_linear_critic_is_lambda_times_norm_minus_one_squared(packing, rng):
    # D(x) = w·x + b has ∇ₓD = w at every x̂, whatever ε, so the penalty is λ(‖w‖ − 1)² exactly. A
    # packing critic sees p samples side by side: w has 2p entries, and the norm is the whole pack's.
    critic = _float64(MLPDiscriminator((2,), hidden=(), packing=packing))
    critic.head.weight.data = sg.backend.asarray(rng.normal(0, 1, (1, 2 * packing)))
    w = critic.head.weight.numpy().ravel()
    real, fake = t64(rng.normal(size=(8, 2)), requires_grad=False), t64(rng.normal(size=(8, 2)), requires_grad=False)
    for gp_lambda in (10.0, 0.5):
        expected = gp_lambda * (np.linalg.norm(w) - 1) ** 2
        assert gradient_penalty(critic, real, fake, gp_lambda).item() == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("packing", [1, 2])
def test_r1_penalty_of_a_linear_discriminator_is_half_gamma_times_squared_norm(packing, rng):
    discriminator = _float64(MLPDiscriminator((2,), hidden=(), packing=packing))
    w = discriminator.head.weight.numpy().ravel()
    real = t64(rng.normal(size=(8, 2)), requires_grad=False)
    for gamma in (10.0, 0.1):
        assert r1_penalty(discriminator, real, gamma).item() == pytest.approx(gamma / 2 * w @ w, rel=1e-12)
    assert not real.requires_grad  # the penalty differentiates with respect to a copy of the data


class _RecordingCritic(nn.Module):
    """A linear critic of packs of ``packing`` 2-D samples that keeps every input it is shown."""

    def __init__(self, packing: int):
        super().__init__()
        self.packing, self.linear, self.inputs = packing, nn.Linear(2 * packing, 1), []

    def forward(self, x):
        self.inputs.append(x.numpy().copy())
        return self.linear(pack(x, self.packing))


@pytest.mark.parametrize("packing", [1, 3])
def test_gradient_penalty_interpolates_with_one_epsilon_per_sample_or_per_pack(packing, rng):
    # x̂ = εx + (1 − ε)G(z): recover ε from x̂ for every coordinate. It must be one number per sample (per
    # pack, when the critic packs: x̂ is then on the line between a real pack and a generated one), in
    # [0, 1], and differ from sample to sample.
    critic = _RecordingCritic(packing)
    real, fake = rng.normal(size=(12, 2)).astype(np.float32), rng.normal(size=(12, 2)).astype(np.float32)
    gradient_penalty(critic, sg.tensor(real), sg.tensor(fake))
    (mixed,) = critic.inputs
    epsilon = ((mixed - fake) / (real - fake)).reshape(12 // packing, -1)
    np.testing.assert_allclose(epsilon, epsilon[:, :1].repeat(epsilon.shape[1], axis=1), atol=1e-4)
    assert epsilon.min() >= -1e-4 and epsilon.max() <= 1 + 1e-4 and np.unique(epsilon[:, 0].round(4)).size > 1


@pytest.mark.parametrize("penalty", ["gradient", "r1"])
@pytest.mark.parametrize("activation", [nn.Tanh, nn.LeakyReLU])
def test_the_penalties_gradient_reaches_the_critics_weights(penalty, activation, rng):
    # A penalty is a function of ∇ₓD, itself a function of D's weights: backward() through the gradient
    # that grad(..., create_graph=True) recorded (a double backward) must give d(penalty)/d(weight). Checked
    # against central differences in float64 on every weight of both layers; tanh has a second derivative,
    # LeakyReLU's ∇ₓD is piecewise linear in the weights.
    critic = _float64(nn.Sequential(nn.Linear(3, 4), activation(), nn.Linear(4, 1)))
    real, fake = t64(rng.normal(size=(6, 3)), requires_grad=False), t64(rng.normal(size=(6, 3)), requires_grad=False)

    def value():
        sg.manual_seed(7)  # the same ε on every call
        return gradient_penalty(critic, real, fake) if penalty == "gradient" else r1_penalty(critic, real, 10.0)

    value().backward()
    h = 1e-6
    for layer in (critic[0], critic[2]):
        numeric = np.zeros(layer.weight.shape)
        for index in np.ndindex(layer.weight.shape):
            original = layer.weight.data.copy()
            shifted = {}
            for sign in (1, -1):
                layer.weight.data = original.copy()
                layer.weight.data[index] += sign * h
                shifted[sign] = value().item()
            layer.weight.data = original
            numeric[index] = (shifted[1] - shifted[-1]) / (2 * h)
        assert np.abs(host(layer.weight.grad)).max() > 1e-3  # it does reach them
        np.testing.assert_allclose(host(layer.weight.grad), numeric, rtol=1e-5, atol=1e-8)


def test_a_linear_critic_trained_with_the_penalty_settles_at_its_penalised_optimum():
    # Data at one point, G's samples at another a distance d away. Along the segment between them a
    # linear critic with slope s earns the estimate s·d and pays λ(s − 1)², so it settles where the
    # derivative d − 2λ(s − 1) is 0: s = 1 + d/(2λ), an estimate of d + d²/(2λ), slightly above the true
    # Wasserstein distance d: the penalty is a soft Lipschitz constraint. Here d = 3, λ = 10: s = 1.15.
    critic = MLPDiscriminator((2,), hidden=())
    adam = optim.Adam(critic.parameters(), lr=0.02, betas=(0.5, 0.9))
    real = sg.tensor(np.zeros((16, 2), dtype=np.float32))
    fake = sg.tensor(np.full((16, 2), 3 / np.sqrt(2), dtype=np.float32))  # at distance 3 from the data
    for _ in range(300):
        loss = critic_loss(critic(real), critic(fake)) + gradient_penalty(critic, real, fake, 10.0)
        adam.zero_grad()
        loss.backward()
        adam.step()
    assert np.linalg.norm(critic.head.weight.numpy()) == pytest.approx(1.15, abs=0.01)
    assert -critic_loss(critic(real), critic(fake)).item() == pytest.approx(3.45, abs=0.03)


def test_wgan_gp_steps_descend_the_critic_loss_plus_penalty_and_report_its_estimate():
    trainer = _small_trainer(loss="wgan-gp", optimizer=optim.Adam)
    assert (trainer.k, trainer.gp_lambda, trainer.r1_gamma) == (5, 10.0, 0.0)  # the paper's n_critic and λ
    real, noise = sg.tensor(sg.data.ring8(16, rng=0)), trainer.noise(16)
    with sg.no_grad():
        real_out, fake_out = trainer.discriminator(real), trainer.discriminator(trainer.generator(noise))
    sg.manual_seed(5)  # ε: the same draw in the penalty here and in the step
    penalty = gradient_penalty(trainer.discriminator, real, trainer.generator(noise).detach()).item()
    sg.manual_seed(5)
    stats = trainer.discriminator_step(real, noise)
    assert set(stats) == {"d_loss", "wasserstein", "gradient_penalty"}
    assert stats["wasserstein"].item() == pytest.approx(real_out.mean().item() - fake_out.mean().item(), rel=1e-5)
    assert stats["gradient_penalty"].item() == pytest.approx(penalty, rel=1e-5)
    assert stats["d_loss"].item() == pytest.approx(penalty - stats["wasserstein"].item(), rel=1e-5)
    assert set(trainer.train_iteration(lambda: real)) == {"d_loss", "wasserstein", "gradient_penalty", "g_loss",
                                                          "g_grad_norm"}
    assert trainer.discriminator_steps == 1 + 5


def test_r1_is_added_to_the_discriminators_loss():
    trainer = _small_trainer(loss="non_saturating", r1_gamma=2.0)
    real, noise = sg.tensor(sg.data.ring8(16, rng=0)), trainer.noise(16)
    with sg.no_grad():
        fake = trainer.generator(noise)
        gan_loss = discriminator_loss(trainer.discriminator(real), trainer.discriminator(fake)).item()
    penalty = r1_penalty(trainer.discriminator, real, 2.0).item()
    stats = trainer.discriminator_step(real, noise)
    assert set(stats) == {"d_loss", "real_score", "fake_score", "r1_penalty"}
    assert stats["r1_penalty"].item() == pytest.approx(penalty, rel=1e-5)
    assert stats["d_loss"].item() == pytest.approx(gan_loss + penalty, rel=1e-5)


def test_lazy_r1_adds_the_penalty_times_its_interval_on_one_step_in_that_many(monkeypatch):
    trainer = _small_trainer(loss="non_saturating", r1_gamma=2.0, r1_every=3)
    calls = []
    original = gan.r1_penalty
    monkeypatch.setattr(gan, "r1_penalty", lambda *args: calls.append(trainer.discriminator_steps) or original(*args))
    real = sg.tensor(sg.data.ring8(16, rng=0))
    for step in range(7):
        noise = trainer.noise(16)
        with sg.no_grad():
            fake = trainer.generator(noise)
            gan_loss = discriminator_loss(trainer.discriminator(real), trainer.discriminator(fake)).item()
        penalty = original(trainer.discriminator, real, 2.0).item() if step % 3 == 0 else 0.0
        stats = trainer.discriminator_step(real, noise)
        assert stats["d_loss"].item() == pytest.approx(gan_loss + 3 * penalty, rel=1e-5)
    assert calls == [0, 3, 6]
    with pytest.raises(ValueError, match="r1_every=2 spaces out the R1 penalty, which is off"):
        _small_trainer(loss="non_saturating", r1_every=2)


def test_a_wgan_gp_step_trains_a_packed_dcgan_critic_through_its_convolutions():
    generator, critic = DCGANGenerator(latent_dim=8), DCGANDiscriminator(packing=2)
    trainer = GANTrainer(generator, critic, optim.Adam(generator.parameters()), optim.Adam(critic.parameters()),
                         k=1, loss="wgan-gp")
    real = sg.rand(4, 1, 28, 28) * 2 - 1
    gradient_penalty(critic, real, trainer.sample(4)).backward()
    assert all(np.abs(host(layer.weight.grad)).max() > 0
               for layer in (critic.body[0], critic.body[2], critic.head))  # double backward through conv
    before = {name: p.numpy() for name, p in critic.named_parameters()}
    stats = trainer.train_iteration(lambda: real)
    assert all(np.isfinite(value.item()) for value in stats.values())
    # Every parameter moves but the last bias: a constant added to the critic cancels in mean D(x) − mean
    # D(G(z)) and leaves ∇ₓD alone, so its gradient is exactly 0.
    unchanged = [name for name, p in critic.named_parameters() if np.array_equal(before[name], p.numpy())]
    assert unchanged == ["head.bias"]


def test_a_wgan_gp_learns_the_mean_and_covariance_of_a_gaussian():
    # The Gaussian of the GAN test above, as WGAN-GP plays it: the paper's n_critic = 5, λ = 10 and Adam
    # β = (0.5, 0.9), at lr 1e-2 (the paper's 1e-4 would take thousands of iterations), then 1e-3 for the
    # last 120 of 400 iterations. Batches of 256: with 64, the critic's view of the covariance was so noisy
    # that G wandered (covariance off by up to 0.34). Thresholds: every entry of the sample mean within 0.15
    # and of the covariance within 0.2 of the truth, from an untrained mean 2 away. Here it ends within
    # about 0.08 and 0.06; seeds 0-9 all ended within 0.10 and 0.16.
    mean, cov = _learn_gaussian(400, 1e-2, 1e-3, 280, 256, (0.5, 0.9), loss="wgan-gp")
    np.testing.assert_allclose(mean, GAUSSIAN_MEAN, atol=0.15)
    np.testing.assert_allclose(cov, GAUSSIAN_COV, atol=0.2)


def test_penalty_settings_that_make_no_sense_are_refused():
    with pytest.raises(ValueError, match="r1_gamma.*wgan-gp"):
        _small_trainer(loss="wgan-gp", r1_gamma=1.0)
    with pytest.raises(ValueError, match="gp_lambda.*needs loss='wgan-gp'"):
        _small_trainer(loss="non_saturating", gp_lambda=10.0)
    for bad in (-1.0, float("nan")):
        with pytest.raises(ValueError, match="gp_lambda"):
            _small_trainer(loss="wgan-gp", gp_lambda=bad)
        with pytest.raises(ValueError, match="r1_gamma"):
            _small_trainer(loss="saturating", r1_gamma=bad)
    _small_trainer(loss="wgan-gp", gp_lambda=0.0)  # λ = 0, the unconstrained critic: an ablation, allowed


def test_penalties_refuse_critics_they_are_not_defined_for():
    # Batch norm in training mode makes each output depend on the whole batch: no per-sample gradient.
    critic = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.LeakyReLU(0.2), nn.Linear(4, 1))
    real, fake = sg.randn(4, 2), sg.randn(4, 2)
    with pytest.raises(ValueError, match="batch norm"):
        gradient_penalty(critic, real, fake)
    with pytest.raises(ValueError, match="batch norm"):
        r1_penalty(critic, real, 1.0)
    critic.eval()  # on running statistics each sample is on its own again
    assert np.isfinite(gradient_penalty(critic, real, fake).item())
    with pytest.raises(ValueError, match="same shape"):
        gradient_penalty(MLPDiscriminator(), real, sg.randn(6, 2))
    with pytest.raises(ValueError, match="packs of 2"):
        gradient_penalty(MLPDiscriminator(packing=2), sg.randn(5, 2), sg.randn(5, 2))
    # A critic that packs without saying so (no `packing` attribute) would get a norm per wrong group.
    with pytest.raises(ValueError, match="one per pack"):
        r1_penalty(nn.Sequential(MLPDiscriminator(packing=2)), real, 1.0)


def test_the_state_dict_keeps_the_game_and_refuses_to_load_into_another(tmp_path):
    data = lambda: sg.tensor(sg.data.ring8(16, rng=7))  # noqa: E731
    trainer = _small_trainer(loss="wgan-gp", gp_lambda=5.0, optimizer=optim.Adam)
    trainer.train_iteration(data)
    sg.save({"trainer": trainer.state_dict()}, tmp_path / "ckpt.npz")
    state = sg.load(tmp_path / "ckpt.npz")["trainer"]
    assert state["settings"] == {"loss": "wgan-gp", "k": 5, "gp_lambda": 5.0, "r1_gamma": 0.0, "r1_every": 1}
    same = _small_trainer(loss="wgan-gp", gp_lambda=5.0, optimizer=optim.Adam)
    same.load_state_dict(state)
    assert same.iteration == 1
    for other in (dict(loss="wgan-gp"), dict(loss="non_saturating", r1_gamma=5.0),
                  dict(loss="wgan-gp", gp_lambda=5.0, k=1)):
        trainer = _small_trainer(optimizer=optim.Adam, **other)
        before = _parameters(trainer.discriminator)
        with pytest.raises(ValueError, match="other settings"):
            trainer.load_state_dict(state)
        assert trainer.iteration == 0  # nothing half-loaded
        assert all(np.array_equal(a, p.numpy()) for a, p in zip(before, trainer.discriminator.parameters()))


# ---------------------------------------------------------------------------------------- the demo


@pytest.mark.numpy_only("resuming exactly restores the saved random state, which only NumPy's generator can save")
def test_toy_demo_writes_its_outputs_and_resumes_exactly(tmp_path, capsys):
    demo = load_demo("gan")
    # A constant learning rate: a decay schedule spans --epochs, so a 1-epoch run would decay differently.
    flags = ["--dataset", "grid25", "--iterations-per-epoch", "20", "--eval-samples", "200", "--quiet",
             "--batch-size", "20", "--packing", "2", "--decay-from", "1"]
    whole = demo.main(flags + ["--epochs", "2", "--out", str(tmp_path / "whole")])
    assert last_json_line(capsys)["iterations"] == 40
    for name in ("samples.png", "samples_over_training.png", "losses.png", "scores.png", "metrics.json"):
        assert (tmp_path / "whole" / name).stat().st_size > 0
    assert set(whole["final"]) >= {"modes", "high_quality"}
    assert whole["args"]["model"] == "dense"  # the networks used, not --model's MNIST default
    assert whole["history"][-1]["g_grad_norm"] > 0

    demo.main(flags + ["--epochs", "1", "--out", str(tmp_path / "parts")])
    resumed = demo.main(flags + ["--epochs", "2", "--out", str(tmp_path / "parts"), "--resume"])
    assert resumed["history"] == whole["history"]
    assert resumed["final"] == whole["final"]


def test_mnist_demo_runs_end_to_end(tmp_path, capsys, monkeypatch):
    demo = load_demo("gan")
    monkeypatch.setenv("SCRATCHGEN_DATA_DIR", str(tmp_path / "cache"))  # the judge is trained and cached here
    report = demo.main(["--dataset", "mnist", "--epochs", "1", "--iterations-per-epoch", "2", "--eval-samples", "100",
                        "--judge-subset", "300", "--quiet", "--out", str(tmp_path / "run")])
    final = last_json_line(capsys)
    for name in ("class_shares", "inception_score", "frechet_distance"):
        assert name in final and f"real_{name}" in final
    assert len(final["class_shares"]) == 10 and final["real_inception_score"] > final["inception_score"]
    assert final["judge_epochs"] == metrics.JUDGE_EPOCHS  # the judge is part of the result: its score depends on it
    assert report["final"]["iterations"] == 2
    assert final["test_nearest_train_distance_median"] > 0 and final["nearest_train_distance_median"] > 0
    for name in ("samples.png", "samples_over_training.png", "losses.png", "scores.png", "nearest_training.png"):
        assert (tmp_path / "run" / name).exists()


@pytest.mark.numpy_only("resuming exactly restores the saved random state, which only NumPy's generator can save")
def test_demo_plays_wgan_gp_with_the_papers_defaults_and_resumes_exactly(tmp_path, capsys):
    demo = load_demo("gan")
    flags = ["--dataset", "ring8", "--iterations-per-epoch", "8", "--eval-samples", "200", "--quiet",
             "--batch-size", "20", "--decay-from", "1"]
    whole = demo.main(flags + ["--loss", "wgan-gp", "--epochs", "2", "--out", str(tmp_path / "whole")])
    assert last_json_line(capsys)["iterations"] == 16
    args = json.loads((tmp_path / "whole" / "metrics.json").read_text())["args"]
    # Algorithm 1's n_critic and betas; on the toys the authors' toy lambda = 0.1, no packing, the ring's lr.
    assert (args["loss"], args["k"], args["lr"], args["beta1"], args["beta2"], args["gp_lambda"], args["packing"]) == (
        "wgan-gp", 5, 2e-4, 0.5, 0.9, 0.1, 1)
    on_mnist = demo.parse_args(["--dataset", "mnist", "--loss", "wgan-gp"])
    assert (on_mnist.gp_lambda, on_mnist.lr) == (10.0, 1e-4)  # the paper's elsewhere
    epoch = whole["history"][-1]
    assert {"wasserstein", "gradient_penalty"} <= set(epoch) and "real_score" not in epoch
    for name in ("losses.png", "scores.png"):
        assert (tmp_path / "whole" / name).stat().st_size > 0

    demo.main(flags + ["--loss", "wgan-gp", "--epochs", "1", "--out", str(tmp_path / "parts")])
    resumed = demo.main(flags + ["--loss", "wgan-gp", "--epochs", "2", "--out", str(tmp_path / "parts"), "--resume"])
    assert resumed["history"] == whole["history"]
    assert resumed["final"] == whole["final"]
    # Resumed as another game, the checkpoint is refused rather than continued as something else.
    with pytest.warns(UserWarning, match="differ"), pytest.raises(ValueError, match="other settings"):
        demo.main(flags + ["--epochs", "3", "--out", str(tmp_path / "parts"), "--resume"])


def test_demo_preset_goodfellow2014_is_algorithm_1_and_flags_still_win():
    demo = load_demo("gan")
    args = demo.parse_args(["--preset", "goodfellow2014"])
    assert (args.optimizer, args.beta1, args.lr, args.k, args.loss, args.packing, args.decay_from) == (
        "sgd", 0.5, 0.01, 1, "saturating", 1, 1.0)
    args = demo.parse_args(["--preset", "goodfellow2014", "--loss", "non_saturating", "--k", "5", "--beta1", "0.9"])
    assert (args.optimizer, args.loss, args.k, args.beta1) == ("sgd", "non_saturating", 5, 0.9)
    plain = demo.parse_args([])
    assert (plain.optimizer, plain.loss, plain.packing) == ("adam", "non_saturating", 2)


def test_demo_records_the_networks_it_uses(capsys):
    demo = load_demo("gan")
    assert demo.parse_args(["--dataset", "ring8"]).model == "dense"  # the toys always play with the dense pair
    assert demo.parse_args(["--dataset", "mnist"]).model == "dcgan"
    assert demo.parse_args(["--dataset", "mnist", "--model", "dense"]).model == "dense"
    with pytest.raises(SystemExit):
        demo.parse_args(["--dataset", "grid25", "--model", "dcgan"])
    assert "--model dcgan is for --dataset mnist" in capsys.readouterr().err


def test_demo_compares_the_two_losses_with_k_1_and_5(tmp_path, capsys):
    demo = load_demo("gan")
    report = demo.main(["--preset", "goodfellow2014", "--compare-losses", "3", "--batch-size", "10", "--quiet",
                        "--out", str(tmp_path / "cmp")])
    assert (tmp_path / "cmp" / "loss_comparison.png").stat().st_size > 0
    final = last_json_line(capsys)
    for loss, k in demo.COMPARED_GAMES:
        assert final[f"{loss}_k{k}_iterations"] == 3
        assert 0 < final[f"{loss}_k{k}_fake_score"] < 1 and final[f"{loss}_k{k}_g_grad_norm"] > 0
    assert report["args"]["model"] == "dense"
    for bad in (["--dataset", "mnist"], ["--loss", "wgan-gp"]):
        with pytest.raises(SystemExit):
            demo.parse_args(["--compare-losses", "3"] + bad)
        assert "--compare-losses" in capsys.readouterr().err


def test_demo_adds_the_r1_penalty_and_refuses_flags_that_do_not_fit(tmp_path, capsys):
    demo = load_demo("gan")
    report = demo.main(["--dataset", "grid25", "--r1", "10", "--epochs", "1", "--iterations-per-epoch", "10",
                        "--eval-samples", "200", "--batch-size", "20", "--quiet", "--out", str(tmp_path / "run")])
    assert report["args"]["r1"] == 10 and report["args"]["gp_lambda"] is None
    assert report["history"][-1]["r1_penalty"] > 0
    assert (tmp_path / "run" / "losses.png").stat().st_size > 0
    for bad, flag in ((["--loss", "wgan-gp", "--r1", "1"], "--r1"), (["--gp-lambda", "5"], "--gp-lambda"),
                      (["--r1", "-1"], "--r1"), (["--loss", "wgan-gp", "--gp-lambda", "nan"], "--gp-lambda")):
        with pytest.raises(SystemExit):
            demo.parse_args(bad)
        assert flag in capsys.readouterr().err

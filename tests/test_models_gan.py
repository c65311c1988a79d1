"""The GAN: its losses, Algorithm 1's steps (who moves, in which direction, how often), the networks'
shapes and packing, a GAN that learns a 2-D Gaussian, checkpoints, and the demo."""

import copy

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import metrics, nn, optim
from scratchgen.models.gan import (
    DCGANDiscriminator, DCGANGenerator, GANTrainer, MLPDiscriminator, MLPGenerator, discriminator_loss,
    frozen, generator_loss, pack, value_function,
)
from conftest import last_json_line, load_demo, t64



def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


def _small_trainer(k=1, loss="saturating", lr=0.01, optimizer=optim.SGD, hidden=(16, 16)):
    generator = MLPGenerator(latent_dim=2, out_shape=(2,), hidden=hidden)
    discriminator = MLPDiscriminator((2,), hidden=hidden)
    return GANTrainer(generator, discriminator, optimizer(generator.parameters(), lr=lr),
                      optimizer(discriminator.parameters(), lr=lr), k=k, loss=loss)


def _value(trainer, real, noise) -> float:
    with sg.no_grad():
        fake = trainer.generator(noise)
        return value_function(trainer.discriminator(real), trainer.discriminator(fake)).item()


def _parameters(module):
    return [p.data.copy() for p in module.parameters()]


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
    assert all(np.array_equal(a, p.data) for a, p in zip(g_before, trainer.generator.parameters()))
    assert not any(trainer.generator_optimizer.state)  # G's optimiser never stepped
    assert not all(np.array_equal(a, p.data) for a, p in zip(d_before, trainer.discriminator.parameters()))

    d_after = _parameters(trainer.discriminator)
    d_state = copy.deepcopy(trainer.discriminator_optimizer.state)
    trainer.generator_step(32)
    assert all(np.array_equal(a, p.data) for a, p in zip(d_after, trainer.discriminator.parameters()))
    assert all(np.array_equal(s["exp_avg"], t["exp_avg"]) for s, t in zip(d_state, trainer.discriminator_optimizer.state))
    assert not all(np.array_equal(a, p.data) for a, p in zip(g_before, trainer.generator.parameters()))
    assert all(p.requires_grad for p in trainer.discriminator.parameters())  # unfrozen afterwards


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


def test_a_dense_gan_learns_the_mean_and_covariance_of_a_gaussian():
    # Data N(μ, Σ). The generator is affine, G(z) = Az + b, a family that holds the answer exactly
    # (b = μ, AAᵀ = Σ); the discriminator has two hidden layers of 32. Adam 1e-2, then 2e-3 for the last
    # 300 of 1,000 iterations to let the oscillation settle. Thresholds: every entry of the sample mean
    # and covariance (4,000 samples; sampling error about 0.02) within 0.15 of the truth, from an
    # untrained mean 2 away. Here it ends within about 0.06; seeds 0-5 all ended within 0.16.
    sg.manual_seed(0)
    mean, cov = np.array([1.0, -2.0]), np.array([[1.0, 0.5], [0.5, 0.75]])
    root = np.linalg.cholesky(cov)
    data_rng = np.random.default_rng(0)
    generator, discriminator = MLPGenerator(2, (2,), hidden=()), MLPDiscriminator((2,), hidden=(32, 32))
    adam = lambda params: optim.Adam(params, lr=1e-2, betas=(0.5, 0.999))  # noqa: E731
    trainer = GANTrainer(generator, discriminator, adam(generator.parameters()), adam(discriminator.parameters()))
    for i in range(1000):
        if i == 700:
            trainer.generator_optimizer.lr = trainer.discriminator_optimizer.lr = 2e-3
        trainer.train_iteration(lambda: sg.tensor((mean + data_rng.standard_normal((64, 2)) @ root.T).astype(np.float32)))
    samples = trainer.sample(4000).numpy().astype(np.float64)
    np.testing.assert_allclose(samples.mean(axis=0), mean, atol=0.15)
    np.testing.assert_allclose(np.cov(samples, rowvar=False), cov, atol=0.15)


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
    assert DCGANDiscriminator().net[0].weight.shape == (32, 1, 4, 4)


def test_dcgan_networks_start_from_dcgan_initialisation():
    # N(0, 0.02²) weights (600,000 of them in the first layer: the sample std is within 1e-4 of 0.02),
    # zero biases, batch-norm scales N(1, 0.02²).
    generator, discriminator = DCGANGenerator(), DCGANDiscriminator()
    for layer in (generator.net[0], generator.net[4], discriminator.net[2], discriminator.net[5]):
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


# ---------------------------------------------------------------------------------------- the demo


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
    for name in ("samples.png", "samples_over_training.png", "losses.png", "scores.png"):
        assert (tmp_path / "run" / name).exists()

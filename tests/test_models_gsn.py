"""The denoising autoencoder's Markov chain (scratchgen.models.gsn): its transition, and what it learns.

The learning test uses a binary toy with a known distribution: 8 pixels, two complementary prototypes
11110000 and 00001111 drawn with equal probability, each pixel then flipped with probability 0.1. Its
256 probabilities are exact, so the chain's samples can be compared with it by total variation (TV).
Measured over seeds 0-2 (2 to 5 s each): the sampling chain's TV is 0.16 to 0.24; pixels drawn
independently from the chain's own marginals score 0.68 to 0.74 (they cannot keep the two halves of
the image together); the chain that takes means σ(logits) instead of samples, its states rounded, 0.37
to 0.47, because its states contract onto the prototypes. The sampling chain's remaining error is
mostly its factorised Bernoulli output: the exact P(x | x̃) is not a product over pixels, and computed
exactly for this toy, the best product of Bernoullis (each pixel given its exact P(x_i | x̃)) leaves
the chain's stationary law 0.085 away in TV at this corruption level.
"""

import itertools

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import optim
from scratchgen.data import DataLoader
from scratchgen.models import (
    DenoisingAutoencoder, DenseAutoencoder, chain_step, corrupt, random_binary_images, reconstruction_loss,
    run_chain, walkback_loss,
)

PIXELS, FLIP, LEVEL = 8, 0.1, 0.3
PROTOTYPES = np.array([[1, 1, 1, 1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, 1, 1]], dtype=np.float32)
STATES = np.array(list(itertools.product([0, 1], repeat=PIXELS)), dtype=np.float32)  # all 256 images


def _true_probabilities():
    flips = (STATES[:, None, :] != PROTOTYPES[None]).sum(axis=2)  # (256, 2) distances to the prototypes
    return (0.5 * FLIP ** flips * (1 - FLIP) ** (PIXELS - flips)).sum(axis=1)


def _draw(n, rng):
    x = PROTOTYPES[rng.integers(0, 2, n)]
    return np.abs(x - (rng.random(x.shape) < FLIP)).astype(np.float32).reshape(n, 1, 1, PIXELS)


def _total_variation(samples):
    index = samples.reshape(-1, PIXELS).round().astype(int) @ (2 ** np.arange(PIXELS - 1, -1, -1))
    empirical = np.bincount(index, minlength=2 ** PIXELS) / len(index)
    return 0.5 * np.abs(empirical - _true_probabilities()).sum()


def _toy_model(noise="salt_and_pepper", level=LEVEL):
    return DenoisingAutoencoder(DenseAutoencoder(64, hidden=(128,), image_shape=(1, 1, PIXELS)), noise, level)


# ------------------------------------------------------------------------------------------ corruption


def test_salt_and_pepper_replaces_the_given_share_by_fair_coins(backend):
    x = sg.tensor(np.tile(PROTOTYPES, (20000, 1)).reshape(-1, 1, 1, PIXELS))
    noisy = corrupt(x, "salt_and_pepper", 0.3).numpy()
    # A replaced pixel keeps its value half the time: 15% change, and the image stays binary.
    changed = noisy != x.numpy()
    assert set(np.unique(noisy)) <= {0.0, 1.0}
    assert abs(changed.mean() - 0.15) < 0.002  # 5 standard errors over 320,000 pixels
    assert abs(changed[x.numpy() == 1].mean() - changed[x.numpy() == 0].mean()) < 0.004  # salt as often as pepper


def test_salt_and_pepper_level_is_checked():
    with pytest.raises(ValueError, match="out of range for salt_and_pepper"):
        corrupt(sg.rand(2, 1, 1, 4), "salt_and_pepper", 1.5)


# ------------------------------------------------------------------------------------------ transition


def test_chain_step_is_corrupt_then_denoise_then_draw_with_a_fixed_seed():
    model = _toy_model().eval()
    x = sg.tensor(_draw(16, np.random.default_rng(0)))
    sg.manual_seed(5)
    state, mean = chain_step(model, x)
    sg.manual_seed(5)  # the same three draws by hand, in the same order
    corrupted = corrupt(x, "salt_and_pepper", LEVEL)
    with sg.no_grad():
        expected_mean = model.reconstruct(corrupted).numpy()
    expected_state = sg.backend.to_numpy(sg.backend.rng().random(expected_mean.shape, dtype=np.float32)) < expected_mean
    np.testing.assert_array_equal(sg.backend.to_numpy(mean), expected_mean)
    np.testing.assert_array_equal(sg.backend.to_numpy(state), expected_state.astype(np.float32))


def test_next_state_pixel_frequencies_match_the_reconstruction_probabilities(backend):
    """With the last layer's weights zeroed the logits are its bias, whatever x̃: x_{t+1} ~ Bernoulli(σ(b))."""
    model = _toy_model().eval()
    last = model.autoencoder.decoder[-2]  # the final Linear, before Unflatten
    last.weight.data[...] = 0
    logits = np.array([-3, -1, -0.3, 0, 0.4, 1, 2, 4], dtype=np.float32)
    last.bias.data[...] = sg.backend.asarray(logits)
    x = random_binary_images(20000, (1, 1, PIXELS))
    state, mean = chain_step(model, x)
    p = 1 / (1 + np.exp(-logits))
    np.testing.assert_allclose(sg.backend.to_numpy(mean)[0].ravel(), p, rtol=1e-5)
    frequencies = sg.backend.to_numpy(state).reshape(-1, PIXELS).mean(axis=0)
    assert np.all(np.abs(frequencies - p) < 5 * np.sqrt(p * (1 - p) / 20000)), (frequencies, p)
    means_only, _ = chain_step(model, x, sample=False)  # the shortcut gives σ(b) itself, a grey image
    np.testing.assert_allclose(sg.backend.to_numpy(means_only)[0].ravel(), p, rtol=1e-5)


def test_run_chain_keeps_every_kth_state_and_checks_its_arguments():
    model = _toy_model()
    x0 = random_binary_images(5, (1, 1, PIXELS))
    states, means = run_chain(model, x0, steps=7, every=3)
    assert states.shape == means.shape == (3, 5, 1, 1, PIXELS)  # x_0, x_3, x_6
    np.testing.assert_array_equal(sg.backend.to_numpy(states[0]), sg.backend.to_numpy(x0))
    assert not model.training
    with pytest.raises(ValueError, match="steps and every must be positive integers"):
        run_chain(model, x0, steps=0)
    with pytest.raises(TypeError, match="expected a DenoisingAutoencoder"):
        run_chain(DenseAutoencoder(2, image_shape=(1, 1, PIXELS)), x0, steps=1)


def test_walkback_of_one_step_is_ordinary_denoising_training():
    model = _toy_model().train()
    x = sg.tensor(_draw(32, np.random.default_rng(1)))
    sg.manual_seed(3)
    expected = reconstruction_loss(model(x), x).item()
    sg.manual_seed(3)
    assert walkback_loss(model, x, walkbacks=1).item() == pytest.approx(expected, rel=1e-6)
    longer = walkback_loss(model, x, walkbacks=3)
    longer.backward()
    assert all(p.grad is not None for p in model.parameters())
    with pytest.raises(ValueError, match="walkbacks must be a positive integer"):
        walkback_loss(model, x, walkbacks=0)


# -------------------------------------------------------------------------------------------- learning


def test_the_sampling_chain_of_a_trained_denoiser_draws_the_toy_distribution_and_the_mean_chain_does_not():
    rng = np.random.default_rng(0)
    data = _draw(4000, rng)
    assert _total_variation(_draw(20000, rng)) < 0.04  # the yardstick: 20,000 true samples
    model = _toy_model()
    opt = optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(30):  # about 2 seconds
        for (batch,) in DataLoader(data, batch_size=64, shuffle=True, seed=0):
            opt.zero_grad()
            walkback_loss(model, batch).backward()
            opt.step()

    x0 = random_binary_images(1000, (1, 1, PIXELS))
    states, _ = run_chain(model, x0, steps=300, every=10)
    samples = sg.backend.to_numpy(states[5:]).reshape(-1, PIXELS)  # 26,000 states after 50 steps of burn-in
    chain_tv = _total_variation(samples)
    marginals = samples.mean(axis=0)
    independent = np.prod(np.where(STATES == 1, marginals, 1 - marginals), axis=1)
    independent_tv = 0.5 * np.abs(independent - _true_probabilities()).sum()
    mean_states, _ = run_chain(model, x0, steps=300, every=10, sample=False)
    mean_tv = _total_variation(sg.backend.to_numpy(mean_states[5:]))
    assert chain_tv < 0.3, f"sampling chain TV {chain_tv:.3f}"
    assert independent_tv > 0.6, f"independent pixels TV {independent_tv:.3f}"  # the chain keeps the correlations
    assert mean_tv > chain_tv + 0.1, f"mean chain TV {mean_tv:.3f} against the sampling chain's {chain_tv:.3f}"

"""Toy 2-D distributions: sample statistics per mode, exact densities, the curves' geometry, seeding."""

import itertools
import math

import numpy as np
import pytest

import scratchgen as sg
from scratchgen.data import GaussianMixture2D, grid25, grid25_mixture, ring8, ring8_mixture, swiss_roll, two_moons


def test_ring8_centres_lie_evenly_on_the_circle():
    mixture = ring8_mixture(radius=2.0, std=0.02)
    assert mixture.means.shape == (8, 2) and mixture.std == 0.02
    np.testing.assert_allclose(np.hypot(*mixture.means.T), 2.0)
    angles = np.sort(np.mod(np.arctan2(mixture.means[:, 1], mixture.means[:, 0]), 2 * np.pi))
    np.testing.assert_allclose(np.diff(angles), 2 * np.pi / 8)


def test_grid25_centres_are_the_grid():
    mixture = grid25_mixture()
    assert mixture.std == 0.05
    expected = {(float(x), float(y)) for x, y in itertools.product([-4, -2, 0, 2, 4], repeat=2)}
    assert {tuple(m) for m in mixture.means.tolist()} == expected


@pytest.mark.parametrize("mixture", [ring8_mixture(), grid25_mixture(), ring8_mixture(radius=2.0, std=0.1)],
                         ids=["ring8", "grid25", "ring8-wide"])
def test_samples_have_each_modes_mean_std_and_share(mixture):
    n = 40000
    points, labels = mixture.sample(n, rng=0, return_labels=True)
    assert points.shape == (n, 2) and points.dtype == np.float32
    k = len(mixture)
    counts = np.bincount(labels, minlength=k)
    share_sd = math.sqrt(n * (1 / k) * (1 - 1 / k))
    assert np.all(np.abs(counts - n / k) < 5 * share_sd)
    for mode in range(k):
        own = points[labels == mode].astype(np.float64)
        np.testing.assert_allclose(own.mean(axis=0), mixture.means[mode], atol=5 * mixture.std / math.sqrt(len(own)))
        np.testing.assert_allclose(own.std(axis=0), mixture.std, rtol=0.1)
    # The modes are at least 15 std apart: every point is nearest to the mode it came from.
    nearest, distance = mixture.nearest_mode(points)
    np.testing.assert_array_equal(nearest, labels)
    np.testing.assert_allclose(distance, np.hypot(*(points - mixture.means[labels]).T), rtol=1e-6)
    assert np.mean(distance < 3 * mixture.std) > 0.98  # a 2-D Gaussian puts 98.9% within 3 std


def test_sampler_functions_match_their_mixtures():
    np.testing.assert_array_equal(ring8(50, radius=3.0, std=0.2, rng=5), ring8_mixture(3.0, 0.2).sample(50, rng=5))
    np.testing.assert_array_equal(grid25(50, std=0.1, rng=5), grid25_mixture(0.1).sample(50, rng=5))


def test_log_prob_is_the_mixture_density():
    mixture = GaussianMixture2D([[0.0, 0.0], [1.0, 2.0], [-1.5, 0.5]], std=0.7, weights=[0.5, 0.3, 0.2])
    points = np.random.default_rng(0).uniform(-3, 3, size=(20, 2))
    density = sum(w * np.exp(-((points - m) ** 2).sum(axis=1) / (2 * 0.7**2)) / (2 * np.pi * 0.7**2)
                  for w, m in zip(mixture.weights, mixture.means))
    np.testing.assert_allclose(mixture.log_prob(points), np.log(density), rtol=1e-12)
    # far from every mode the log-density is finite (no exp underflow to log 0)
    assert np.isfinite(ring8_mixture().log_prob(np.array([[30.0, 30.0]]))).all()


def test_log_prob_integrates_to_one():
    mixture = ring8_mixture(radius=1.0, std=0.1)
    step = 0.01
    axis = np.arange(-2, 2, step) + step / 2
    grid = np.stack(np.meshgrid(axis, axis), axis=-1).reshape(-1, 2)
    assert abs(np.exp(mixture.log_prob(grid)).sum() * step**2 - 1) < 1e-4


def test_two_moons_lie_on_two_half_circles():
    points = two_moons(4000, noise=0.0, rng=1).astype(np.float64)
    upper_centre, lower_centre = np.array([-0.5, -0.25]), np.array([0.5, 0.25])
    on_upper = np.isclose(np.hypot(*(points - upper_centre).T), 1, atol=1e-5) & (points[:, 1] >= -0.25 - 1e-5)
    on_lower = np.isclose(np.hypot(*(points - lower_centre).T), 1, atol=1e-5) & (points[:, 1] <= 0.25 + 1e-5)
    assert np.all(on_upper | on_lower)
    assert abs(on_upper.mean() - 0.5) < 5 * math.sqrt(0.25 / 4000)
    np.testing.assert_allclose(points.mean(axis=0), 0, atol=0.05)  # centred by construction

    noisy = two_moons(4000, noise=0.1, rng=1).astype(np.float64)
    np.testing.assert_allclose((noisy - points).std(axis=0), 0.1, rtol=0.1)  # same seed, same curve points


def test_swiss_roll_radius_is_its_angle():
    points = swiss_roll(3000, noise=0.0, rng=2).astype(np.float64) * 5
    t = np.hypot(*points.T)
    assert t.min() >= 1.5 * np.pi - 1e-4 and t.max() <= 4.5 * np.pi + 1e-4
    angle_gap = np.angle(np.exp(1j * (np.arctan2(points[:, 1], points[:, 0]) - t)))
    np.testing.assert_allclose(angle_gap, 0, atol=1e-4)


@pytest.mark.parametrize("sampler", [ring8, grid25, two_moons, swiss_roll])
def test_seeding(sampler):
    first = sampler(100, rng=11)
    assert first.shape == (100, 2) and first.dtype == np.float32
    np.testing.assert_array_equal(sampler(100, rng=np.random.default_rng(11)), first)
    assert not np.array_equal(sampler(100, rng=12), first)
    sg.manual_seed(4)
    unseeded = sampler(100)
    sg.manual_seed(4)
    np.testing.assert_array_equal(sampler(100), unseeded)  # None follows scratchgen.manual_seed


@pytest.mark.parametrize("kwargs, message", [
    ({"means": [1.0, 2.0], "std": 1.0}, r"shape \(K, 2\)"),
    ({"means": [[0.0, 0.0]], "std": 0.0}, "std must be positive"),
    ({"means": [[0.0, 0.0], [1.0, 1.0]], "std": 1.0, "weights": [0.5, 0.6]}, "summing to 1"),
])
def test_bad_mixtures_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixture2D(**kwargs)

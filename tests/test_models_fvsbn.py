"""The baselines: independent Bernoulli pixels (closed-form fit) and the fully visible sigmoid belief net
(exact normalisation, the logistic-regression formula, the triangular mask, learning)."""

import itertools
import math

import numpy as np
import pytest

import scratchgen as sg
from scratchgen.data import binarize, load_mnist
from scratchgen.models import FVSBN, IndependentBernoulli, bits_per_dim
from conftest import t64


def all_binary_inputs(d):
    return np.array(list(itertools.product([0.0, 1.0], repeat=d)))


def test_independent_bernoulli_fit_is_the_smoothed_frequency_and_log_prob_the_formula(rng):
    x = (rng.random((50, 6)) < [0.1, 0.5, 0.9, 0.0, 1.0, 0.3]).astype(np.float32)
    model = IndependentBernoulli(6).fit(x, smoothing=1.0)
    theta = (x.sum(axis=0) + 1) / (50 + 2)
    np.testing.assert_allclose(1 / (1 + np.exp(-model.logits.numpy())), theta, rtol=1e-5)
    expected = (x * np.log(theta) + (1 - x) * np.log(1 - theta)).sum(axis=1)
    np.testing.assert_allclose(model.log_prob(sg.tensor(x)).numpy(), expected, rtol=1e-5)
    assert abs(np.exp(model.log_prob(sg.tensor(all_binary_inputs(6).astype(np.float32))).numpy()).sum() - 1) < 1e-5
    samples = model.sample(20000).numpy()
    np.testing.assert_allclose(samples.mean(axis=0), theta, atol=0.015)
    with pytest.raises(ValueError, match=r"expected data \(N, 6\), got \(50, 5\)"):
        model.fit(x[:, :5])


def test_independent_bernoulli_on_the_embedded_split_is_about_211_nats():
    train = binarize(load_mnist()[0]).reshape(-1, 784)
    test = sg.tensor(binarize(load_mnist(split="test")[0]).reshape(-1, 784))
    nll = -IndependentBernoulli(784).fit(train).log_prob(test).mean().item()
    assert 205 < nll < 217, nll


@pytest.mark.parametrize("ordering", [None, "random"])
def test_fvsbn_is_logistic_regression_on_the_earlier_pixels(ordering, rng):
    model = FVSBN(8, ordering=ordering, seed=4)
    order = model.ordering.numpy()
    position = np.argsort(order)
    mask = model.layers[0].mask.numpy()
    np.testing.assert_array_equal(mask, position[:, None] > position[None, :])  # strictly before, in the ordering
    if ordering is None:
        np.testing.assert_array_equal(mask, np.tril(np.ones((8, 8)), k=-1))
    x = (rng.random((5, 8)) < 0.5).astype(np.float32)
    w, b = model.weight.numpy(), model.layers[0].bias.numpy()
    logits = b + x @ w.T  # p(x_d = 1 | x_<d) = σ(b_d + Σ_{j before d} W_dj x_j)
    expected = (x * -np.logaddexp(0, -logits) + (1 - x) * -np.logaddexp(0, logits)).sum(axis=1)
    np.testing.assert_allclose(model.log_prob(sg.tensor(x)).numpy(), expected, rtol=1e-5)


def test_fvsbn_sums_to_one_over_all_inputs_and_is_autoregressive():
    model = FVSBN(10, ordering="random", seed=1)
    for p in model.parameters():
        p.data = p.data.astype(np.float64) * 3  # larger weights: a distribution far from uniform
    model.use_masks(0)
    probabilities = np.exp(model.log_prob(sg.tensor(all_binary_inputs(10))).numpy())
    assert abs(probabilities.sum() - 1) < 1e-6 and probabilities.max() > 10 / 1024

    x = t64(np.repeat(np.random.default_rng(0).normal(size=(1, 10)), 10, axis=0))
    model(x).backward(sg.tensor(np.eye(10)))
    position = np.argsort(model.ordering.numpy())
    later = position[None, :] >= position[:, None]
    grad = x.grad_tensor.numpy()
    assert np.all(grad[later] == 0.0) and np.all(grad[~later] != 0.0)


def test_fit_marginals_starts_from_the_independent_model(rng):
    x = (rng.random((40, 7)) < 0.3).astype(np.float32)
    model = FVSBN(7).fit_marginals(x)
    independent = IndependentBernoulli(7).fit(x)
    expected = independent.log_prob(sg.tensor(x)).numpy()
    np.testing.assert_allclose(model.log_prob(sg.tensor(x)).numpy(), expected, rtol=1e-6)


def test_fvsbn_learns_digits_better_than_independent_pixels():
    """100 steps on 1,000 digits from the independent start: held-out NLL falls ≈ 85 nats below it."""
    x = binarize(load_mnist()[0][:1000]).reshape(-1, 784)
    held_out = sg.tensor(binarize(load_mnist(split="test")[0][:500]).reshape(-1, 784))
    model = FVSBN(784).fit_marginals(x)
    baseline = -model.log_prob(held_out).mean().item()
    opt = sg.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(5):
        for (batch,) in sg.data.DataLoader(x, batch_size=50, shuffle=True):
            opt.zero_grad()
            (-model.log_prob(batch).mean()).backward()
            opt.step()
    with sg.no_grad():
        nll = -model.log_prob(held_out).mean().item()
    assert nll < baseline - 50, (nll, baseline)


def test_bits_per_dim_divides_by_dimensions_and_ln2():
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    assert bits_per_dim(100.0, 784) == pytest.approx(100 / (784 * math.log(2)))

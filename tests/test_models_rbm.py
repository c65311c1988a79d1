"""The restricted Boltzmann machine: the exact log Z and free energy against brute force over every state,
the conditionals against Bayes' rule, CD-1's gradient against statistics computed by hand (and against
autograd of the free energies), PCD's chains, Gibbs sampling's stationary law, learning, and the demo."""

import itertools
import os

import numpy as np
import pytest

import scratchgen as sg
from scratchgen.data import binarize, load_mnist
from scratchgen.models import RBM, ContrastiveDivergence, IndependentBernoulli
from conftest import host, last_json_line, load_demo, run_then_resume

V, H = 4, 3


def all_states(d):
    return np.array(list(itertools.product([0.0, 1.0], repeat=d)))


def sigmoid(a):
    return 1 / (1 + np.exp(-a))


@pytest.fixture
def tiny():
    """A 4-visible, 3-hidden RBM in float64 with weights and biases large enough to be far from uniform."""
    model = RBM(V, H)
    rng = np.random.default_rng(7)
    model.weight.data = sg.backend.asarray(rng.normal(0, 1.5, (H, V)))
    model.visible_bias.data = sg.backend.asarray(rng.normal(0, 1, V))
    model.hidden_bias.data = sg.backend.asarray(rng.normal(0, 1, H))
    return model


def energies(model):
    """E(v, h) by the formula -hᵀWv - bᵀv - cᵀh for every pair of states: (2^V, 2^H)."""
    W, b, c = model.weight.numpy(), model.visible_bias.numpy(), model.hidden_bias.numpy()
    v, h = all_states(V), all_states(H)
    return -(v @ W.T @ h.T) - (v @ b)[:, None] - (h @ c)[None, :]


def test_energy_is_the_formula(tiny):
    v, h = all_states(V), all_states(H)
    pairs_v, pairs_h = np.repeat(v, len(h), axis=0), np.tile(h, (len(v), 1))
    np.testing.assert_allclose(tiny.energy(pairs_v, pairs_h).numpy(), energies(tiny).ravel(), rtol=1e-12)


def test_log_partition_equals_brute_force_over_all_visible_and_hidden_states(tiny):
    log_z = np.log(np.exp(-energies(tiny)).sum())  # Σ_v Σ_h exp(-E(v, h)), all 2^(4+3) terms
    for batch_size in (3, 8, 1024):  # batches of 3 leave a short last batch (8 = 3 + 3 + 2)
        assert abs(tiny.log_partition(batch_size=batch_size) - log_z) < 1e-10
    probabilities = np.exp(tiny.log_prob(all_states(V)).numpy())
    assert abs(probabilities.sum() - 1) < 1e-10 and probabilities.max() > 2 / 2 ** V  # normalised, not uniform


def test_free_energy_is_minus_log_sum_over_h_of_exp_minus_energy(tiny):
    by_sum = -np.log(np.exp(-energies(tiny)).sum(axis=1))
    W, b, c = tiny.weight.numpy(), tiny.visible_bias.numpy(), tiny.hidden_bias.numpy()
    v = all_states(V)
    by_formula = -v @ b - np.logaddexp(0, v @ W.T + c).sum(axis=1)  # F(v) = -bᵀv - Σ_j softplus(c_j + W_j·v)
    np.testing.assert_allclose(tiny.free_energy(v).numpy(), by_sum, rtol=1e-12)
    np.testing.assert_allclose(by_formula, by_sum, rtol=1e-12)


def test_conditionals_are_bayes_rule_on_the_joint(tiny):
    joint = np.exp(-energies(tiny))  # unnormalised p(v, h): (2^V, 2^H)
    v, h = all_states(V), all_states(H)
    # p(h_j = 1 | v) = Σ_{h: h_j = 1} p(v, h) / Σ_h p(v, h), and the same the other way
    p_h, p_v = host(tiny.hidden_probabilities(v)), host(tiny.visible_probabilities(h))
    np.testing.assert_allclose(p_h, joint @ h / joint.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(p_v, joint.T @ v / joint.sum(axis=0)[:, None], rtol=1e-12)
    W, b, c = tiny.weight.numpy(), tiny.visible_bias.numpy(), tiny.hidden_bias.numpy()
    np.testing.assert_allclose(p_h, sigmoid(c + v @ W.T), rtol=1e-12)
    np.testing.assert_allclose(p_v, sigmoid(b + h @ W), rtol=1e-12)


def test_cd1_gradient_is_negative_minus_positive_statistics_by_hand(tiny):
    v = all_states(V)[[3, 5, 9, 14, 15]]
    sg.manual_seed(11)
    cd = ContrastiveDivergence(tiny, k=1)
    negative = cd.set_gradients(sg.tensor(v))

    sg.manual_seed(11)  # the same draws, by hand: h ~ p(h | v), then v' ~ p(v' | h)
    W, b, c = tiny.weight.numpy(), tiny.visible_bias.numpy(), tiny.hidden_bias.numpy()
    h = (host(sg.backend.rng().random((5, H))) < sigmoid(c + v @ W.T)).astype(float)
    v_model = (host(sg.backend.rng().random((5, V))) < sigmoid(b + h @ W)).astype(float)
    np.testing.assert_array_equal(host(negative), v_model)
    p_data, p_model = sigmoid(c + v @ W.T), sigmoid(c + v_model @ W.T)
    expected = {  # d(mean NLL)/dθ ≈ <·>_model - <·>_data
        "weight": (p_model.T @ v_model - p_data.T @ v) / 5,
        "visible_bias": v_model.mean(axis=0) - v.mean(axis=0),
        "hidden_bias": p_model.mean(axis=0) - p_data.mean(axis=0),
    }
    for name, grad in expected.items():
        np.testing.assert_allclose(host(getattr(tiny, name).grad), grad, rtol=1e-12, err_msg=name)

    # The same numbers are the autograd gradient of mean F(data) - mean F(model), the samples held fixed.
    stats = {name: host(getattr(tiny, name).grad).copy() for name in expected}
    for p in tiny.parameters():
        p.grad = None
    (tiny.free_energy(v).mean() - tiny.free_energy(v_model).mean()).backward()
    for name, grad in stats.items():
        np.testing.assert_allclose(host(getattr(tiny, name).grad), grad, rtol=1e-10, atol=1e-14, err_msg=name)


def test_set_gradients_adds_to_grad_as_backward_would(tiny):
    v = all_states(V)[[1, 2]]
    cd = ContrastiveDivergence(tiny, k=2)
    sg.manual_seed(3)
    cd.set_gradients(v)
    once = host(tiny.weight.grad).copy()
    sg.manual_seed(3)
    cd.set_gradients(v)
    np.testing.assert_allclose(host(tiny.weight.grad), 2 * once)


def test_pcd_chains_persist_across_updates_and_through_state_dict(tiny):
    data = all_states(V)[[1, 6, 11]]
    cd = ContrastiveDivergence(tiny, k=3, persistent=True)
    first = cd.set_gradients(data).copy()
    assert first.shape == (3, V) and cd.chains is not None
    sg.manual_seed(5)
    second = cd.set_gradients(data)
    sg.manual_seed(5)
    np.testing.assert_array_equal(host(second), host(tiny.gibbs(first, 3)))  # the chains went on from where they were

    resumed = ContrastiveDivergence(tiny, k=3, persistent=True)
    resumed.load_state_dict(cd.state_dict())
    np.testing.assert_array_equal(host(resumed.chains), host(second))
    with pytest.raises(ValueError, match="CD, which keeps no chains"):
        ContrastiveDivergence(tiny, k=1).load_state_dict(cd.state_dict())
    assert ContrastiveDivergence(tiny).state_dict() == {}


def test_gibbs_sampling_reaches_the_exact_distribution(tiny):
    samples = host(tiny.sample(20_000, steps=30))
    codes = samples @ (2 ** np.arange(V - 1, -1, -1))  # the index of each state in all_states(V)
    empirical = np.bincount(codes.astype(int), minlength=2 ** V) / len(samples)
    exact = np.exp(tiny.log_prob(all_states(V)).numpy())
    assert 0.5 * np.abs(empirical - exact).sum() < 0.02  # total variation distance


def test_log_partition_refuses_more_than_20_hidden_units():
    with pytest.raises(ValueError, match="2\\^21 terms"):
        RBM(5, 21).log_partition()


def test_pcd_beats_independent_pixels_on_digits_within_seconds():
    train = binarize(load_mnist()[0]).reshape(-1, 784)[:1000]
    test = binarize(load_mnist(split="test")[0]).reshape(-1, 784)[:500]
    baseline = -IndependentBernoulli(784).fit(train).log_prob(sg.tensor(test)).mean().item()
    model = RBM(784, 10).fit_marginals(train)  # starts as the independent model: W ≈ 0, b the log-odds
    cd = ContrastiveDivergence(model, k=1, persistent=True)
    opt = sg.optim.SGD(model.parameters(), lr=0.05)
    loader = sg.data.DataLoader(train, batch_size=20, shuffle=True, seed=0)
    epochs = 20  # about a second
    for epoch in range(epochs):
        opt.lr = 0.05 * (1 - epoch / epochs)
        for (x,) in loader:
            opt.zero_grad()
            cd.set_gradients(x)
            opt.step()
    nll = -model.log_prob(test).mean().item()
    # about 211 nats for independent pixels and 185 for this RBM (seeds 0 and 1); 195 leaves room
    assert baseline > 205 and nll < 195, (nll, baseline)


def test_demo_writes_pictures_and_metrics_and_resumes(tmp_path, capsys):
    demo = load_demo("rbm")
    out = str(tmp_path / "rbm")
    argv = ["--limit", "100", "--hidden", "5", "--gibbs-steps", "20", "--samples", "4", "--out", out, "--quiet"]
    final, _ = run_then_resume(demo, argv, capsys)
    assert final["test_nll_nats"] < final["independent_bernoulli_test_nll_nats"] + 20
    assert final["test_nearest_train_distance_median"] > 0 and "nearest_train_distance_median" in final
    for name in ("filters", "gibbs_chains", "samples", "learning_curve", "nearest_training"):
        assert os.path.getsize(os.path.join(out, f"{name}.png")) > 0, name

    cd_out = str(tmp_path / "cd")
    demo.main(["--method", "cd", "--k", "2", "--visible-bias", "zero", "--lr-decay", "none", "--limit", "50",
               "--hidden", "3", "--epochs", "1", "--gibbs-steps", "5", "--out", cd_out, "--quiet"])
    assert np.isfinite(last_json_line(capsys)["test_nll_nats"])

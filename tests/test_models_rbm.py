"""The restricted Boltzmann machine: the exact log Z and free energy against brute force over every state,
the conditionals against Bayes' rule, CD-1's gradient against statistics computed by hand (and against
autograd of the free energies), PCD's chains, Gibbs sampling's stationary law, learning, AIS's log Z
against the exact one (and its one-step case against importance sampling by hand), and the demo."""

import itertools
import json
import os

import numpy as np
import pytest

import scratchgen as sg
from scratchgen.data import binarize, load_mnist
from scratchgen.models import RBM, ContrastiveDivergence, IndependentBernoulli
from scratchgen.models.rbm import ais_log_partition, ais_schedule
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


def random_rbm(visible, hidden, std=1.0, seed=0):
    """An RBM in float64 with N(0, std²) weights and N(0, 1) biases: far from its factorised base."""
    model = RBM(visible, hidden)
    rng = np.random.default_rng(seed)
    model.weight.data = sg.backend.asarray(rng.normal(0, std, (hidden, visible)))
    model.visible_bias.data = sg.backend.asarray(rng.normal(0, 1, visible))
    model.hidden_bias.data = sg.backend.asarray(rng.normal(0, 1, hidden))
    return model


def test_ais_estimates_the_exact_log_partition():
    model = random_rbm(12, 10)
    exact = model.log_partition()  # 31.76
    estimate = ais_log_partition(model, betas=ais_schedule(1000), runs=500, seed=0)  # about 0.15 s
    # over seeds 0-29 the error had mean -0.001, sd 0.014, largest 0.038; the interval held the exact value 29 times
    assert abs(estimate.log_z - exact) < 0.05, (estimate.log_z, exact)
    assert estimate.log_z_lower < exact < estimate.log_z_upper
    assert estimate.log_z_upper - estimate.log_z_lower < 0.2 and estimate.effective_runs > 250


def test_ais_with_one_step_is_importance_sampling_from_the_base():
    model = random_rbm(12, 10)
    runs = 2000
    plain = ais_log_partition(model, betas=[0, 1], runs=runs, seed=3)

    sg.manual_seed(3)  # the same draws, by hand: v ~ p_A = Π σ(b_A), here b_A = the model's b
    W, b, c = model.weight.numpy(), model.visible_bias.numpy(), model.hidden_bias.numpy()
    v = (host(sg.backend.rng().random((runs, 12))) < sigmoid(b)).astype(float)
    log_p_model = v @ b + np.logaddexp(0, v @ W.T + c).sum(axis=1)  # -F_B(v)
    log_p_base = v @ b + 10 * np.log(2)  # -F_A(v): zero weights, zero hidden biases
    np.testing.assert_allclose(plain.log_weights, log_p_model - log_p_base, rtol=1e-12)
    log_z_base = np.logaddexp(0, b).sum() + 10 * np.log(2)
    mean_weight = np.exp(log_p_model - log_p_base).mean()
    assert abs(plain.log_z - (log_z_base + np.log(mean_weight))) < 1e-10

    # Unbiased but far noisier than the annealed estimate: its ±3σ interval is several times wider.
    annealed = ais_log_partition(model, betas=ais_schedule(1000), runs=500, seed=3)
    assert plain.log_z_upper - plain.log_z_lower > 4 * (annealed.log_z_upper - annealed.log_z_lower)


def test_ais_base_model_and_its_log_partition():
    data = all_states(V)[[1, 3, 3, 6, 7, 12, 15]]
    model = random_rbm(V, H)
    estimate = ais_log_partition(model, data, betas=ais_schedule(30), runs=10, seed=0)
    b_a = estimate.base_visible_bias
    np.testing.assert_allclose(b_a, IndependentBernoulli(V).fit(data).logits.numpy(), rtol=1e-6)  # the data's log-odds
    base = RBM(V, H)  # zero weights and hidden biases, visible biases b_A: its log Z by the exact sum
    base.weight.data, base.hidden_bias.data = sg.backend.asarray(np.zeros((H, V))), sg.backend.asarray(np.zeros(H))
    base.visible_bias.data = sg.backend.asarray(b_a)
    assert abs(estimate.log_z_base - base.log_partition()) < 1e-10
    assert abs(estimate.log_z_base - (np.logaddexp(0, b_a).sum() + H * np.log(2))) < 1e-10

    # Annealing from the base to itself: every weight is exactly 1, so log Ẑ = log Z_A and the interval closes.
    same = ais_log_partition(base, data, betas=ais_schedule(30), runs=10, seed=0)
    np.testing.assert_allclose(same.log_weights, 0, atol=1e-12)
    assert same.log_z_lower == pytest.approx(base.log_partition(), abs=1e-10) == same.log_z_upper


def test_ais_is_reproducible_by_seed_and_leaves_the_callers_stream_alone():
    model = random_rbm(6, 4)
    sg.manual_seed(1)
    first = ais_log_partition(model, betas=ais_schedule(20), runs=8, seed=5)
    after = host(sg.backend.rng().random(3))
    sg.manual_seed(1)
    np.testing.assert_array_equal(after, host(sg.backend.rng().random(3)))  # as if AIS had not run
    again = ais_log_partition(model, betas=ais_schedule(20), runs=8, seed=5)
    other = ais_log_partition(model, betas=ais_schedule(20), runs=8, seed=6)
    np.testing.assert_array_equal(first.log_weights, again.log_weights)
    assert first.log_z == again.log_z and not np.array_equal(first.log_weights, other.log_weights)


def test_ais_schedule_follows_the_paper_and_bad_input_is_refused():
    betas = ais_schedule(15_000)
    assert len(betas) == 15_001 and betas[0] == 0 and betas[-1] == 1 and (np.diff(betas) > 0).all()
    assert ((betas < 0.5).sum(), ((betas >= 0.5) & (betas < 0.9)).sum()) == (1000, 4000)  # and 10,001 in [0.9, 1]
    model = random_rbm(V, H)
    with pytest.raises(ValueError, match="ais_log_partition: betas must be a sequence rising from 0 to 1"):
        ais_log_partition(model, betas=[0, 0.6, 0.5, 1])
    with pytest.raises(ValueError, match="ais_log_partition: betas"):
        ais_log_partition(model, betas=[0.1, 1])
    with pytest.raises(ValueError, match=f"ais_log_partition: data must be \\(N, {V}\\)"):
        ais_log_partition(model, np.zeros((3, V + 1)))
    with pytest.raises(ValueError, match="ais_log_partition: runs must be a positive int"):
        ais_log_partition(model, runs=0)
    with pytest.raises(TypeError, match="ais_log_partition: model must be an RBM"):
        ais_log_partition(IndependentBernoulli(V))
    with pytest.raises(ValueError, match="ais_schedule: steps must be at least 3"):
        ais_schedule(2)


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
    argv = ["--limit", "100", "--hidden", "5", "--gibbs-steps", "20", "--samples", "4", "--final-ais-steps", "300",
            "--out", out, "--quiet"]
    final, report = run_then_resume(demo, argv, capsys)
    assert final["test_nll_nats"] < final["independent_bernoulli_test_nll_nats"] + 20
    assert report["args"]["log_z"] == "exact" and abs(final["ais_minus_exact_log_partition"]) < 0.5  # AIS's check
    assert final["ais_log_partition_lower"] <= final["ais_log_partition"] <= final["ais_log_partition_upper"]
    assert final["test_nearest_train_distance_median"] > 0 and "nearest_train_distance_median" in final
    for name in ("filters", "gibbs_chains", "samples", "learning_curve", "nearest_training"):
        assert os.path.getsize(os.path.join(out, f"{name}.png")) > 0, name

    cd_out = str(tmp_path / "cd")
    demo.main(["--method", "cd", "--k", "2", "--visible-bias", "zero", "--lr-decay", "none", "--limit", "50",
               "--hidden", "3", "--epochs", "1", "--gibbs-steps", "5", "--final-ais-steps", "100", "--out", cd_out,
               "--quiet"])
    assert np.isfinite(last_json_line(capsys)["test_nll_nats"])


def test_demo_estimates_log_z_by_ais_above_20_hidden_units(tmp_path, capsys):
    demo = load_demo("rbm")
    out = str(tmp_path / "ais")
    demo.main(["--hidden", "21", "--limit", "50", "--epochs", "1", "--ais-steps", "20", "--final-ais-steps", "200",
               "--ais-runs", "20", "--gibbs-steps", "5", "--samples", "4", "--out", out, "--quiet"])
    final = last_json_line(capsys)
    with open(os.path.join(out, "metrics.json")) as file:
        report = json.load(file)
    assert report["args"]["log_z"] == "ais" and "log_partition_upper" in report["history"][0]
    assert final["test_nll_nats_lower"] <= final["test_nll_nats"] <= final["test_nll_nats_upper"]
    assert final["log_partition"] != report["history"][0]["log_partition"]  # the final estimate replaced the quick one
    with pytest.raises(SystemExit):
        demo.parse_args(["--hidden", "21", "--log-z", "exact"])

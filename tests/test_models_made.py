"""MADE: exact normalisation over all 2^D inputs, the autoregressive property (several orderings and mask
draws), the degree rule, the mask ensemble, exact ancestral sampling, learning, and the demo end to end."""

import itertools
import json
import math

import numpy as np
import pytest

import scratchgen as sg
from scratchgen.data import binarize, load_mnist
from scratchgen.models import MADE, GaussianMixtureMADE, IndependentBernoulli
from scratchgen.models.made import made_degrees, made_masks
from conftest import last_json_line, load_demo, t64



def float64(model):
    """The model's parameters as float64 (its masks follow the weights' dtype on the next use_masks)."""
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    model.use_masks(int(model.mask_index.data))
    return model


def all_binary_inputs(d):
    return np.array(list(itertools.product([0.0, 1.0], repeat=d)))


CONFIGS = [  # (hidden sizes, ordering, num_masks, order_agnostic)
    ((16,), None, 1, False),
    ((12, 12), "random", 1, False),
    ((20, 10, 15), None, 3, True),
]


@pytest.mark.parametrize("hidden, ordering, num_masks, order_agnostic", CONFIGS)
def test_probabilities_of_all_binary_inputs_sum_to_one(hidden, ordering, num_masks, order_agnostic):
    model = float64(MADE(9, hidden, ordering=ordering, num_masks=num_masks, order_agnostic=order_agnostic, seed=3))
    x = sg.tensor(all_binary_inputs(9))
    for index in range(num_masks):
        model.use_masks(index)
        assert abs(np.exp(model.log_prob(x).numpy()).sum() - 1) < 1e-6
    ensemble = np.exp(model.log_prob(x, masks=num_masks).numpy())
    assert abs(ensemble.sum() - 1) < 1e-6


def jacobian(model, x):
    """J[d, j] = Σ_params |d output_d / d input_j| at one input x (D,), by one backward over D copies."""
    d = model.in_features
    inputs = t64(np.repeat(x[None], d, axis=0))
    out = model(inputs)
    seed = np.eye(d) if out.ndim == 2 else np.repeat(np.eye(d)[:, :, None], out.shape[2], axis=2)
    out.backward(sg.tensor(seed))
    return np.abs(inputs.grad_tensor.numpy())


def connected(model):
    """C[d, j]: some path of unmasked weights leads from input j to (the first parameter of) output d."""
    paths = np.eye(model.in_features)
    for layer in model.layers:
        paths = layer.mask.numpy() @ paths
    return paths[:: model.outputs_per_dim] > 0


@pytest.mark.parametrize("hidden, ordering, num_masks, order_agnostic", CONFIGS)
def test_output_depends_only_on_inputs_earlier_in_the_ordering(hidden, ordering, num_masks, order_agnostic):
    d = 10
    model = float64(MADE(d, hidden, ordering=ordering, num_masks=num_masks, order_agnostic=order_agnostic, seed=1))
    inputs = np.random.default_rng(0).normal(scale=5, size=(8, d))  # large, so that biases rarely keep a ReLU off
    orderings = set()
    for index in range(num_masks):
        model.use_masks(index)
        position = np.argsort(model.ordering.numpy())  # position[v] = where variable v comes
        orderings.add(tuple(model.ordering.numpy()))
        earlier = position[None, :] < position[:, None]  # earlier[i, j]: j comes before i
        grads = sum(jacobian(model, x) for x in inputs)  # at several inputs, so that few ReLUs stay off
        assert np.all(grads[~earlier] == 0.0)  # exactly zero: at or after i in the ordering
        paths = connected(model)
        assert not np.any(paths & ~earlier)
        assert np.count_nonzero(grads) > 0.5 * paths.sum()  # where paths exist, the past is seen
    assert len(orderings) == (num_masks if order_agnostic else 1)


def test_gaussian_mixture_outputs_are_autoregressive_too():
    model = float64(GaussianMixtureMADE(5, components=3, hidden_sizes=(32,), ordering="random", seed=2))
    grads = jacobian(model, np.random.default_rng(1).normal(size=5))
    position = np.argsort(model.ordering.numpy())
    earlier = position[None, :] < position[:, None]
    assert np.all(grads[~earlier] == 0.0)
    assert np.count_nonzero(grads[earlier]) > 0.5 * earlier.sum()


@pytest.mark.parametrize("hidden", [(7,), (50, 3, 40), (4, 4, 4, 4)])
def test_every_hidden_unit_reaches_an_input_and_an_output(hidden):
    """The degree rule: m_l(k) ≥ the smallest degree below (an input) and ≤ D-1 (an output)."""
    rng = np.random.default_rng(0)
    for _ in range(5):
        degrees = made_degrees(rng.permutation(6), hidden, rng)
        masks = made_masks(degrees)
        for below, above, mask in zip(degrees[:-1], degrees[1:], masks[:-1]):
            assert above.min() >= below.min() and above.max() <= 5
            np.testing.assert_array_equal(mask, above[:, None] >= below[None, :])
        reaches_input = np.ones(6)
        for mask in masks[:-1]:
            reaches_input = mask @ reaches_input > 0
            assert reaches_input.all()
        reaches_output = np.ones(6)
        for mask in reversed(masks[1:]):
            reaches_output = mask.T @ reaches_output > 0
            assert reaches_output.all()


def test_masks_are_reproducible_and_cycle():
    model = MADE(8, (16,), num_masks=3, order_agnostic=True, seed=5)
    first = [layer.mask.numpy() for layer in model.layers]
    model.next_masks()
    assert int(model.mask_index.data) == 1
    assert not np.array_equal(model.layers[0].mask.numpy(), first[0])
    model.next_masks()
    model.next_masks()
    assert int(model.mask_index.data) == 0
    for layer, mask in zip(model.layers, first):
        np.testing.assert_array_equal(layer.mask.numpy(), mask)
    with pytest.raises(ValueError, match="index 3 outside 0..2"):
        model.use_masks(3)
    with pytest.raises(ValueError, match="permutation of 0..7"):
        MADE(8, (16,), ordering=[0, 1, 2])


def test_ensemble_is_the_log_mean_exp_of_the_mask_sets_and_restores_the_mask():
    model = MADE(6, (20,), num_masks=4, order_agnostic=True, seed=0)
    model.use_masks(2)
    x = sg.tensor((np.random.default_rng(0).random((5, 6)) < 0.5).astype(np.float32))
    singles = []
    for index in range(4):
        model.use_masks(index)
        singles.append(model.log_prob(x).numpy().astype(np.float64))
    model.use_masks(2)
    expected = np.log(np.mean(np.exp(singles), axis=0))  # probabilities averaged, not logits
    np.testing.assert_allclose(model.log_prob(x, masks=4).numpy(), expected, rtol=1e-5)
    assert int(model.mask_index.data) == 2


def test_state_dict_restores_the_mask_set_in_use():
    model = MADE(6, (20,), num_masks=4, order_agnostic=True, seed=7)
    model.use_masks(3)
    copy = MADE(6, (20,), num_masks=4, order_agnostic=True, seed=7)
    copy.load_state_dict(model.state_dict())
    x = sg.rand(3, 6)
    np.testing.assert_array_equal(copy.ordering.numpy(), model.ordering.numpy())
    np.testing.assert_array_equal(copy(x).numpy(), model(x).numpy())


def test_ancestral_samples_follow_the_model_distribution():
    model = MADE(3, (8,), ordering=[2, 0, 1], seed=0)
    for p in model.parameters():
        p.data = p.data * 4  # sharper conditionals, so that a wrong sampler shows
    inputs = all_binary_inputs(3)
    probabilities = np.exp(model.log_prob(sg.tensor(inputs.astype(np.float32))).numpy())
    samples = model.sample(20000).numpy()
    codes = (samples @ np.array([4, 2, 1])).astype(int)  # row index in all_binary_inputs
    frequencies = np.bincount(codes, minlength=8) / len(samples)
    np.testing.assert_allclose(frequencies, probabilities, atol=4 * np.sqrt(0.25 / 20000))


def test_completion_keeps_the_given_variables():
    model = MADE(10, (16,), ordering="random", seed=0)
    given = (np.random.default_rng(0).random((4, 10)) < 0.5).astype(np.float32)
    completed = model.sample(x=given, start=6).numpy()
    kept = model.ordering.numpy()[:6]
    np.testing.assert_array_equal(completed[:, kept], given[:, kept])
    assert set(np.unique(completed)) <= {0.0, 1.0}


def test_made_learns_binarised_digits_better_than_independent_pixels():
    """200 steps on 1,000 digits: held-out NLL ≈ 175 nats, against ≈ 211 for independent pixels."""
    x = binarize(load_mnist()[0][:1000]).reshape(-1, 784)
    held_out = sg.tensor(binarize(load_mnist(split="test")[0][:500]).reshape(-1, 784))
    baseline = -IndependentBernoulli(784).fit(x).log_prob(held_out).mean().item()
    model = MADE(784, (64,))
    opt = sg.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(10):
        for (batch,) in sg.data.DataLoader(x, batch_size=50, shuffle=True):
            opt.zero_grad()
            loss = -model.log_prob(batch).mean()
            loss.backward()
            opt.step()
    with sg.no_grad():
        nll = -model.log_prob(held_out).mean().item()
    assert nll < baseline - 25, (nll, baseline)


def test_gaussian_mixture_made_density_integrates_to_one_and_learns_two_clusters():
    rng = np.random.default_rng(0)
    centres = np.array([[-1.0, -1.0], [1.0, 1.0]])
    x = (centres[rng.integers(0, 2, 2000)] + 0.2 * rng.normal(size=(2000, 2))).astype(np.float32)
    true_ll = np.mean(np.log(0.5 * np.exp(-((x[:, None] - centres) ** 2).sum(-1) / 0.08).sum(1) / (2 * np.pi * 0.04)))
    model = GaussianMixtureMADE(2, components=4, hidden_sizes=(32,))
    opt = sg.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(6):
        for (batch,) in sg.data.DataLoader(x, batch_size=100, shuffle=True):
            opt.zero_grad()
            (-model.log_prob(batch).mean()).backward()
            opt.step()
    with sg.no_grad():
        ll = model.log_prob(sg.tensor(x)).mean().item()
        grid = np.linspace(-4, 4, 321)
        points = np.stack(np.meshgrid(grid, grid), axis=-1).reshape(-1, 2).astype(np.float32)
        mass = np.exp(model.log_prob(sg.tensor(points)).numpy()).sum() * (grid[1] - grid[0]) ** 2
        near = np.min(np.linalg.norm(points[:, None] - centres, axis=-1), axis=1) < 0.6
        mass_near = np.exp(model.log_prob(sg.tensor(points)).numpy())[near].sum() * (grid[1] - grid[0]) ** 2
    assert ll > true_ll - 0.15, (ll, true_ll)
    assert abs(mass - 1) < 1e-3
    samples = model.sample(4000).numpy()  # ancestral samples land near the centres as often as the density says
    share_near = np.mean(np.min(np.linalg.norm(samples[:, None] - centres, axis=-1), axis=1) < 0.6)
    assert abs(share_near - mass_near) < 4 * np.sqrt(mass_near * (1 - mass_near) / 4000) + 2e-3, (share_near, mass_near)


def run_demo(args, capsys):
    report = load_demo("made").main(args)
    return report, last_json_line(capsys)


def test_demo_on_images_writes_pictures_metrics_and_baselines(tmp_path, capsys):
    report, printed = run_demo(["--epochs", "2", "--limit", "300", "--hidden", "32", "--samples", "4",
                                "--fvsbn-epochs", "1", "--num-masks", "2", "--out", str(tmp_path), "--quiet"], capsys)
    assert printed == report["final"]
    for name in ("samples.png", "completions.png", "nearest_training.png", "learning_curve.png", "metrics.json",
                 "checkpoint.npz"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert printed["nearest_train_distance_median"] > 0 and printed["test_nearest_train_distance_median"] > 0
    saved = json.loads((tmp_path / "metrics.json").read_text())
    epoch = saved["history"][-1]
    assert math.isclose(epoch["bits_per_dim"], epoch["test_nll_nats"] / (784 * math.log(2)), rel_tol=1e-9)
    assert printed["independent_bernoulli_test_nll_nats"] > 100 and printed["fvsbn_test_nll_nats"] > 0
    # the train NLLs: exact -log p(x) of the training digits, the model's at the end as after each epoch
    assert printed["final_train_nll_nats"] == epoch["exact_train_nll_nats"]
    assert all(np.isfinite(r["exact_train_nll_nats"]) for r in saved["history"])
    train = binarize(load_mnist("embedded", "train")[0][:300]).reshape(300, -1).astype(np.float64)
    theta = (train.sum(axis=0) + 1) / (len(train) + 2)  # the baseline's add-one estimate, scored by hand
    by_hand = -np.mean((train * np.log(theta) + (1 - train) * np.log(1 - theta)).sum(axis=1))
    assert math.isclose(printed["independent_bernoulli_train_nll_nats"], by_hand, rel_tol=1e-4)
    assert printed["fvsbn_train_nll_nats"] < printed["independent_bernoulli_train_nll_nats"]  # it starts there


def test_demo_on_a_toy_writes_the_density_picture(tmp_path, capsys):
    report, printed = run_demo(["--dataset", "ring8", "--epochs", "1", "--limit", "500", "--hidden", "16",
                                "--out", str(tmp_path), "--quiet"], capsys)
    for name in ("density.png", "samples.png", "marginals.png", "learning_curve.png", "metrics.json"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert np.isfinite(printed["test_log_likelihood"]) and printed["true_test_log_likelihood"] > 3


def straight_and_resumed(common, tmp_path, capsys):
    """The demo's reports for two epochs straight (in tmp_path/a) and for one epoch resumed for a second (in b)."""
    straight, _ = run_demo(common + ["--epochs", "2", "--out", str(tmp_path / "a")], capsys)
    run_demo(common + ["--epochs", "1", "--out", str(tmp_path / "b")], capsys)
    resumed, _ = run_demo(common + ["--epochs", "2", "--out", str(tmp_path / "b"), "--resume"], capsys)
    return straight, resumed


def test_demo_resumes_exactly_with_the_mask_cycle(tmp_path, capsys):
    common = ["--limit", "200", "--hidden", "16", "--num-masks", "3", "--fvsbn-epochs", "0", "--samples", "4",
              "--quiet"]
    straight, resumed = straight_and_resumed(common, tmp_path, capsys)
    assert resumed["history"] == straight["history"]


@pytest.mark.numpy_only("resuming exactly restores the saved random state, which only NumPy's generator can save")
def test_demo_with_dynamic_binarisation_resumes_exactly_and_is_refused_on_toys(tmp_path, capsys):
    common = ["--binarize", "dynamic", "--limit", "200", "--hidden", "16", "--fvsbn-epochs", "1", "--samples", "4",
              "--quiet"]
    straight, resumed = straight_and_resumed(common, tmp_path, capsys)
    assert resumed["history"] == straight["history"]  # the draws come from the run's seeded, checkpointed stream
    assert straight["args"]["binarize"] == "dynamic"
    final = straight["final"]  # the train NLLs score one fixed binary draw of the training digits
    assert all(np.isfinite(final[key]) for key in ("final_train_nll_nats", "independent_bernoulli_train_nll_nats",
                                                   "fvsbn_train_nll_nats"))
    threshold, _ = run_demo(common[2:] + ["--epochs", "2", "--out", str(tmp_path / "c")], capsys)
    assert threshold["history"][0]["train_nll_nats"] != straight["history"][0]["train_nll_nats"]
    with pytest.raises(SystemExit):
        load_demo("made").parse_args(["--dataset", "ring8", "--binarize", "dynamic"])
    assert "--binarize is for the image datasets" in capsys.readouterr().err

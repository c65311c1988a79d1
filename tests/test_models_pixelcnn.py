"""PixelCNN: exact normalisation over all 3×3 binary images, the autoregressive property for every pixel
(residual connections included), exact band-wise sampling, learning, and the demo end to end."""

import itertools
import json
import math

import numpy as np
import pytest

import scratchgen as sg
from scratchgen.data import binarize, load_mnist
from scratchgen.models import IndependentBernoulli, PixelCNN
from conftest import last_json_line, load_demo, t64



def float64(model):
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    for _, buffer in model.named_buffers():
        buffer.data = buffer.data.astype(np.float64)
    return model


def all_binary_images(h, w):
    return np.array(list(itertools.product([0.0, 1.0], repeat=h * w))).reshape(-1, 1, h, w)


def test_probabilities_of_all_3x3_binary_images_sum_to_one():
    model = float64(PixelCNN(channels=8, layers=3))
    probabilities = np.exp(model.log_prob(sg.tensor(all_binary_images(3, 3))).numpy())
    assert abs(probabilities.sum() - 1) < 1e-6
    assert probabilities.max() > 2 / 512  # not merely uniform


def raster_jacobian(model, h, w, inputs):
    """|d logit_i / d pixel_j| summed over several input images, for every pixel pair in raster order."""
    total = np.zeros((h * w, h * w))
    for image in inputs:
        x = t64(np.repeat(image[None, None], h * w, axis=0))
        model(x).backward(sg.tensor(np.eye(h * w).reshape(h * w, 1, h, w)))  # copy i asks for logit i's gradient
        total += np.abs(x.grad_tensor.numpy().reshape(h * w, h * w))
    return total


def test_every_logit_depends_only_on_earlier_pixels():
    h = w = 8
    model = float64(PixelCNN(channels=6, layers=4, first_kernel=5))
    inputs = np.random.default_rng(0).normal(scale=3, size=(3, h, w))
    jacobian = raster_jacobian(model, h, w, inputs)
    later = np.triu(np.ones((h * w, h * w)), k=0) == 1  # j ≥ i: the pixel itself and those after it
    assert np.all(jacobian[later] == 0.0)  # exactly zero, through every layer and residual path
    for i in range(h * w):
        r, c = divmod(i, w)
        if c > 0:
            assert jacobian[i, i - 1] != 0.0  # the pixel to the left is seen
        if r > 0:
            assert jacobian[i, i - w] != 0.0  # and the one above


def test_the_jacobian_check_catches_a_first_layer_that_sees_its_own_pixel():
    model = PixelCNN(channels=6, layers=2)
    model.input_conv.register_buffer("mask", sg.nn.masked.conv_mask("B", (7, 7), 6, 1))
    jacobian = raster_jacobian(float64(model), 5, 5, np.random.default_rng(0).normal(scale=3, size=(2, 5, 5)))
    assert np.count_nonzero(np.diag(jacobian)) > 20


def test_the_band_of_rows_gives_the_same_logits_as_the_whole_image():
    model = PixelCNN(channels=8, layers=3)
    image = (np.random.default_rng(0).random((2, 1, 16, 12)) < 0.4).astype(np.float32)
    full = model(sg.tensor(image)).numpy()
    for r in (0, 3, model.rows_above, model.rows_above + 1, 15):
        top = max(0, r - model.rows_above)
        band = model(sg.tensor(image[:, :, top:r + 1])).numpy()
        np.testing.assert_allclose(band[:, :, -1], full[:, :, r], rtol=1e-5, atol=1e-6)
    if model.rows_above < 15:  # a band one row shorter would not do: the test can fail
        r = 15
        short = model(sg.tensor(image[:, :, r - model.rows_above + 1:r + 1])).numpy()
        assert not np.allclose(short[:, :, -1], full[:, :, r], rtol=1e-5, atol=1e-6)


def test_samples_follow_the_model_distribution():
    model = PixelCNN(channels=8, layers=2)
    for p in model.parameters():
        p.data = p.data * 3  # sharper conditionals, so that a wrong sampler shows
    images = all_binary_images(2, 2).astype(np.float32)
    probabilities = np.exp(model.log_prob(sg.tensor(images)).numpy())
    samples = model.sample(20000, size=(2, 2)).numpy().reshape(-1, 4)
    codes = (samples @ np.array([8, 4, 2, 1])).astype(int)  # the index in all_binary_images
    frequencies = np.bincount(codes, minlength=16) / len(samples)
    np.testing.assert_allclose(frequencies, probabilities, atol=4 * np.sqrt(0.25 / 20000))


def test_completion_keeps_the_given_rows():
    model = PixelCNN(channels=4, layers=1)
    given = (np.random.default_rng(0).random((3, 1, 6, 5)) < 0.5).astype(np.float32)
    completed = model.complete(given, given_rows=3).numpy()
    np.testing.assert_array_equal(completed[:, :, :3], given[:, :, :3])
    assert completed.shape == given.shape and set(np.unique(completed)) <= {0.0, 1.0}


def test_log_prob_is_the_bernoulli_likelihood_and_checks_its_input():
    model = PixelCNN(channels=4, layers=1)
    x = (np.random.default_rng(1).random((2, 1, 5, 5)) < 0.5).astype(np.float32)
    logits = model(sg.tensor(x)).numpy()
    expected = (x * -np.logaddexp(0, -logits) + (1 - x) * -np.logaddexp(0, logits)).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(model.log_prob(sg.tensor(x)).numpy(), expected, rtol=1e-5)
    with pytest.raises(ValueError, match=r"expected binary images \(N, 1, H, W\), got shape \(2, 25\)"):
        model(sg.tensor(x.reshape(2, 25)))


def test_pixelcnn_learns_digits_better_than_independent_pixels():
    """48 steps on 256 digits: held-out NLL ≈ 145 nats, against ≈ 218 for independent pixels."""
    x = binarize(load_mnist()[0][:256, None])
    held_out = binarize(load_mnist(split="test")[0][:200, None])
    independent = IndependentBernoulli(784).fit(x.reshape(-1, 784))
    baseline = -independent.log_prob(sg.tensor(held_out.reshape(-1, 784))).mean().item()
    model = PixelCNN(channels=8, layers=2)
    opt = sg.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(3):
        for (batch,) in sg.data.DataLoader(x, batch_size=16, shuffle=True):
            opt.zero_grad()
            (-model.log_prob(batch).mean()).backward()
            opt.step()
    with sg.no_grad():
        nll = -model.log_prob(sg.tensor(held_out)).mean().item()
    assert nll < baseline - 50, (nll, baseline)


@pytest.mark.parametrize("binarize", ["threshold", "dynamic"])
def test_demo_writes_samples_completions_and_metrics(tmp_path, capsys, binarize):
    demo = load_demo("pixelcnn")
    report = demo.main(["--epochs", "1", "--limit", "64", "--channels", "4", "--layers", "1", "--samples", "2",
                        "--completions", "1", "--binarize", binarize, "--out", str(tmp_path), "--quiet"])
    printed = last_json_line(capsys)
    assert printed == report["final"] and report["args"]["binarize"] == binarize
    assert printed["test_nearest_train_distance_median"] > 0
    for name in ("samples.png", "completions.png", "nearest_training.png", "learning_curve.png", "metrics.json",
                 "checkpoint.npz"):
        assert (tmp_path / name).stat().st_size > 0, name
    epoch = json.loads((tmp_path / "metrics.json").read_text())["history"][-1]
    assert math.isclose(epoch["bits_per_dim"], epoch["test_nll_nats"] / (784 * math.log(2)), rel_tol=1e-9)
    assert np.isfinite(printed["final_train_nll_nats"])
    if binarize == "threshold":  # the exact NLL of the training digits under the model the run saved
        model = PixelCNN(channels=4, layers=1)
        model.load_state_dict(sg.load(str(tmp_path / "checkpoint.npz"))["objects"]["model"])
        train = sg.data.binarize(load_mnist("embedded", "train")[0][:64, None])  # (the argument hides binarize)
        assert math.isclose(printed["final_train_nll_nats"],
                            -model.log_prob(sg.tensor(train)).numpy().mean(), rel_tol=1e-4)

"""Losses and functional layers: values against direct formulas, gradcheck, and stability at huge logits."""

import numpy as np
import pytest

import scratchgen as sg
from conftest import host, NoHostReads, t64

F = sg.nn.functional


def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_bce_with_logits_matches_the_bernoulli_formula(reduction, rng):
    x, y = rng.normal(size=(4, 5)), (rng.random((4, 5)) > 0.5).astype(float)
    p = _sigmoid(x)
    expected = -(y * np.log(p) + (1 - y) * np.log(1 - p))
    expected = {"mean": expected.mean(), "sum": expected.sum(), "none": expected}[reduction]
    tx = t64(x)
    np.testing.assert_allclose(F.binary_cross_entropy_with_logits(tx, y, reduction).numpy(), expected, rtol=1e-12)
    assert sg.gradcheck(lambda t: F.binary_cross_entropy_with_logits(t, y, reduction), [tx])
    assert sg.gradgradcheck(lambda t: F.binary_cross_entropy_with_logits(t, y, reduction), [tx])
    tx.grad = None
    F.binary_cross_entropy_with_logits(tx, y, "sum").backward()
    np.testing.assert_allclose(host(tx.grad), p - y, rtol=1e-12)  # the famous σ(x) - y


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_the_softmax_formula(reduction, rng):
    x, labels = rng.normal(size=(6, 4)), rng.integers(0, 4, 6)
    log_p = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    expected = -log_p[np.arange(6), labels]
    expected = {"mean": expected.mean(), "sum": expected.sum(), "none": expected}[reduction]
    tx = t64(x)
    np.testing.assert_allclose(F.cross_entropy(tx, labels, reduction).numpy(), expected, rtol=1e-12)
    assert sg.gradcheck(lambda t: F.cross_entropy(t, labels, reduction), [tx])
    assert sg.gradgradcheck(lambda t: F.cross_entropy(t, labels, reduction), [tx])


@pytest.mark.parametrize("loss", ["bce", "ce", "log_softmax"])
def test_losses_on_logits_stay_finite_at_plus_minus_100_in_float32(loss):
    logits = sg.tensor(np.array([[100.0, -100.0], [-100.0, 100.0], [100.0, 100.0]], dtype=np.float32), requires_grad=True)
    if loss == "bce":
        target = np.array([[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=np.float32)  # confidently wrong, mostly
        value = F.binary_cross_entropy_with_logits(logits, target)
        expected = (100 + 100 + 100 + 100 + 0 + 0) / 6
    elif loss == "ce":
        value = F.cross_entropy(logits, np.array([1, 0, 0]))
        expected = (200 + 200 + np.log(2)) / 3
    else:
        value = F.log_softmax(logits, axis=1).sum()
        expected = -200 - 200 - 2 * np.log(2)
    value.backward()
    assert np.isfinite(value.item()) and np.all(np.isfinite(host(logits.grad)))
    assert value.item() == pytest.approx(expected, rel=1e-5)


def test_cross_entropy_rejects_bad_labels():
    logits = sg.zeros(3, 4)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 4\)"):
        F.cross_entropy(logits, np.array([0, 4, 1]))
    with pytest.raises(TypeError, match="labels must be integers"):
        F.cross_entropy(logits, np.array([0.0, 1.0, 2.0]))
    with pytest.raises(ValueError, match=r"expected logits \(N, C\) and labels \(N,\)"):
        F.cross_entropy(logits, np.array([0, 1]))


def test_cross_entropy_reads_no_device_label_back_and_makes_a_bad_labels_loss_nan(monkeypatch, rng):
    """Labels on the GPU are not read back to be range-checked (that waits for the GPU on every step).
    Without a GPU: cross_entropy is told the labels are on the device, and they are an array that refuses
    every host read (int(labels.min()) used to be one); a label out of range must then give NaN, not the
    0 that its all-zero one-hot row would, and the other examples their usual loss."""
    strict = sg.get_backend() == "strict"  # there the labels are truly on the device, and reads are counted

    def device_labels(values):
        return sg.backend.asarray(np.array(values)) if strict else np.array(values).view(NoHostReads)

    if not strict:
        monkeypatch.setattr(F, "_on_device", lambda labels: True, raising=False)
    logits = sg.tensor(rng.standard_normal((3, 4)).astype(np.float32))
    labels = device_labels([0, 4, 1])
    sg.backend.strict_host_reads(reset=True)
    losses = F.cross_entropy(logits, labels, reduction="none")
    if strict:
        assert sg.backend.strict_host_reads() == 0, "cross_entropy read a device label back to the host"
    values = np.asarray(host(losses))  # a plain ndarray (on numpy, host gives the NoHostReads array back)
    assert np.isnan(values[1])
    good = F.cross_entropy(sg.tensor(logits.numpy()[[0, 2]]), np.array([0, 1]), reduction="none").numpy()
    np.testing.assert_allclose(values[[0, 2]], good, rtol=1e-6)
    valid = F.cross_entropy(logits, device_labels([0, 3, 1]), reduction="none")
    assert np.all(np.isfinite(np.asarray(host(valid))))


def test_mse_loss(rng):
    x, y = rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    tx = t64(x)
    assert F.mse_loss(tx, y).item() == pytest.approx(((x - y) ** 2).mean())
    assert F.mse_loss(tx, y, "sum").item() == pytest.approx(((x - y) ** 2).sum())
    assert sg.gradcheck(lambda t: F.mse_loss(t, y), [tx])
    assert sg.gradgradcheck(lambda t: F.mse_loss(t, y), [tx])
    with pytest.raises(ValueError, match=r"mse_loss: target shape \(3, 5\) differs from input shape \(3, 4\)"):
        F.mse_loss(tx, np.zeros((3, 5)))


def test_gaussian_kl_matches_closed_form_and_is_zero_at_the_prior(rng):
    mu, logvar = rng.normal(size=(5, 3)), rng.normal(size=(5, 3))
    expected = 0.5 * (mu**2 + np.exp(logvar) - 1 - logvar).sum(axis=1)
    tm, tl = t64(mu), t64(logvar)
    np.testing.assert_allclose(F.gaussian_kl(tm, tl).numpy(), expected, rtol=1e-12)
    assert F.gaussian_kl(tm, tl, "mean").item() == pytest.approx(expected.mean())
    assert sg.gradcheck(lambda a, b: F.gaussian_kl(a, b), [tm, tl])
    assert sg.gradgradcheck(lambda a, b: F.gaussian_kl(a, b), [tm, tl])
    assert F.gaussian_kl(sg.zeros(2, 3), sg.zeros(2, 3), "sum").item() == 0.0


def test_softmax_rows_sum_to_one(rng):
    x = t64(rng.normal(size=(4, 6)))
    np.testing.assert_allclose(F.softmax(x, axis=1).numpy().sum(axis=1), 1.0)
    assert sg.gradcheck(lambda t: F.softmax(t, axis=1), [x])
    assert sg.gradgradcheck(lambda t: F.softmax(t, axis=1), [x])


def test_dropout_zeroes_about_p_and_keeps_the_mean():
    x = sg.ones(200, 500)
    y = F.dropout(x, p=0.3, training=True).numpy()
    assert abs((y == 0).mean() - 0.3) < 0.01
    assert abs(y.mean() - 1.0) < 0.02
    np.testing.assert_array_equal(set(np.unique(y)), {0.0, np.float32(1 / 0.7)})
    assert F.dropout(x, p=0.3, training=False) is x


def test_dropout_gradient_passes_only_kept_units():
    x = t64(np.ones((50, 40)))
    y = F.dropout(x, p=0.5)
    y.sum().backward()
    np.testing.assert_array_equal(host(x.grad), y.numpy())  # mask/(1-p) in both

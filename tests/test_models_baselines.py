"""PCA, the reconstruction metrics and the linear probe, checked against their definitions."""

import numpy as np
import pytest

import scratchgen as sg
from scratchgen.models import PCA, linear_probe_accuracy, reconstruction_errors


def test_pca_components_are_the_covariance_eigenvectors(rng):
    x = rng.normal(size=(300, 6)) @ rng.normal(size=(6, 6)) + 3.0
    pca = PCA(3).fit(x)
    covariance = np.cov(x, rowvar=False, bias=True)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)  # ascending
    top = eigenvectors[:, ::-1][:, :3].T
    np.testing.assert_allclose(np.abs(pca.components_ @ top.T), np.eye(3), atol=1e-8)  # same up to sign
    np.testing.assert_allclose(pca.components_ @ pca.components_.T, np.eye(3), atol=1e-10)
    np.testing.assert_allclose(pca.explained_variance_ratio_, eigenvalues[::-1][:3] / eigenvalues.sum(), rtol=1e-8)
    np.testing.assert_allclose(pca.mean_, x.mean(axis=0), rtol=1e-12)


def test_pca_reconstruction_error_is_the_discarded_variance(rng):
    x = rng.normal(size=(500, 8)) * np.arange(1, 9)
    eigenvalues = np.linalg.eigvalsh(np.cov(x, rowvar=False, bias=True))  # ascending
    for k in (1, 4, 8):
        pca = PCA(k).fit(x)
        error = reconstruction_errors(pca.inverse_transform(pca.transform(x)), x)["mse"]
        np.testing.assert_allclose(error, eigenvalues[: 8 - k].sum() / 8, atol=1e-10)


def test_pca_flattens_images_and_rejects_misuse(rng):
    images = rng.random((20, 1, 4, 4))
    pca = PCA(5).fit(images)
    assert pca.components_.shape == (5, 16) and pca.transform(images).shape == (20, 5)
    assert pca.inverse_transform(pca.transform(images)).shape == (20, 16)
    with pytest.raises(ValueError, match="at most 16"):
        PCA(17).fit(images)
    with pytest.raises(RuntimeError, match="call fit first"):
        PCA(2).transform(images)
    with pytest.raises(ValueError, match="positive integer"):
        PCA(0)


def test_reconstruction_errors_follow_their_formulas(rng):
    x = rng.random((10, 1, 5, 5))
    x_hat = np.clip(x + rng.normal(scale=0.1, size=x.shape), -0.05, 1.05)  # PCA can leave [0, 1]
    errors = reconstruction_errors(x_hat, x)
    clipped = np.clip(x_hat, 1e-7, 1 - 1e-7)
    np.testing.assert_allclose(errors["mse"], np.mean((x_hat - x) ** 2), rtol=1e-12)
    bce = np.mean(-x * np.log(clipped) - (1 - x) * np.log(1 - clipped))
    np.testing.assert_allclose(errors["bce"], bce, rtol=1e-12)
    assert np.isfinite(errors["bce"])
    with pytest.raises(ValueError, match="differ"):
        reconstruction_errors(x_hat[:5], x)


def test_probe_reads_separable_classes_and_not_random_labels(rng):
    centres = rng.normal(scale=4.0, size=(10, 5))
    labels = rng.integers(0, 10, size=1200)
    codes = centres[labels] + rng.normal(size=(1200, 5))
    accuracy = linear_probe_accuracy(codes[:1000], labels[:1000], codes[1000:], labels[1000:], epochs=20)
    assert accuracy > 0.9
    shuffled = rng.permutation(labels)  # labels that carry no information about the codes
    chance = linear_probe_accuracy(codes[:1000], shuffled[:1000], codes[1000:], shuffled[1000:], epochs=20)
    assert chance < 0.25


def test_probe_is_unaffected_by_the_codes_scale(rng):
    labels = rng.integers(0, 3, size=600)
    codes = rng.normal(scale=3.0, size=(3, 4))[labels] + rng.normal(size=(600, 4))
    accuracies = []
    for scale in (1.0, 1e-3):  # the standardisation removes the scale
        sg.manual_seed(0)  # the same initial weights each time
        accuracies.append(linear_probe_accuracy(codes[:500] * scale, labels[:500], codes[500:] * scale, labels[500:],
                                                classes=3))
    assert accuracies[0] > 0.8 and abs(accuracies[0] - accuracies[1]) <= 0.01

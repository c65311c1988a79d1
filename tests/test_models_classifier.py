"""The first learning test: an MLP classifier on the embedded MNIST subset, trained in seconds."""

import time

import numpy as np

import scratchgen as sg
from scratchgen.data import load_mnist
from scratchgen.models.classifier import MLPClassifier, accuracy, predict_proba, train_classifier


def test_mlp_reaches_92_percent_test_accuracy_in_seconds():
    x_train, y_train = load_mnist("embedded", "train")
    x_test, y_test = load_mnist("embedded", "test")
    sg.manual_seed(0)
    start = time.perf_counter()
    model = train_classifier(MLPClassifier(hidden=(256,)), x_train, y_train, epochs=8, batch_size=64, lr=1e-3)
    elapsed = time.perf_counter() - start
    acc = accuracy(model, x_test, y_test)
    assert acc >= 0.92, f"test accuracy {acc:.3f} after {elapsed:.1f} s"


def test_predicted_probabilities_are_distributions():
    x_test, _ = load_mnist("embedded", "test")
    probs = predict_proba(MLPClassifier(), x_test[:50])
    assert probs.shape == (50, 10)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert np.all(probs >= 0)


def test_features_are_the_last_hidden_layer():
    model = MLPClassifier(hidden=(64, 32))
    x = sg.rand(5, 1, 28, 28)
    assert model.features(x).shape == (5, 32)
    assert model(x).shape == (5, 10)

"""The first learning test: an MLP classifier on the embedded MNIST subset, trained in seconds."""

import time

import numpy as np

import scratchgen as sg
from conftest import CuPyLikeArray, host
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


def test_training_prediction_and_accuracy_take_device_arrays_without_converting_them_to_numpy():
    """CuPy refuses ``numpy.asarray(a)``; image_batch used to call it on every input. Here the images and
    labels are device arrays that refuse it the same way (``a.get()`` is the one way out): the strict
    backend's own arrays, or on NumPy stand-ins for CuPy's. Every result must equal the one from the same
    data on the host."""
    x, y = load_mnist("embedded", "train")
    x, y = x[:96], y[:96]
    on_device = CuPyLikeArray if sg.get_backend() == "numpy" else sg.backend.asarray
    results = []
    for images, labels in ((x, y), (on_device(x), on_device(y))):
        sg.manual_seed(0)
        model = train_classifier(MLPClassifier(hidden=(16,)), images, labels, epochs=1, batch_size=32)
        results.append((host(predict_proba(model, images)), accuracy(model, images, labels),
                        model.head.weight.numpy()))
    (host_p, host_acc, host_w), (device_p, device_acc, device_w) = results
    np.testing.assert_array_equal(device_w, host_w)
    np.testing.assert_array_equal(device_p, host_p)
    assert device_acc == host_acc

"""k-means: distances against brute force, k-means++'s D² law, Lloyd against a plain-NumPy loop, the
inertia never rising, empty clusters, the restarts, and scikit-learn's inertia on the embedded digits."""

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import metrics
from scratchgen.data import load_mnist, to_float
from scratchgen.models import KMeans
from scratchgen.models.kmeans import kmeans_plus_plus, lloyd, squared_distances

# scikit-learn 1.9.1, KMeans(10, n_init=10, random_state=0) on the 4,000 embedded training digits in [0, 1]:
# inertia 38.67 per image (38.66 to 38.75 over random_state 0-4), NMI with the labels 0.47 (0.47 to 0.49).
SKLEARN_INERTIA_PER_IMAGE = 38.67


def blobs(rng, centres, n_each, spread):
    """n_each points around each of the given centres, with standard deviation ``spread``."""
    centres = np.asarray(centres, dtype=np.float64)
    points = np.concatenate([c + spread * rng.standard_normal((n_each, len(c))) for c in centres])
    return points, np.repeat(np.arange(len(centres)), n_each)


def plain_lloyd(x, centres, iterations):
    """Lloyd's two steps written out with an (N, k, D) array of differences, for comparison."""
    for _ in range(iterations):
        labels = (((x[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)).argmin(axis=1)
        centres = np.stack([x[labels == j].mean(axis=0) for j in range(len(centres))])
    labels = (((x[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)).argmin(axis=1)
    return centres, labels


def test_squared_distances_match_the_differences(backend, rng):
    x, c = rng.standard_normal((30, 5)), rng.standard_normal((4, 5))
    got = sg.backend.to_numpy(squared_distances(sg.backend.asarray(x), sg.backend.asarray(c)))
    np.testing.assert_allclose(got, ((x[:, None] - c[None]) ** 2).sum(axis=2), rtol=1e-10, atol=1e-12)
    on_itself = sg.backend.to_numpy(squared_distances(sg.backend.asarray(x), sg.backend.asarray(x[:3])))
    assert (on_itself >= 0).all() and np.allclose(np.diag(on_itself[:3]), 0, atol=1e-12)


def test_kmeans_plus_plus_draws_in_proportion_to_the_squared_distance(backend):
    # Points 0, 1, 3 and k = 2. The first centre is uniform; the second is drawn with weights D²:
    # after 0: (1, 9) for points 1 and 3; after 1: (1, 4) for 0 and 3; after 3: (9, 4) for 0 and 1.
    x = sg.backend.asarray(np.array([[0.0], [1.0], [3.0]]))
    expected = {(0.0, 1.0): (0.1 + 0.2) / 3, (0.0, 3.0): (0.9 + 9 / 13) / 3, (1.0, 3.0): (0.8 + 4 / 13) / 3}
    draws = 3000
    counts = dict.fromkeys(expected, 0)
    for _ in range(draws):
        pair = tuple(sorted(sg.backend.to_numpy(kmeans_plus_plus(x, 2)).ravel().tolist()))
        counts[pair] += 1  # a KeyError would mean a point drawn twice
    for pair, p in expected.items():
        assert abs(counts[pair] / draws - p) < 4 * np.sqrt(p * (1 - p) / draws), (pair, counts[pair] / draws, p)


def test_kmeans_plus_plus_puts_one_seed_in_each_separated_blob_and_never_repeats_a_point(backend, rng):
    corners = [[0, 0], [100, 0], [0, 100], [100, 100], [50, 50]]
    x, truth = blobs(rng, corners, 40, 0.5)
    x = np.concatenate([x, x[:10]])  # duplicates: D = 0 once one copy is chosen
    for _ in range(20):
        seeds = sg.backend.to_numpy(kmeans_plus_plus(sg.backend.asarray(x), 5))
        nearest_corner = ((seeds[:, None] - np.asarray(corners)[None]) ** 2).sum(axis=2).argmin(axis=1)
        assert sorted(nearest_corner) == [0, 1, 2, 3, 4]
        assert all((x == s).all(axis=1).any() for s in seeds)  # every seed is a data point
    with pytest.raises(ValueError, match="cannot choose 6 centres among 5 points"):
        kmeans_plus_plus(sg.backend.asarray(x[:5]), 6)


def test_lloyd_agrees_with_the_plain_numpy_loop_and_stops_at_a_fixed_point(backend, rng):
    x, _ = blobs(rng, [[0, 0], [3, 0], [0, 3]], 20, 1.0)
    start = x[[0, 1, 2]]  # three points of the first blob: Lloyd has to move them apart
    centres, labels, history = lloyd(sg.backend.asarray(x), sg.backend.asarray(start), max_iter=100, tol=0)
    centres, labels = sg.backend.to_numpy(centres), sg.backend.to_numpy(labels)
    iterations = len(history) - 1
    expected_centres, expected_labels = plain_lloyd(x, start, iterations)
    np.testing.assert_allclose(centres, expected_centres, rtol=1e-10)
    np.testing.assert_array_equal(labels, expected_labels)
    # a fixed point: each centre is the mean of its points, each point is nearest its centre
    np.testing.assert_allclose(centres, np.stack([x[labels == j].mean(axis=0) for j in range(3)]), rtol=1e-10)
    assert history[-1] == pytest.approx(((x - centres[labels]) ** 2).sum(), rel=1e-12)
    assert iterations < 100


def test_the_inertia_never_rises(backend, rng):
    x = sg.backend.asarray(rng.standard_normal((400, 2)))  # no clusters at all: many slow iterations
    for seed in range(5):
        with sg.backend.fork_rng(seed):
            _, _, history = lloyd(x, kmeans_plus_plus(x, 8), max_iter=300, tol=0)
        assert len(history) > 3
        assert all(later <= earlier * (1 + 1e-12) for earlier, later in zip(history, history[1:])), history


def test_an_emptied_cluster_takes_the_farthest_point(rng):
    x, _ = blobs(rng, [[0, 0], [10, 0]], 30, 1.0)
    start = np.array([[0.0, 0.0], [10.0, 0.0], [1000.0, 1000.0]])  # the third centre attracts nothing
    centres, labels, history = lloyd(sg.backend.asarray(x), sg.backend.asarray(start), tol=0)
    centres, labels = sg.backend.to_numpy(centres), sg.backend.to_numpy(labels)
    assert np.isfinite(centres).all() and sorted(set(labels.tolist())) == [0, 1, 2]
    assert history[-1] < history[0]


def test_kmeans_keeps_the_best_run_is_reproducible_and_predicts_its_labels(backend, rng):
    x, truth = blobs(rng, [[0, 0, 0], [6, 0, 0], [0, 6, 0], [0, 0, 6]], 25, 1.0)
    model = KMeans(4, n_init=5, seed=3).fit(x)
    assert len(model.run_inertias_) == 5 and model.inertia_ == min(model.run_inertias_)
    assert model.cluster_centers_.shape == (4, 3) and model.n_iter_ == len(model.inertia_history_) - 1
    np.testing.assert_array_equal(sg.backend.to_numpy(model.predict(x)), sg.backend.to_numpy(model.labels_))
    assert metrics.normalized_mutual_info(model.labels_, truth) > 0.9
    again = KMeans(4, n_init=5, seed=3).fit(x)
    assert again.run_inertias_ == model.run_inertias_


def test_kmeans_refuses_what_it_cannot_cluster():
    with pytest.raises(ValueError, match="3 points cannot make 4 clusters"):
        KMeans(4).fit(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        KMeans(2).fit(np.array([[0.0], [np.nan], [1.0]]))
    with pytest.raises(ValueError, match="n_init must be a positive integer"):
        KMeans(2, n_init=0)
    with pytest.raises(RuntimeError, match="call fit first"):
        KMeans(2).predict(np.zeros((1, 2)))


def test_ten_restarts_reach_scikit_learns_inertia_on_the_embedded_digits():
    """About 3 seconds on one core: 10 runs of Lloyd on 4,000 images of 784 pixels."""
    images, labels = load_mnist("embedded", "train")
    model = KMeans(10, n_init=10, seed=0).fit(to_float(images))
    per_image = model.inertia_ / len(images)
    assert per_image <= 1.01 * SKLEARN_INERTIA_PER_IMAGE, per_image
    assert metrics.normalized_mutual_info(model.labels_, labels) >= 0.45

"""Sample-quality metrics: mode coverage on 2-D mixtures, class shares, Inception Score, Fréchet
distance, and the cached MNIST judge."""

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import metrics
from scratchgen.data import grid25_mixture, load_mnist, ring8_mixture


# ------------------------------------------------------------------------------------- 2-D mixtures


@pytest.mark.parametrize("make", [ring8_mixture, grid25_mixture])
def test_true_samples_cover_every_mode_and_are_high_quality_as_often_as_3_sigma_predicts(make):
    # |x - μ| / σ of a 2-D standard normal is Rayleigh: P(≤ 3) = 1 - exp(-9/2) = 0.98889.
    mixture = make()
    result = metrics.mode_coverage(mixture.sample(20000, rng=0), mixture)
    assert result["modes"] == len(mixture)
    assert result["high_quality"] == pytest.approx(1 - np.exp(-4.5), abs=0.003)  # 3 binomial std errors


def test_collapsed_samples_cover_only_their_modes_and_stray_samples_count_for_nothing():
    mixture = ring8_mixture()  # std 0.01
    inside = np.repeat(mixture.means[[0, 3, 5]], 10, axis=0) + np.array([0.02, 0.0])  # 2σ away
    between = np.zeros((20, 2))  # the centre of the ring, 1 away from every mode
    result = metrics.mode_coverage(np.concatenate([inside, between]), mixture)
    assert result == {"modes": 3, "high_quality": 30 / 50}
    near_misses = mixture.means[[0, 3, 5]] + 0.025  # 0.025·√2 ≈ 3.5σ from their modes
    outside = metrics.mode_coverage(near_misses, mixture)
    assert outside == {"modes": 0, "high_quality": 0.0}


def test_mode_coverage_threshold_is_in_standard_deviations():
    mixture = grid25_mixture()  # std 0.05
    points = mixture.means[:2] + np.array([[0.149, 0.0], [0.151, 0.0]])  # 2.98σ and 3.02σ
    assert metrics.mode_coverage(points, mixture) == {"modes": 1, "high_quality": 0.5}
    assert metrics.mode_coverage(points, mixture, threshold=4)["modes"] == 2
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        metrics.mode_coverage(np.zeros((3, 3)), mixture)


# -------------------------------------------------------------------------------- classifier-based


def test_class_shares_count_the_most_probable_class(rng):
    probabilities = rng.dirichlet(np.ones(4), size=200)
    shares = metrics.class_shares(probabilities)
    np.testing.assert_allclose(shares, np.bincount(probabilities.argmax(axis=1), minlength=4) / 200)
    assert metrics.class_shares(np.eye(3)[[0, 0]], classes=3).tolist() == [1.0, 0.0, 0.0]


def test_inception_score_matches_its_definition_and_its_bounds(rng):
    probabilities = rng.dirichlet(np.full(10, 0.3), size=300)
    marginal = probabilities.mean(axis=0)
    kl = [np.sum(p * np.log(p / marginal)) for p in probabilities]
    assert metrics.inception_score(probabilities) == pytest.approx(np.exp(np.mean(kl)), rel=1e-10)
    assert metrics.inception_score(np.eye(10)) == pytest.approx(10)  # sharp and balanced: the maximum
    assert metrics.inception_score(np.full((7, 10), 0.1)) == pytest.approx(1)  # no confidence
    assert metrics.inception_score(np.eye(10)[[3] * 8]) == pytest.approx(1)  # confident, one class only


def _sqrtm_general(matrix):
    """A square root of a diagonalisable matrix with positive eigenvalues, by its general eigendecomposition."""
    values, vectors = np.linalg.eig(matrix)
    return (vectors * np.sqrt(values.astype(complex))) @ np.linalg.inv(vectors)


def test_frechet_distance_agrees_with_the_formula_through_a_general_matrix_square_root(rng):
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    sigma1, sigma2 = a @ a.T + 0.1 * np.eye(6), b @ b.T + 0.1 * np.eye(6)
    mu1, mu2 = rng.normal(size=6), rng.normal(size=6)
    expected = (np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2)
                - 2 * np.trace(_sqrtm_general(sigma1 @ sigma2)).real)
    assert metrics.gaussian_frechet_distance(mu1, sigma1, mu2, sigma2) == pytest.approx(expected, rel=1e-8)
    assert metrics.gaussian_frechet_distance(mu1, sigma1, mu1, sigma1) == pytest.approx(0, abs=1e-8)


def test_frechet_distance_of_feature_sets(rng):
    # Diagonal Gaussians: the distance is Σ (μ1 - μ2)² + Σ (σ1 - σ2)²; here 3·1² + 3·(2 - 1)² = 6.
    a = rng.normal(size=(50000, 3))
    b = 2 * rng.normal(size=(50000, 3)) + 1
    assert metrics.frechet_distance(a, b) == pytest.approx(6, rel=0.02)
    assert metrics.frechet_distance(a, a) == pytest.approx(0, abs=1e-9)
    with pytest.raises(ValueError, match="features"):
        metrics.frechet_distance(a, b[:, :2])


# ----------------------------------------------------------------------------------- the MNIST judge


def test_mnist_judge_is_trained_once_then_loaded_and_keeps_the_random_stream(tmp_path):
    sg.manual_seed(5)
    expected_draw = sg.randn(3).numpy()
    sg.manual_seed(5)
    model, accuracy = metrics.mnist_classifier(epochs=1, train_subset=500, cache_dir=tmp_path)
    np.testing.assert_array_equal(sg.randn(3).numpy(), expected_draw)  # training used its own seed
    cached = list(tmp_path.glob("mnist_classifier_*.npz"))
    assert len(cached) == 1 and accuracy > 0.3  # one epoch on 500 digits: well above chance (0.1)

    loaded, loaded_accuracy = metrics.mnist_classifier(epochs=1, train_subset=500, cache_dir=tmp_path)
    assert loaded_accuracy == accuracy
    images, _ = load_mnist("embedded", "test")
    p1, f1 = metrics.classifier_outputs(model, images[:20])
    p2, f2 = metrics.classifier_outputs(loaded, images[:20])
    np.testing.assert_array_equal(p1, p2)
    assert f1.shape == (20, 128) and p1.shape == (20, 10)

    metrics.mnist_classifier(epochs=2, train_subset=500, cache_dir=tmp_path)  # another configuration
    assert len(list(tmp_path.glob("mnist_classifier_*.npz"))) == 2

    scores = metrics.classifier_scores(model, images[:100], images[100:300])
    assert set(scores) == {"class_shares", "inception_score", "frechet_distance"}
    assert len(scores["class_shares"]) == 10 and 1 <= scores["inception_score"] <= 10


@pytest.mark.parametrize("claimed_backend", ["numpy", "cupy"])
def test_the_mnist_judge_leaves_the_callers_stream_and_seed_alone_on_either_backend(tmp_path, monkeypatch,
                                                                                    claimed_backend):
    """Training the judge draws from its own seed; afterwards the caller's stream continues where it was,
    and the seed that set_backend re-seeds from is still the caller's (manual_seed inside the judge used to
    overwrite it). For "cupy", get_backend is made to answer "cupy" (the arrays stay NumPy): the judge
    used to save and restore the stream only when the answer was "numpy"."""
    monkeypatch.setattr(sg.backend, "get_backend", lambda: claimed_backend)
    sg.manual_seed(123)
    first = sg.randn(3).numpy()
    uninterrupted = sg.randn(3).numpy()
    sg.manual_seed(123)
    sg.randn(3)
    metrics.mnist_classifier(epochs=1, train_subset=64, cache_dir=tmp_path)
    np.testing.assert_array_equal(sg.randn(3).numpy(), uninterrupted)
    sg.set_backend("numpy")  # re-seeds with the remembered seed
    np.testing.assert_array_equal(sg.randn(3).numpy(), first)


# -------------------------------------------------------------------------------------- clusterings


def _nmi_by_definition(clusters, labels):
    """NMI written out over every pair of values, in bits: I / ½(H(C) + H(Y)), p from counts."""
    n = len(clusters)
    p_c = {c: np.mean(clusters == c) for c in set(clusters.tolist())}
    p_y = {y: np.mean(labels == y) for y in set(labels.tolist())}
    mutual = 0.0
    for c in p_c:
        for y in p_y:
            p = np.sum((clusters == c) & (labels == y)) / n
            mutual += p * np.log2(p / (p_c[c] * p_y[y])) if p > 0 else 0.0
    entropy = lambda q: -sum(v * np.log2(v) for v in q.values())  # noqa: E731
    return mutual / ((entropy(p_c) + entropy(p_y)) / 2)


def test_nmi_matches_its_definition_and_scikit_learns_value():
    clusters, labels = np.array([0, 0, 1, 1, 2, 2, 2, 0]), np.array([1, 1, 0, 0, 0, 2, 2, 2])
    got = metrics.normalized_mutual_info(clusters, labels)
    assert got == pytest.approx(_nmi_by_definition(clusters, labels), rel=1e-12)
    # sklearn.metrics.normalized_mutual_info_score (scikit-learn 1.9.1) gives the same for this case
    assert got == pytest.approx(0.5588730382170324, rel=1e-12)
    assert metrics.normalized_mutual_info(labels, clusters) == pytest.approx(got, rel=1e-12)  # symmetric


def test_nmi_is_one_for_a_renaming_zero_for_independence_and_agrees_on_random_partitions(rng):
    labels = rng.integers(0, 10, 500)
    assert metrics.normalized_mutual_info((labels * 7 + 3) % 10 + 100, labels) == pytest.approx(1.0)
    grid = np.arange(12)
    assert metrics.normalized_mutual_info(grid % 3, grid // 3) == pytest.approx(0.0, abs=1e-12)  # independent
    assert metrics.normalized_mutual_info(np.zeros(4), [0, 1, 0, 1]) == 0.0  # scikit-learn's conventions
    assert metrics.normalized_mutual_info(np.zeros(3), [5, 5, 5]) == 1.0
    for k in (2, 7, 15):
        clusters = rng.integers(0, k, 500)
        assert metrics.normalized_mutual_info(clusters, labels) == pytest.approx(
            _nmi_by_definition(clusters, labels), rel=1e-10)


def test_purity_is_the_share_of_points_in_their_clusters_majority(rng):
    clusters, labels = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2]), np.array([3, 3, 1, 1, 2, 5, 5, 5, 1])
    assert metrics.cluster_purity(clusters, labels) == pytest.approx((2 + 1 + 3) / 9)
    labels = rng.integers(0, 10, 300)
    clusters = rng.integers(0, 6, 300)
    majority = sum(np.bincount(labels[clusters == c]).max() for c in np.unique(clusters))
    assert metrics.cluster_purity(clusters, labels) == pytest.approx(majority / 300)
    assert metrics.cluster_purity(np.arange(300), labels) == 1.0  # one point per cluster: pure, and useless
    table = metrics.contingency_table(clusters, labels)
    assert table.shape == (6, 10) and table.sum() == 300
    with pytest.raises(ValueError, match="3 cluster assignments but 2 labels"):
        metrics.cluster_purity([0, 1, 2], [0, 1])


# ------------------------------------------------------------------------------------ memorisation


def test_nearest_training_images_agree_with_brute_force_over_chunks(backend, rng):
    train = rng.random((50, 3, 4), dtype=np.float32)
    samples = rng.random((23, 12), dtype=np.float32)
    brute = np.linalg.norm(samples[:, None, :].astype(np.float64) - train.reshape(1, 50, 12), axis=2)
    # 100 numbers per chunk: 2 samples against the 50 training images at a time, 12 chunks.
    distances, indices = metrics.nearest_training_images(sg.tensor(samples), sg.tensor(train), chunk_elements=100)
    np.testing.assert_array_equal(indices, brute.argmin(axis=1))
    np.testing.assert_allclose(distances, brute.min(axis=1), rtol=1e-12)
    assert distances.dtype == np.float64 and indices.dtype == np.int64


def test_planted_copies_are_at_distance_zero_and_test_images_are_not():
    images, _ = load_mnist(split="train")
    train = images[:1000].astype(np.float32) / 255
    test = load_mnist(split="test")[0][:200].astype(np.float32) / 255
    order = np.random.default_rng(0).permutation(1000)[:100]
    distances, indices = metrics.nearest_training_images(train[order], train)
    assert distances.max() == 0.0  # exactly: the distance is recomputed from the images, not the expansion
    np.testing.assert_array_equal(train[indices], train[order])
    copies = metrics.memorisation_check(train[order], train, test)
    assert copies["nearest_train_distance_median"] == 0.0
    assert copies["test_nearest_train_distance_median"] > 3  # about 6 pixels' worth on these digits


def test_nearest_training_images_refuse_other_scales_and_sizes():
    train = np.random.default_rng(0).random((10, 784), dtype=np.float32)
    with pytest.raises(ValueError, match="to_float"):
        metrics.nearest_training_images(load_mnist(split="test")[0][:5], train)  # uint8 0..255
    with pytest.raises(ValueError, match=r"\(x \+ 1\) / 2"):
        metrics.nearest_training_images(train * 2 - 1, train)  # a tanh generator's range
    with pytest.raises(ValueError, match="784 pixels but training images of 100"):
        metrics.nearest_training_images(train, train[:, :100])


def test_judge_digits_scores_the_test_digits_as_the_judge_does(tmp_path, monkeypatch):
    """The real test digits, judged as samples with their own labels as the labels asked for: their
    conditional accuracy is the judge's test accuracy, and their scores are the real ones taken to the test
    digits themselves (a Fréchet distance of 0)."""
    monkeypatch.setenv("SCRATCHGEN_DATA_DIR", str(tmp_path))
    images, labels = load_mnist("embedded", "test")
    digits = images.astype(np.float32) / 255
    report = metrics.judge_digits(digits, epochs=1, train_subset=300, asked_labels=labels)
    assert report["conditional_accuracy"] == pytest.approx(report["judge_test_accuracy"])
    assert report["inception_score"] == pytest.approx(report["real_inception_score"], rel=1e-5)
    assert abs(report["frechet_distance"]) < 1e-3 < report["real_frechet_distance"]
    assert "conditional_accuracy" not in metrics.judge_digits(digits[:50], epochs=1, train_subset=300)

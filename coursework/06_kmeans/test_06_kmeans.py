"""Grader of assignment 6: k-means by Lloyd's algorithm from k-means++ seeds.

    python -m pytest coursework/06_kmeans                         # grades kmeans.py in this folder
    python -m pytest coursework/06_kmeans --solution my_kmeans.py   # grades another file

Checks, in the order a student meets them: the distances against differences taken one by one; the
assignment and the update on small cases worked by hand (an empty cluster included); the inertia never
rising along Lloyd's iterations; k-means++ seeds drawn from the data, in proportion to D² (a count over
3,000 draws, told apart from draws in proportion to D or uniform ones); the restarts keeping their best
run; and the 1,000 first embedded MNIST digits clustered as well as the library's
``scratchgen.models.KMeans`` does.
"""

import numpy as np

from scratchgen import metrics
from scratchgen.data import load_mnist, to_float
from scratchgen.models import KMeans

STARTER = "kmeans.py"
REQUIRED = ("squared_distances", "assign", "update", "kmeans_plus_plus", "kmeans")


def _points(n=60, d=3, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d))


# ------------------------------------------------------------------------------------------ Lloyd's steps


def test_squared_distances_match_the_differences(solution):
    x, centres = _points(), _points(4, seed=1)
    got = np.asarray(solution.squared_distances(x, centres))
    expected = ((x[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    assert got.shape == expected.shape, f"squared_distances gave shape {got.shape}; expected (N, k) = {expected.shape}"
    hint = (" They are the distances themselves: square them (or drop the square root)."
            if np.allclose(got ** 2, expected) else "")
    assert np.allclose(got, expected, rtol=1e-9, atol=1e-9), (
        f"squared_distances differs from Σ_d (x_nd − μ_jd)² by up to {np.abs(got - expected).max():.3g}.{hint}")
    on_itself = np.asarray(solution.squared_distances(x, x[:5]))
    assert on_itself.min() >= 0, (f"a point's squared distance to itself came out {on_itself.min():.3g}: the "
                                  f"expansion ‖x‖² − 2x·μ + ‖μ‖² rounds below 0; clip it with np.maximum(·, 0)")


def test_assign_picks_the_nearest_centre_and_sums_the_squared_distances(solution):
    x = np.array([[0.0, 0.0], [1.0, 0.0], [9.0, 0.0], [10.0, 2.0]])
    centres = np.array([[0.0, 0.0], [10.0, 0.0]])
    labels, inertia = solution.assign(x, centres)
    labels = np.asarray(labels).tolist()
    hint = " Those are the farthest centres: argmin, not argmax." if labels == [1, 1, 0, 0] else ""
    assert labels == [0, 0, 1, 1], (f"points {x.tolist()} with centres {centres.tolist()}: labels {labels}, "
                                    f"expected [0, 0, 1, 1].{hint}")
    expected = 0 + 1 + 1 + 4  # squared distances to the nearest centres
    hint = (" That is the sum of the distances, not of their squares." if abs(inertia - (0 + 1 + 1 + 2)) < 1e-9
            else " That is the mean over the points; the inertia is their sum." if abs(inertia - expected / 4) < 1e-9
            else "")
    assert abs(float(inertia) - expected) < 1e-9, f"inertia {float(inertia):.6g}, expected 0 + 1 + 1 + 4 = 6.{hint}"


def test_update_moves_each_centre_to_the_mean_of_its_points(solution):
    x = np.array([[0.0, 0.0], [2.0, 0.0], [10.0, 4.0], [12.0, 6.0], [11.0, 5.0]])
    centres = np.array([[1.0, 1.0], [9.0, 9.0], [-50.0, 50.0]])  # the third has no point
    got = np.asarray(solution.update(x, np.array([0, 0, 1, 1, 1]), centres), dtype=np.float64)
    expected = np.array([[1.0, 0.0], [11.0, 5.0], [-50.0, 50.0]])
    assert got.shape == (3, 2), f"update returned shape {got.shape}; expected (k, D) = (3, 2)"
    assert np.isfinite(got).all(), (f"update returned {got.tolist()}: the third cluster has no point, and 0/0 is "
                                    f"NaN. An empty cluster keeps its current centre")
    hint = (" They are the sums over each cluster divided by N: divide by the cluster's own count."
            if np.allclose(got[:2], expected[:2] * np.array([[2], [3]]) / 5) else "")
    assert np.allclose(got, expected), f"update returned {got.tolist()}, expected {expected.tolist()}.{hint}"


def test_lloyd_never_raises_the_inertia_and_reaches_a_fixed_point(solution):
    x = _points(300, 2, seed=2)  # no clusters at all: Lloyd takes many small steps
    centres, history = x[:6].copy(), []
    for _ in range(200):
        labels, inertia = solution.assign(x, centres)
        history.append(float(inertia))
        new = np.asarray(solution.update(x, labels, centres), dtype=np.float64)
        if np.allclose(new, centres, rtol=0, atol=1e-12):
            break
        centres = new
    rises = [(i, a, b) for i, (a, b) in enumerate(zip(history, history[1:]), 1) if b > a * (1 + 1e-9)]
    assert not rises, (f"the inertia rose from {rises[0][1]:.6g} to {rises[0][2]:.6g} at iteration {rises[0][0]}: "
                       f"assign picks each point's nearest centre and update each cluster's mean, and neither can "
                       f"raise it")
    assert len(history) < 200, "200 iterations of assign and update did not reach a fixed point"


# ------------------------------------------------------------------------------------------- k-means++


def test_kmeans_plus_plus_draws_distinct_data_points(solution):
    x = np.concatenate([_points(30, seed=3), _points(30, seed=3)])  # every point twice: D = 0 for a copy
    for seed in range(10):
        seeds = np.asarray(solution.kmeans_plus_plus(x, 8, np.random.default_rng(seed)))
        assert seeds.shape == (8, 3), f"kmeans_plus_plus(x, 8, rng) returned shape {seeds.shape}; expected (8, 3)"
        assert all((x == s).all(axis=1).any() for s in seeds), "a seed is not one of the data points"
        assert len(np.unique(seeds, axis=0)) == 8, (
            "two seeds are the same point: once a point is chosen its D is 0, so it cannot be drawn again")


def test_kmeans_plus_plus_draws_in_proportion_to_the_squared_distance(solution):
    # Points 0, 1, 3 and k = 2: the first seed uniform, the second with probability ∝ D² (or D, or uniform).
    x = np.array([[0.0], [1.0], [3.0]])
    laws = {
        "D²": {(0, 1): (1 / 10 + 1 / 5) / 3, (0, 3): (9 / 10 + 9 / 13) / 3, (1, 3): (4 / 5 + 4 / 13) / 3},
        "D (not squared)": {(0, 1): (1 / 4 + 1 / 3) / 3, (0, 3): (3 / 4 + 3 / 5) / 3, (1, 3): (2 / 3 + 2 / 5) / 3},
        "uniform": {(0, 1): 1 / 3, (0, 3): 1 / 3, (1, 3): 1 / 3},
    }
    draws, rng = 3000, np.random.default_rng(0)
    counts = dict.fromkeys(laws["D²"], 0)
    for _ in range(draws):
        pair = tuple(sorted(int(v) for v in np.asarray(solution.kmeans_plus_plus(x, 2, rng)).ravel()))
        assert pair in counts, f"kmeans_plus_plus(x = [0, 1, 3], k = 2) drew {pair}: the same point twice"
        counts[pair] += 1
    shares = {pair: n / draws for pair, n in counts.items()}
    distance = {name: max(abs(shares[p] - law[p]) for p in law) for name, law in laws.items()}
    closest = min(distance, key=distance.get)
    hint = {"D (not squared)": " They follow draws in proportion to D: square the distances.",
            "uniform": " They look uniform: weight each point by D(x)², its squared distance to the nearest seed."}
    assert distance["D²"] < 0.03, (  # 0.03 is more than 3 standard errors of every share
        f"over {draws} draws the pairs of seeds came out {({p: round(s, 3) for p, s in shares.items()})}, but D² "
        f"sampling gives {({p: round(v, 3) for p, v in laws['D²'].items()})}.{hint.get(closest, '')}")


# ------------------------------------------------------------------------------------------ the restarts


def test_kmeans_keeps_the_best_of_its_runs(solution):
    x = np.random.default_rng(4).random((400, 2))  # a uniform square: each run ends in another local minimum
    for seed in range(3):
        centres, labels, inertia, runs = solution.kmeans(x, 7, n_init=8, rng=np.random.default_rng(seed))
        runs = [float(r) for r in runs]
        assert len(runs) == 8, f"kmeans(n_init=8) reported {len(runs)} run inertias; expected 8, one per run"
        own_labels, own_inertia = solution.assign(x, np.asarray(centres))
        assert abs(float(inertia) - float(own_inertia)) < 1e-6 * own_inertia, (
            f"kmeans returned inertia {float(inertia):.6g}, but its centres give {float(own_inertia):.6g}: return "
            f"the inertia of the centres you return")
        assert np.array_equal(np.asarray(labels), np.asarray(own_labels)), (
            "kmeans returned labels that are not each point's nearest returned centre")
        best = int(np.argmin(runs))
        which = (" (the last run's: keep the run of lowest inertia, not the last one)"
                 if abs(float(inertia) - runs[-1]) < 1e-9 * runs[-1] else "")
        assert float(inertia) <= runs[best] * (1 + 1e-9), (
            f"kmeans returned inertia {float(inertia):.6g}{which}, but run {best + 1} of 8 reached {runs[best]:.6g}")


def test_kmeans_clusters_the_digits_as_well_as_the_library(solution):
    images, digits = load_mnist("embedded", "train")
    x = to_float(images[:1000]).reshape(1000, -1).astype(np.float64)
    centres, labels, inertia, _ = solution.kmeans(x, 10, n_init=3, rng=np.random.default_rng(0))
    library = KMeans(10, n_init=3, seed=0).fit(x)
    nmi = metrics.normalized_mutual_info(np.asarray(labels), digits[:1000])
    assert float(inertia) <= 1.02 * library.inertia_, (
        f"on 1,000 digits your k-means (3 runs) ends at {float(inertia) / 1000:.3f} per image; the library's "
        f"reaches {library.inertia_ / 1000:.3f}. Check the seeding and that each run goes on until no label changes")
    assert nmi >= 0.4, f"your clusters share an NMI of only {nmi:.3f} with the digits' labels; expected about 0.5"

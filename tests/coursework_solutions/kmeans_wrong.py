"""A planted wrong answer to assignment 6: k-means++ draws each next seed in proportion to the distance
D(x), not to its square (the classic slip: ``squared_distances`` then a square root "to get distances").
The seeds are still distinct data points, Lloyd's steps and the restarts are right: only the count of
3,000 draws can tell, and its message must name D."""

import numpy as np


def squared_distances(x, centres):
    return np.maximum((x * x).sum(axis=1, keepdims=True) - 2 * x @ centres.T + (centres * centres).sum(axis=1), 0)


def assign(x, centres):
    distances = squared_distances(x, centres)
    return distances.argmin(axis=1), float(distances.min(axis=1).sum())


def update(x, labels, centres):
    new = np.array(centres, dtype=np.float64)
    for j in range(len(centres)):
        if (labels == j).any():
            new[j] = x[labels == j].mean(axis=0)
    return new


def kmeans_plus_plus(x, k, rng):
    chosen = [rng.integers(len(x))]
    for _ in range(1, k):
        d = np.sqrt(squared_distances(x, x[chosen]).min(axis=1))  # BUG: D, where k-means++ weighs by D²
        chosen.append(rng.choice(len(x), p=d / d.sum()))
    return x[chosen]


def kmeans(x, k, n_init=10, rng=None, max_iter=100):
    rng = np.random.default_rng(0) if rng is None else rng
    best, runs = None, []
    for _ in range(n_init):
        centres = kmeans_plus_plus(x, k, rng)
        labels, inertia = assign(x, centres)
        for _ in range(max_iter):
            centres = update(x, labels, centres)
            new_labels, inertia = assign(x, centres)
            if (new_labels == labels).all():
                break
            labels = new_labels
        runs.append(inertia)
        if best is None or inertia < best[2]:
            best = centres, new_labels, inertia
    return (*best, runs)

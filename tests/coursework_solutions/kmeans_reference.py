"""Reference answer to assignment 6, by the library: scratchgen.models.kmeans, on the NumPy backend.

The assignment works on host NumPy arrays with a NumPy Generator, whatever backend is active (the graders
run under ``SCRATCHGEN_BACKEND=strict`` too); the library computes on the active backend, so each function
below runs it on NumPy's.
"""

import functools

import numpy as np

from scratchgen.backend import use_backend
from scratchgen.models import kmeans as library


def _on_numpy(function):
    @functools.wraps(function)
    def on_numpy(*args, **kwargs):
        with use_backend("numpy"):
            return function(*args, **kwargs)
    return on_numpy


squared_distances = _on_numpy(library.squared_distances)
kmeans_plus_plus = _on_numpy(library.kmeans_plus_plus)
lloyd = _on_numpy(library.lloyd)


def assign(x, centres):
    distances = squared_distances(x, centres)
    return distances.argmin(axis=1), float(distances.min(axis=1).sum())


def update(x, labels, centres):
    counts = np.bincount(labels, minlength=len(centres))
    sums = np.zeros_like(centres, dtype=np.float64)
    np.add.at(sums, labels, x)
    return np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres)


def kmeans(x, k, n_init=10, rng=None, max_iter=100):
    rng = np.random.default_rng(0) if rng is None else rng
    runs = [lloyd(x, kmeans_plus_plus(x, k, rng), max_iter=max_iter, tol=0) for _ in range(n_init)]
    centres, labels, history = min(runs, key=lambda run: run[2][-1])
    return centres, labels, history[-1], [run[2][-1] for run in runs]

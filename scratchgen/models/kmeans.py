"""k-means clustering: Lloyd's algorithm from k-means++ seeds, restarted and the best run kept.

The first model of the lecture's unsupervised part, and the only one here without a gradient: k-means
looks for k centres μ_1..μ_k that minimise the *inertia*, the sum of squared distances from each point to
its nearest centre,

    J(μ) = Σ_n min_j ‖x_n − μ_j‖².

**Lloyd's algorithm** (Lloyd 1957/1982) minimises J by alternating two steps, each of which can only
lower it: *assign* every point to its nearest centre (for fixed centres, the best assignment), then
*update* every centre to the mean of its points (for a fixed assignment, the mean minimises the sum of
squared distances). J never increases and there are finitely many assignments, so the algorithm stops,
at a fixed point where no point changes cluster: a local minimum, not necessarily the global one.

**k-means++ seeding** (Arthur & Vassilvitskii 2007) picks the starting centres so that they are spread
out: the first is a data point drawn uniformly, each next one a data point drawn with probability
proportional to D(x)², its squared distance to the nearest centre chosen so far. The expected inertia
of the seeds alone is then within a factor 8(ln k + 2) of the optimum. Because Lloyd only finds a local
minimum, :class:`KMeans` runs it ``n_init`` times from fresh seeds and keeps the run with the lowest
inertia, as scikit-learn's ``KMeans`` does (whose names it uses: ``cluster_centers_``, ``labels_``,
``inertia_``, ``n_iter_``). scikit-learn draws each seed greedily (the best of 2 + ln k candidates,
measured by the inertia it would give); we draw one candidate, the paper's algorithm, and the restarts
reach the same inertia on the MNIST digits (see ``demos/unsupervised.py``).

Distances come from ‖x − μ‖² = ‖x‖² − 2 x·μ + ‖μ‖²: one (N, D) × (D, k) matrix product instead of an
(N, k, D) array of differences. Everything runs on the active backend (:mod:`scratchgen.backend`: its
array module and random generator), on the raw arrays, since nothing here needs a gradient.

Builds on: :mod:`scratchgen.backend`. Lecture: clustering, before the density models; Bishop, *Pattern
Recognition and Machine Learning*, section 9.1.
"""

from __future__ import annotations

import math

import numpy

from scratchgen import backend
from scratchgen.backend import xp

__all__ = ["KMeans", "squared_distances", "kmeans_plus_plus", "lloyd"]


def squared_distances(x, centres):
    """‖x_n − μ_j‖² for every point and centre, by ‖x‖² − 2 x·μ + ‖μ‖².

    The expansion can come out slightly below zero by round-off when a point sits on a centre; it is
    clipped at 0.

    Args:
        x: (N, D) array of the active backend. centres: (k, D).

    Returns:
        (N, k) array.
    """
    distances = (x * x).sum(axis=1, keepdims=True) - 2 * (x @ centres.T) + (centres * centres).sum(axis=1)
    return xp.maximum(distances, 0)


def kmeans_plus_plus(x, k: int, rng=None):
    """k starting centres drawn by k-means++ (Arthur & Vassilvitskii 2007): spread out, at random.

    The first centre is a point drawn uniformly; each next one a point drawn with probability
    D(x)² / Σ D², D(x) being the distance from x to its nearest centre so far. A point already chosen has
    D = 0 and cannot be drawn again (unless every point coincides with a centre, when any will do).

    Args:
        x: (N, D) array of the active backend, N ≥ k. k: the number of centres.
        rng: a generator with ``random()`` (NumPy's or CuPy's); by default :func:`scratchgen.backend.rng`.

    Returns:
        (k, D) array: k rows of x.
    """
    rng = backend.rng() if rng is None else rng
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"kmeans_plus_plus: cannot choose {k} centres among {n} points")
    chosen = [_draw(xp.ones(n, dtype=x.dtype), rng)]
    nearest = squared_distances(x, x[chosen[0]][None])[:, 0]
    for _ in range(1, k):
        chosen.append(_draw(nearest, rng))
        nearest = xp.minimum(nearest, squared_distances(x, x[chosen[-1]][None])[:, 0])
    return x[xp.stack(chosen)]


def _draw(weights, rng):
    """An index i drawn with probability weights[i] / Σ weights (uniformly if every weight is 0)."""
    if not bool((weights > 0).any()):
        weights = xp.ones(len(weights), dtype=weights.dtype)
    return backend.categorical(weights, 1, rng)[0]


def lloyd(x, centres, max_iter: int = 300, tol: float = 1e-4):
    """Lloyd's algorithm from the given centres: assign, update, until nothing moves.

    Stops at a fixed point (no point changes cluster), or when the centres move less than ``tol`` times
    the data's mean variance per coordinate in total squared distance (scikit-learn's rule, which saves
    the last iterations that move a handful of points), or after ``max_iter`` updates.

    A cluster that loses all its points would have no mean; its centre jumps to the point farthest
    from its own centre, which lowers the inertia by that point's squared distance (scikit-learn does the
    same).

    Args:
        x: (N, D) array of the active backend. centres: (k, D) starting centres (not changed).
        max_iter: at most this many update steps. tol: see above; 0 runs to the fixed point.

    Returns:
        (centres (k, D), labels (N,), inertia_history): the final centres, each point's cluster and the
        inertia (a Python float) after each assignment step, the last being that of the returned
        labels and centres. The history never increases.
    """
    threshold = tol * float(x.var(axis=0).mean())
    clusters = xp.arange(len(centres))
    labels, history, shift = None, [], math.inf
    for step in range(max_iter + 1):
        # Assign: each point to its nearest centre.
        distances = squared_distances(x, centres)
        new_labels = distances.argmin(axis=1)
        history.append(float(distances.min(axis=1).sum(dtype=numpy.float64)))
        converged = labels is not None and (bool((new_labels == labels).all()) or shift <= threshold)
        labels = new_labels
        if converged or step == max_iter:
            break
        # Update: each centre to the mean of its points, as one (k, N) × (N, D) product with a one-hot matrix.
        one_hot = (labels[:, None] == clusters).astype(x.dtype)
        counts = one_hot.sum(axis=0)
        updated = (one_hot.T @ x) / xp.maximum(counts, 1)[:, None]
        if bool((counts == 0).any()):
            own = distances[xp.arange(len(x)), labels]  # each point's squared distance to its centre
            for j in backend.to_numpy(xp.flatnonzero(counts == 0)):
                farthest = own.argmax()
                updated[j], own[farthest] = x[farthest], 0  # 0: a second empty cluster takes another point
        shift = float(((updated - centres) ** 2).sum())
        centres = updated
    return centres, labels, history


class KMeans:
    """k-means by Lloyd's algorithm from k-means++ seeds, the best of ``n_init`` runs.

    Args:
        n_clusters: k. n_init: independent runs; the one with the lowest inertia is kept.
        max_iter, tol: each run's stopping rule (see :func:`lloyd`).
        seed: seeds the draws of the seeding, on its own generator; None draws from scratchgen's stream
            (:func:`scratchgen.backend.rng`, set by ``manual_seed``).

    Attributes (after ``fit``):
        cluster_centers_: (k, D) array of the active backend. labels_: (N,) cluster of each training point.
        inertia_: Σ_n ‖x_n − μ_{labels_n}‖² of the best run (a float). n_iter_: its number of updates.
        inertia_history_: the best run's inertia after each assignment step (non-increasing).
        run_inertias_: the final inertia of every run, in order.

    Example::

        model = KMeans(10, n_init=10, seed=0).fit(images.reshape(len(images), -1))
        model.inertia_ / len(images)          # mean squared distance of an image to its centre
    """

    def __init__(self, n_clusters: int = 8, n_init: int = 10, max_iter: int = 300, tol: float = 1e-4,
                 seed: int | None = None):
        for name, value in (("n_clusters", n_clusters), ("n_init", n_init), ("max_iter", max_iter)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"KMeans: {name} must be a positive integer, got {value!r}")
        if not (math.isfinite(tol) and tol >= 0):
            raise ValueError(f"KMeans: tol must be a finite number at least 0, got {tol!r}")
        self.n_clusters, self.n_init, self.max_iter, self.tol, self.seed = n_clusters, n_init, max_iter, tol, seed
        self.cluster_centers_ = self.labels_ = self.inertia_ = self.n_iter_ = None
        self.inertia_history_, self.run_inertias_ = None, []

    def fit(self, x) -> "KMeans":
        """Cluster the rows of x: (N, D), or (N, ...) such as images, flattened; host or device array.

        Raises:
            ValueError: fewer points than clusters, or values that are not finite.
        """
        x = _rows(x)
        if len(x) < self.n_clusters:
            raise ValueError(f"KMeans.fit: {len(x)} points cannot make {self.n_clusters} clusters")
        if not bool(xp.isfinite(x).all()):
            raise ValueError("KMeans.fit: the data holds NaN or infinite values")
        rng = backend.rng() if self.seed is None else backend.xp.random.default_rng(self.seed)
        self.run_inertias_, best = [], None
        for _ in range(self.n_init):
            centres, labels, history = lloyd(x, kmeans_plus_plus(x, self.n_clusters, rng), self.max_iter, self.tol)
            self.run_inertias_.append(history[-1])
            if best is None or history[-1] < best[2][-1]:
                best = centres, labels, history
        self.cluster_centers_, self.labels_, self.inertia_history_ = best
        self.inertia_, self.n_iter_ = self.inertia_history_[-1], len(self.inertia_history_) - 1
        return self

    def predict(self, x):
        """The nearest centre's index for each row of x (N, D) (or images, flattened): (N,) array."""
        if self.cluster_centers_ is None:
            raise RuntimeError("KMeans.predict: call fit first")
        return squared_distances(_rows(x, self.cluster_centers_.dtype), self.cluster_centers_).argmin(axis=1)

    def __repr__(self):
        return f"KMeans(n_clusters={self.n_clusters}, n_init={self.n_init}, max_iter={self.max_iter}, tol={self.tol})"


def _rows(x, dtype=None):
    """x on the active backend as (N, D) floating rows (integers, such as uint8 pixels, become float32)."""
    x = backend.asarray(x)
    if dtype is not None:
        x = x.astype(dtype, copy=False)
    elif not numpy.issubdtype(x.dtype, numpy.floating):
        x = x.astype(backend.DEFAULT_DTYPE)
    return x.reshape(len(x), -1)

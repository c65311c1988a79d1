"""Assignment 6: k-means, by Lloyd's algorithm from k-means++ seeds, the best of several runs.

Read ``coursework/06_kmeans/README.md`` first. Fill in the five gaps marked YOUR CODE HERE, then grade
your work from the repository's root with

    python -m pytest coursework/06_kmeans

Work on host NumPy arrays: x is (N, D), one point per row (an MNIST digit is a row of 784 pixels).
"""

import numpy as np


def squared_distances(x, centres):
    """‖x_n − μ_j‖² for every point n and centre j.

    Args:
        x: (N, D) points. centres: (k, D).

    Returns:
        (N, k) array, never negative.
    """
    # YOUR CODE HERE: one line by ‖x‖² − 2 x·μ + ‖μ‖² (a matrix product, no (N, k, D) array), then clip
    # the round-off below 0 with np.maximum.
    raise NotImplementedError("your code here: squared_distances")


def assign(x, centres):
    """Lloyd's assignment step: each point's nearest centre.

    Returns:
        (labels, inertia): labels (N,) ints in 0..k-1; inertia = Σ_n ‖x_n − μ_{labels_n}‖², a float.
    """
    # YOUR CODE HERE: two lines, with squared_distances.
    raise NotImplementedError("your code here: assign")


def update(x, labels, centres):
    """Lloyd's update step: each centre moves to the mean of the points assigned to it.

    Args:
        x: (N, D). labels: (N,) the cluster of each point. centres: (k, D) the current centres.

    Returns:
        (k, D) new centres. A cluster with no point keeps its current centre (its mean is undefined).
    """
    # YOUR CODE HERE: a few lines; a loop over the k clusters is fine.
    raise NotImplementedError("your code here: update")


def kmeans_plus_plus(x, k, rng):
    """k starting centres by k-means++ (Arthur & Vassilvitskii 2007).

    The first centre is a point drawn uniformly; each next one is a point drawn with probability
    D(x)² / Σ D², where D(x) is the distance from x to its nearest centre chosen so far.

    Args:
        x: (N, D) points. k: the number of centres. rng: a NumPy Generator (``np.random.default_rng(0)``).

    Returns:
        (k, D) array: k rows of x.
    """
    # YOUR CODE HERE: about 6 lines. rng.integers(n) draws the first index; rng.choice(n, p=weights) the
    # others, with weights that sum to 1.
    raise NotImplementedError("your code here: kmeans_plus_plus")


def kmeans(x, k, n_init=10, rng=None, max_iter=100):
    """k-means: n_init runs of Lloyd's algorithm from k-means++ seeds; the run of lowest inertia is kept.

    Each run alternates assign and update, starting from kmeans_plus_plus, until no label changes (or
    max_iter updates).

    Args:
        x: (N, D) points. k: clusters. n_init: runs. rng: a NumPy Generator; by default
            ``np.random.default_rng(0)``. max_iter: updates per run at most.

    Returns:
        (centres (k, D), labels (N,), inertia, run_inertias): the best run's centres, the labels and
        inertia of assign(x, centres), and the final inertia of every run, in order (a list of n_init
        floats).
    """
    rng = np.random.default_rng(0) if rng is None else rng
    # YOUR CODE HERE: about 12 lines.
    raise NotImplementedError("your code here: kmeans")

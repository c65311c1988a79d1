"""Learning without labels, before the deep generative models: k-means, PCA and 1-D density estimation.

The lecture's second path starts here. Three classic answers to "what structure does the data have?":

* **Clustering.** k-means (:mod:`scratchgen.models.kmeans`: Lloyd's algorithm from k-means++ seeds, the
  best of ``--n-init`` runs) on the MNIST digits, never shown a label. Its centres are images, and the
  labels it never saw judge it: cluster purity and normalised mutual information (NMI,
  :mod:`scratchgen.metrics`).
* **A linear code.** PCA (:class:`scratchgen.models.PCA`, the autoencoder's baseline): the digits in the
  plane of the first two components, coloured by class; the first components as images; and the test
  reconstruction error as the code grows, beside k-means', whose "code" is one of k centres.
* **Density estimation in 1-D.** A sample from a known mixture of three Gaussians, estimated three ways:
  a histogram, a Gaussian kernel density (bandwidth by Silverman's rule), and a mixture of Gaussians
  fitted by expectation-maximisation (Dempster, Laird & Rubin 1977; Bishop section 9.2), started from
  k-means of the sample, as Bishop suggests. The true density is drawn over all three. The 2-D version
  of this picture is what the density models draw: ``demos/made.py --dataset ring8`` (density.png,
  marginals.png) and ``demos/flow.py``.

    python demos/unsupervised.py                      # 10 clusters, 10 restarts, the embedded digits
    python demos/unsupervised.py --clusters 20 --n-init 3 --dataset fashion_mnist

Nothing here trains by gradient, so there are no epochs and no checkpoint: the command line is the shared
one of :mod:`scratchgen.experiment` without ``--epochs --batch-size --lr --resume --overwrite``. Writes into --out
(default runs/unsupervised):

* ``kmeans_centres.png``: the k centres as images, each titled by its most common label;
* ``kmeans_members.png``: eight training digits of each cluster, one row per cluster;
* ``pca_scatter.png``, ``pca_components.png`` (grey is 0), ``pca_reconstruction.png`` (test MSE per pixel
  against the number of components, with k-means' as a line);
* ``density_1d.png``: the histogram, the kernel density and the EM mixture over the true density;
* ``metrics.json`` with ``kmeans_inertia_per_image`` (the mean squared distance of a training image to
  its centre, pixels in [0, 1]), ``nmi`` and ``purity`` against the training labels (and ``test_nmi``,
  ``test_purity`` for the test digits assigned to the nearest centre), PCA's test errors, and each density
  estimate's mean test log-likelihood in nats.

The last line printed is the final metrics as JSON.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
from matplotlib.figure import Figure

from scratchgen import backend, experiment, metrics, plot
from scratchgen.data import load_mnist, to_float
from scratchgen.models import PCA, KMeans

# The 1-D mixture the density estimates are judged on: (weight, mean, standard deviation) per component.
TRUE_MIXTURE = ((0.3, -2.0, 0.5), (0.5, 1.0, 1.0), (0.2, 4.0, 0.4))
PCA_COMPONENTS = (1, 2, 5, 10, 20, 50, 100, 200)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", default="embedded", choices=("embedded", "mnist", "fashion_mnist"))
    parser.add_argument("--seed", type=experiment.non_negative_int, default=0, help="seed of every random choice")
    experiment.add_backend_flag(parser)
    parser.add_argument("--out", metavar="DIR", default=None, help="output folder (default: runs/unsupervised)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but the final JSON line")
    parser.add_argument("--clusters", type=experiment.positive_int, default=10, help="k of k-means")
    parser.add_argument("--n-init", type=experiment.positive_int, default=10,
                        help="k-means runs from fresh k-means++ seeds; the lowest inertia is kept")
    parser.add_argument("--limit", type=experiment.positive_int, default=None,
                        help="use only the first N training and test images")
    parser.add_argument("--density-samples", type=experiment.positive_int, default=1000,
                        help="points of the 1-D sample (as many again to test on)")
    parser.add_argument("--mixture-components", type=experiment.positive_int, default=3,
                        help="Gaussians of the mixture fitted by EM")
    parser.add_argument("--em-iterations", type=experiment.positive_int, default=200, help="at most this many")
    args = parser.parse_args(argv)
    args.resume = args.overwrite = False  # what experiment.Run asks of every demo: nothing to resume here
    return args


def say(args, text: str) -> None:
    if not args.quiet:
        print(text, flush=True)


# ------------------------------------------------------------------------------------------- k-means


def kmeans(args, run, train_x, train_y, test_x, test_y) -> dict:
    """Cluster the training digits; judge the clusters by the labels; draw centres and members."""
    began = time.perf_counter()
    model = KMeans(args.clusters, n_init=args.n_init, seed=args.seed).fit(train_x)
    seconds = time.perf_counter() - began
    labels, centres = backend.to_numpy(model.labels_), backend.to_numpy(model.cluster_centers_)
    test_labels = backend.to_numpy(model.predict(test_x))
    test_mse = float(((test_x - centres[test_labels]) ** 2).mean())  # a test image "coded" as its centre
    table = metrics.contingency_table(labels, train_y)  # rows: clusters, columns: digits
    found = {
        "kmeans_inertia_per_image": model.inertia_ / len(train_x),
        "kmeans_runs_inertia_per_image": [inertia / len(train_x) for inertia in model.run_inertias_],
        "kmeans_iterations": model.n_iter_, "kmeans_seconds": seconds, "kmeans_test_mse": test_mse,
        "nmi": metrics.normalized_mutual_info(labels, train_y), "purity": metrics.cluster_purity(labels, train_y),
        "test_nmi": metrics.normalized_mutual_info(test_labels, test_y),
        "test_purity": metrics.cluster_purity(test_labels, test_y),
    }
    say(args, f"k-means, k = {args.clusters}, best of {args.n_init} runs ({seconds:.1f} s): "
              f"{found['kmeans_inertia_per_image']:.2f} squared distance per image, NMI {found['nmi']:.3f}, "
              f"purity {found['purity']:.3f} (test: NMI {found['test_nmi']:.3f}, purity {found['test_purity']:.3f})")
    say(args, "digits (columns 0-9) in each cluster (rows):\n" + "\n".join(
        f"  cluster {i:2d}: " + " ".join(f"{n:4d}" for n in row) for i, row in enumerate(table)))

    majority = table.argmax(axis=1)
    order = np.argsort(majority, kind="stable")  # clusters sorted by their most common digit
    plot.image_grid(centres[order], run.path("kmeans_centres.png"), nrow=min(args.clusters, 10),
                    title="k-means centres; most common label: " + " ".join(str(m) for m in majority[order]))
    rows = [train_x[labels == j][:8] for j in order]
    members = np.concatenate([np.pad(r, ((0, 8 - len(r)), (0, 0))) for r in rows])  # black fills a short row
    plot.image_grid(members, run.path("kmeans_members.png"), nrow=8,
                    title="eight training digits per cluster, one cluster per row")
    return found


# ----------------------------------------------------------------------------------------------- PCA


def pca(args, run, train_x, train_y, test_x, kmeans_mse: float) -> dict:
    """One SVD; the scatter, the components, and the reconstruction error of the first k components."""
    counts = [k for k in PCA_COMPONENTS if k <= min(train_x.shape)]
    model = PCA(counts[-1]).fit(train_x)
    codes = model.transform(test_x)
    errors = []
    for k in counts:  # the first k components of the largest fit are the k-component PCA
        reconstructed = codes[:, :k] @ model.components_[:k] + model.mean_
        errors.append(float(((reconstructed - test_x) ** 2).mean()))
    say(args, "PCA test MSE per pixel: " + ", ".join(f"{k} components {e:.4f}" for k, e in zip(counts, errors)))

    plot.latent_scatter(model.transform(train_x)[:, :2], train_y, run.path("pca_scatter.png"),
                        title="the training digits on the first two principal components")
    first = model.components_[:16]
    plot.image_grid(0.5 + first / (2 * np.abs(first).max(axis=1, keepdims=True)), run.path("pca_components.png"),
                    nrow=8, title="the first 16 principal components (grey is 0)")

    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    ax.plot(counts, errors, marker="o", label="PCA, first k components")
    ax.axhline(kmeans_mse, color="C1", linestyle="--", label=f"k-means: the nearest of {args.clusters} centres")
    ax.set(xscale="log", xlabel="number of components k", ylabel="test MSE per pixel")
    ax.grid(alpha=0.3)
    ax.legend()
    plot.save_figure(fig, run.path("pca_reconstruction.png"), "reconstruction error of the test digits")
    return {"pca_components": counts, "pca_test_mse": errors,
            "pca_explained_variance_2": float(model.explained_variance_ratio_[:2].sum())}


# ------------------------------------------------------------------------------------- 1-D densities


def mixture_density(x, weights, means, stds) -> np.ndarray:
    """p(x) = Σ_j π_j N(x; μ_j, σ_j²) at each point of x (any shape)."""
    x = np.asarray(x, dtype=np.float64)[..., None]
    return (weights * np.exp(-0.5 * ((x - means) / stds) ** 2) / (stds * math.sqrt(2 * math.pi))).sum(axis=-1)


def sample_true_mixture(n: int, rng) -> np.ndarray:
    weights, means, stds = (np.array(v) for v in zip(*TRUE_MIXTURE))
    component = rng.choice(len(weights), size=n, p=weights)
    return means[component] + stds[component] * rng.standard_normal(n)


def kernel_density(train, bandwidth: float):
    """The Gaussian kernel density (1/N) Σ_n N(x; x_n, h²), as a function of x."""
    n = len(train)
    return lambda x: mixture_density(x, np.full(n, 1 / n), train, np.full(n, bandwidth))


def fit_mixture_by_em(x, k: int, iterations: int, seed: int, tol: float = 1e-6):
    """A 1-D mixture of k Gaussians fitted to x by EM, started from k-means of x.

    E-step: responsibilities r_nj = π_j N(x_n; μ_j, σ_j²) / p(x_n). M-step: π_j = Σ_n r_nj / N and the
    r-weighted mean and variance of x for μ_j and σ_j². Each iteration cannot lower the log-likelihood;
    it stops when the mean log-likelihood rises less than ``tol``. Each σ_j² is kept above 1e-6 of the
    data's variance: a Gaussian that shrinks onto one point would have an unbounded likelihood.

    Returns:
        (weights, means, stds, mean log-likelihood after each iteration).
    """
    start = KMeans(k, n_init=3, seed=seed).fit(x[:, None])
    assigned = backend.to_numpy(start.labels_)
    floor = 1e-6 * x.var()
    weights = np.bincount(assigned, minlength=k) / len(x)
    means = backend.to_numpy(start.cluster_centers_)[:, 0].astype(np.float64)
    stds = np.sqrt(np.array([max(x[assigned == j].var(), floor) for j in range(k)]))
    history = []
    for _ in range(iterations):
        per_component = weights * np.exp(-0.5 * ((x[:, None] - means) / stds) ** 2) / (stds * math.sqrt(2 * math.pi))
        joint = per_component.sum(axis=1, keepdims=True)
        history.append(float(np.log(joint).mean()))
        if len(history) > 1 and history[-1] - history[-2] < tol:
            break
        r = per_component / joint  # (N, k) responsibilities
        total = r.sum(axis=0)
        weights, means = total / len(x), (r * x[:, None]).sum(axis=0) / total
        stds = np.sqrt(np.maximum((r * (x[:, None] - means) ** 2).sum(axis=0) / total, floor))
    return weights, means, stds, history


def densities(args, run) -> dict:
    """Histogram, kernel density and EM mixture of a 1-D sample, drawn over the true density."""
    rng = np.random.default_rng(args.seed)
    train, test = sample_true_mixture(args.density_samples, rng), sample_true_mixture(args.density_samples, rng)
    true = lambda x: mixture_density(x, *(np.array(v) for v in zip(*TRUE_MIXTURE)))  # noqa: E731
    # Silverman's rule of thumb: h = 0.9 min(σ, IQR / 1.34) N^(-1/5), the best h for a Gaussian, made safer
    # for skewed or multimodal data by the interquartile range.
    spread = min(train.std(), np.subtract(*np.percentile(train, [75, 25])) / 1.34)
    bandwidth = 0.9 * spread * len(train) ** -0.2
    kde = kernel_density(train, bandwidth)
    weights, means, stds, history = fit_mixture_by_em(train, args.mixture_components, args.em_iterations, args.seed)
    found = {
        "true_test_log_likelihood": float(np.log(true(test)).mean()),
        "kde_test_log_likelihood": float(np.log(kde(test)).mean()), "kde_bandwidth": float(bandwidth),
        "em_test_log_likelihood": float(np.log(mixture_density(test, weights, means, stds)).mean()),
        "em_train_log_likelihood": history, "em_iterations": len(history),
    }
    # No number for the histogram: a test point in an empty bin has density 0, log-likelihood −∞.
    say(args, f"1-D density, mean test log-likelihood (nats): true {found['true_test_log_likelihood']:.3f}, "
              f"kernel density {found['kde_test_log_likelihood']:.3f} (h = {bandwidth:.3f}), "
              f"EM mixture {found['em_test_log_likelihood']:.3f} ({len(history)} iterations)")

    grid = np.linspace(train.min() - 1, train.max() + 1, 500)
    fig = Figure(figsize=(8, 4))
    ax = fig.add_subplot()
    ax.hist(train, bins="auto", density=True, color="0.85", label=f"histogram of {len(train)} points")
    ax.plot(grid, true(grid), "k", linewidth=2, label="true density")
    ax.plot(grid, kde(grid), label=f"Gaussian kernel density, h = {bandwidth:.2f}")
    ax.plot(grid, mixture_density(grid, weights, means, stds), "--",
            label=f"mixture of {args.mixture_components} Gaussians by EM")
    ax.plot(train, np.full_like(train, -0.01), "|", color="0.4", markersize=4)
    ax.set(xlabel="x", ylabel="density")
    ax.legend(fontsize="small")
    plot.save_figure(fig, run.path("density_1d.png"), "density estimation in one dimension")
    return found


# ---------------------------------------------------------------------------------------------- main


def main(argv=None) -> dict:
    args = parse_args(argv)
    run = experiment.Run(args, name="unsupervised")
    (train_images, train_y), (test_images, test_y) = (load_mnist(args.dataset, split) for split in ("train", "test"))
    train_x = to_float(train_images[: args.limit]).reshape(-1, 784)
    test_x = to_float(test_images[: args.limit]).reshape(-1, 784)
    train_y, test_y = train_y[: args.limit], test_y[: args.limit]

    final = kmeans(args, run, train_x, train_y, test_x, test_y)
    final.update(pca(args, run, train_x, train_y, test_x, final["kmeans_test_mse"]))
    final.update(densities(args, run))
    say(args, "For density estimation in 2-D, the same pictures for a learned model: python demos/made.py "
              "--dataset ring8 writes density.png (true beside learned) and marginals.png (its 1-D marginals "
              "over a histogram); demos/flow.py draws them for a normalising flow.")
    final["wall_time_s"] = run.elapsed
    return run.finish(**final)


if __name__ == "__main__":
    main()

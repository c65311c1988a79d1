"""Toy distributions in the plane, for watching density models and GANs learn.

Two-dimensional data can be drawn whole: the samples, the learned density on a grid, and beside it the
true density. These four are the standard ones of the generative-modelling literature:

* :func:`ring8`: 8 Gaussians evenly spaced on a circle, the mode-collapse test of Metz et al.,
  "Unrolled Generative Adversarial Networks" (2016);
* :func:`grid25`: 25 Gaussians on a 5 x 5 grid, as in Dumoulin et al., "Adversarially Learned
  Inference" (2016) and Lin et al., "PacGAN" (2018);
* :func:`two_moons` and :func:`swiss_roll`: two curved manifolds with noise (as in scikit-learn's
  ``make_moons`` and ``make_swiss_roll``), used for normalising flows and diffusion models.

The two mixtures are also :class:`GaussianMixture2D` objects (:func:`ring8_mixture`,
:func:`grid25_mixture`) with their centres, spread, exact log-density and nearest-mode assignment,
which GAN metrics need ("how many modes are covered, what fraction of samples lies within 3 std of
a mode"). Everything here is host NumPy: samples are float32 arrays ``(n, 2)``.

Randomness: every sampler takes ``rng``, an int seed or a ``numpy.random.Generator``; with None it
seeds itself from scratchgen's generator, so :func:`scratchgen.manual_seed` makes it reproducible.
"""

from __future__ import annotations

import math

import numpy

from scratchgen import backend

__all__ = ["GaussianMixture2D", "ring8", "ring8_mixture", "grid25", "grid25_mixture", "two_moons", "swiss_roll",
           "TOYS"]


class GaussianMixture2D:
    """A mixture of isotropic Gaussians in the plane: p(x) = sum_k w_k N(x; mu_k, std^2 I).

    Args:
        means: (K, 2) the mode centres mu_k.
        std: the standard deviation of every component along each axis.
        weights: (K,) mixing weights w_k summing to 1; equal by default.

    Attributes:
        means: (K, 2) float64. std: float. weights: (K,) float64.
    """

    def __init__(self, means, std: float, weights=None):
        self.means = numpy.asarray(means, dtype=numpy.float64)
        if self.means.ndim != 2 or self.means.shape[1] != 2:
            raise ValueError(f"GaussianMixture2D: means must have shape (K, 2), got {self.means.shape}")
        if std <= 0:
            raise ValueError(f"GaussianMixture2D: std must be positive, got {std}")
        self.std = float(std)
        k = len(self.means)
        self.weights = numpy.full(k, 1.0 / k) if weights is None else numpy.asarray(weights, dtype=numpy.float64)
        if self.weights.shape != (k,) or not math.isclose(self.weights.sum(), 1.0) or (self.weights < 0).any():
            raise ValueError(f"GaussianMixture2D: weights must be {k} non-negative numbers summing to 1")

    def __len__(self) -> int:
        return len(self.means)

    def __repr__(self) -> str:
        return f"GaussianMixture2D({len(self)} modes, std={self.std})"

    def sample(self, n: int, rng=None, return_labels: bool = False):
        """Draw ``n`` points: pick a mode k with probability w_k, then add N(0, std^2 I) to mu_k.

        Args:
            n: number of points.
            rng: int seed, ``numpy.random.Generator``, or None (see the module docstring).
            return_labels: also return which mode each point came from.

        Returns:
            points: (n, 2) float32; and, if asked, labels: (n,) int64.
        """
        rng = _generator(rng)
        labels = rng.choice(len(self), size=n, p=self.weights)
        points = self.means[labels] + self.std * rng.standard_normal((n, 2))
        points = points.astype(numpy.float32)
        return (points, labels.astype(numpy.int64)) if return_labels else points

    def log_prob(self, points) -> numpy.ndarray:
        """The true log-density log p(x) of each point, in float64.

        log p(x) = logsumexp_k [log w_k - |x - mu_k|^2 / (2 std^2)] - log(2 pi std^2).

        Args:
            points: (n, 2).

        Returns:
            (n,) float64.
        """
        points = numpy.asarray(points, dtype=numpy.float64)
        squared = ((points[:, None, :] - self.means[None, :, :]) ** 2).sum(axis=-1)  # (n, K)
        with numpy.errstate(divide="ignore"):  # a zero weight is log 0 = -inf, which is right
            logits = numpy.log(self.weights) - squared / (2 * self.std**2)
        top = logits.max(axis=1, keepdims=True)
        log_sum = top[:, 0] + numpy.log(numpy.exp(logits - top).sum(axis=1))
        return log_sum - math.log(2 * math.pi * self.std**2)

    def nearest_mode(self, points):
        """For each point, the closest mode centre and the distance to it.

        Args:
            points: (n, 2).

        Returns:
            labels: (n,) int64 index of the nearest mean; distances: (n,) float64 Euclidean distance.
            A point is usually counted as "of mode k" when its distance is below 3 std.
        """
        points = numpy.asarray(points, dtype=numpy.float64)
        distances = numpy.sqrt(((points[:, None, :] - self.means[None, :, :]) ** 2).sum(axis=-1))
        labels = distances.argmin(axis=1)
        return labels.astype(numpy.int64), distances[numpy.arange(len(points)), labels]


def ring8_mixture(radius: float = 1.0, std: float = 0.01) -> GaussianMixture2D:
    """8 equally weighted Gaussians with centres (r cos(2 pi k/8), r sin(2 pi k/8)), k = 0..7.

    Args:
        radius: radius r of the circle of centres.
        std: standard deviation of each Gaussian.
    """
    angles = 2 * numpy.pi * numpy.arange(8) / 8
    return GaussianMixture2D(radius * numpy.stack([numpy.cos(angles), numpy.sin(angles)], axis=1), std)


def ring8(n: int, radius: float = 1.0, std: float = 0.01, rng=None) -> numpy.ndarray:
    """``n`` points from :func:`ring8_mixture` (radius, std): (n, 2) float32."""
    return ring8_mixture(radius, std).sample(n, rng)


def grid25_mixture(std: float = 0.05) -> GaussianMixture2D:
    """25 equally weighted Gaussians centred on the grid {-4, -2, 0, 2, 4}^2, in row-major order.

    Args:
        std: standard deviation of each Gaussian.
    """
    xs, ys = numpy.meshgrid(numpy.arange(-4.0, 5.0, 2.0), numpy.arange(-4.0, 5.0, 2.0), indexing="ij")
    return GaussianMixture2D(numpy.stack([xs.ravel(), ys.ravel()], axis=1), std)


def grid25(n: int, std: float = 0.05, rng=None) -> numpy.ndarray:
    """``n`` points from :func:`grid25_mixture` (std): (n, 2) float32."""
    return grid25_mixture(std).sample(n, rng)


def two_moons(n: int, noise: float = 0.05, rng=None) -> numpy.ndarray:
    """Two interleaved half circles of radius 1, with Gaussian noise, centred on the origin.

    Each point picks a moon with probability 1/2 and an angle t uniform in [0, pi]; the upper moon is
    (cos t, sin t), the lower (1 - cos t, 1/2 - sin t), both then shifted by (-1/2, -1/4) so that the
    data are centred, and N(0, noise^2 I) is added.

    Args:
        n: number of points.
        noise: standard deviation of the added Gaussian noise.
        rng: int seed, ``numpy.random.Generator``, or None.

    Returns:
        (n, 2) float32.
    """
    rng = _generator(rng)
    t = rng.uniform(0.0, numpy.pi, size=n)
    lower = rng.random(n) < 0.5
    x = numpy.where(lower, 1.0 - numpy.cos(t), numpy.cos(t)) - 0.5
    y = numpy.where(lower, 0.5 - numpy.sin(t), numpy.sin(t)) - 0.25
    points = numpy.stack([x, y], axis=1) + noise * rng.standard_normal((n, 2))
    return points.astype(numpy.float32)


def swiss_roll(n: int, noise: float = 0.05, rng=None) -> numpy.ndarray:
    """A planar spiral: t uniform in [1.5 pi, 4.5 pi], point (t cos t, t sin t) / 5, plus noise.

    The division by 5 brings the roll into roughly [-2.8, 2.8]^2, a scale at which standard-normal
    initialised models start near the data.

    Args:
        n: number of points.
        noise: standard deviation of the Gaussian noise added after scaling.
        rng: int seed, ``numpy.random.Generator``, or None.

    Returns:
        (n, 2) float32.
    """
    rng = _generator(rng)
    t = 1.5 * numpy.pi * (1 + 2 * rng.random(n))
    points = numpy.stack([t * numpy.cos(t), t * numpy.sin(t)], axis=1) / 5
    return (points + noise * rng.standard_normal((n, 2))).astype(numpy.float32)


#: The toys by name, as the demos offer them: (sampler, its exact mixture, or None where there is no
#: closed form: the moons and the roll).
TOYS = {
    "ring8": (ring8, ring8_mixture()),
    "grid25": (grid25, grid25_mixture()),
    "two_moons": (two_moons, None),
    "swiss_roll": (swiss_roll, None),
}


def _generator(rng) -> numpy.random.Generator:
    """A host generator from a seed or Generator; with None, seeded from scratchgen's own generator."""
    if rng is None:
        rng = int(backend.to_numpy(backend.rng().integers(0, 2**31 - 1, size=1))[0])
    return numpy.random.default_rng(rng)

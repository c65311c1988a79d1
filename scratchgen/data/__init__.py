"""Data for the models: MNIST-style images, toy 2-D distributions, and a minibatch loader.

* :mod:`~scratchgen.data.mnist`: :func:`load_mnist` (the embedded 5,000-digit subset, or full MNIST /
  Fashion-MNIST downloaded on first use) and the pixel forms :func:`to_float`, :func:`binarize`,
  :func:`binarize_stochastic` (and :func:`bernoulli_pixels`, the demos' choice between the last two);
* :mod:`~scratchgen.data.idx`: the IDX file format those datasets come in;
* :mod:`~scratchgen.data.download`: the checked, atomic download cache;
* :mod:`~scratchgen.data.toy`: 8 Gaussians on a ring, 25 on a grid, two moons, a swiss roll;
* :mod:`~scratchgen.data.loader`: :class:`DataLoader`, shuffled reproducibly and resumable.

Everything here hands out host NumPy arrays, except the DataLoader, whose batches are Tensors on the
active backend. The embedded subset's licence and provenance are in ``README.md`` in this folder.
"""

from scratchgen.data.download import ChecksumError, DownloadError, default_cache_dir, fetch
from scratchgen.data.idx import IDXError, read_idx, write_idx
from scratchgen.data.loader import DataLoader
from scratchgen.data.mnist import (
    BINARIZATIONS, FASHION_MNIST_CLASSES, bernoulli_pixels, binarize, binarize_stochastic, load_mnist, scored_pixels,
    to_float,
)
from scratchgen.data.toy import (
    TOYS, GaussianMixture2D, grid25, grid25_mixture, ring8, ring8_mixture, swiss_roll, two_moons,
)

__all__ = [
    "load_mnist", "to_float", "binarize", "binarize_stochastic", "bernoulli_pixels", "scored_pixels",
    "BINARIZATIONS", "FASHION_MNIST_CLASSES",
    "read_idx", "write_idx", "IDXError", "fetch", "default_cache_dir", "DownloadError", "ChecksumError",
    "GaussianMixture2D", "ring8", "ring8_mixture", "grid25", "grid25_mixture", "two_moons", "swiss_roll", "TOYS",
    "DataLoader",
]

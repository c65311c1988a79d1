"""Yardsticks for an autoencoder: PCA with the same code size, and a linear probe of the codes.

An autoencoder's numbers mean little alone. Two comparisons give them weight:

* **Reconstruction.** Principal component analysis is the best *linear* code of k numbers under
  squared error (Pearson 1901; Hotelling 1933), and a linear autoencoder trained on squared error learns
  its subspace (Baldi & Hornik 1989). :class:`PCA` computes it exactly, by a singular value
  decomposition on the host; whatever an autoencoder gains over it is what its non-linearity buys.
  :func:`reconstruction_errors` scores both kinds of reconstruction in the same way.
* **Features.** A code that has kept what matters about a digit should tell digits apart. The
  *linear probe* (:func:`linear_probe_accuracy`) trains a logistic regression on the codes of the
  training images and reports its accuracy on the test images' codes; run on PCA codes it gives the
  baseline. The probe is itself a scratchgen model: one ``nn.Linear`` trained by Adam on cross-entropy.

PCA and the metrics work on host NumPy arrays (they are evaluation, not training); the probe runs on
the active backend.
"""

from __future__ import annotations

import numpy

from scratchgen import nn, no_grad, optim
from scratchgen.data import DataLoader
from scratchgen.train import check_finite

__all__ = ["PCA", "reconstruction_errors", "linear_probe_accuracy"]


class PCA:
    """Principal component analysis by SVD, with scikit-learn's names (``fit``, ``transform``,
    ``inverse_transform``, ``components_``, ``mean_``).

    With the centred data X - μ = U·S·Vᵀ, the first k rows of Vᵀ are the directions of largest variance;
    the code of x is z = (x - μ)·V_kᵀ (k numbers) and its reconstruction x̂ = z·V_k + μ, the closest point
    to x in the k-dimensional affine subspace.

    Args:
        n_components: k, the size of the code.

    Attributes (after ``fit``):
        mean_: (D,) the mean of the training data. components_: (k, D) orthonormal directions.
        explained_variance_ratio_: (k,) the share of the total variance along each direction.
    """

    def __init__(self, n_components: int):
        if not isinstance(n_components, int) or n_components < 1:
            raise ValueError(f"PCA: n_components must be a positive integer, got {n_components!r}")
        self.n_components = n_components
        self.mean_ = self.components_ = self.explained_variance_ratio_ = None

    def fit(self, x) -> "PCA":
        """Find the mean and the k principal directions of x (N, D), or images (N, ...) flattened.

        Raises:
            ValueError: k is more than min(N, D).
        """
        x = _rows(x)
        if self.n_components > min(x.shape):
            raise ValueError(f"PCA.fit: {self.n_components} components asked of data of shape {x.shape}; "
                             f"at most {min(x.shape)}")
        self.mean_ = x.mean(axis=0)
        _, singular_values, vt = numpy.linalg.svd(x - self.mean_, full_matrices=False)
        self.components_ = vt[: self.n_components]
        variances = singular_values**2
        self.explained_variance_ratio_ = variances[: self.n_components] / variances.sum()
        return self

    def transform(self, x) -> numpy.ndarray:
        """Codes (N, k) of x (N, D) (or images, flattened)."""
        self._check_fitted("transform")
        return (_rows(x) - self.mean_) @ self.components_.T

    def inverse_transform(self, z) -> numpy.ndarray:
        """Reconstructions (N, D) from codes z (N, k)."""
        self._check_fitted("inverse_transform")
        return numpy.asarray(z, dtype=self.components_.dtype) @ self.components_ + self.mean_

    def _check_fitted(self, where: str) -> None:
        if self.components_ is None:
            raise RuntimeError(f"PCA.{where}: call fit first")


def _rows(x) -> numpy.ndarray:
    """A host array as (N, D) float64 rows: SVD and the metrics are computed in double precision."""
    x = numpy.asarray(x, dtype=numpy.float64)
    return x.reshape(len(x), -1)


def reconstruction_errors(reconstructed, originals, eps: float = 1e-7) -> dict:
    """Per-pixel binary cross-entropy and squared error of reconstructions, averaged over everything.

    MSE is taken of the reconstruction as given (PCA's may leave [0, 1] slightly); for BCE it is first
    clipped to [eps, 1 - eps], since log 0 is -∞:

        bce = mean[-x·log x̂ - (1-x)·log(1-x̂)],   mse = mean[(x̂ - x)²]

    Args:
        reconstructed: (N, ...) host array, grey levels x̂ (σ of a decoder's logits, or PCA's output).
        originals: the same shape, grey levels x in [0, 1].

    Returns:
        {"bce": float, "mse": float}.
    """
    x_hat, x = _rows(reconstructed), _rows(originals)
    if x_hat.shape != x.shape:
        raise ValueError(f"reconstruction_errors: reconstructions {x_hat.shape} and originals {x.shape} differ")
    clipped = numpy.clip(x_hat, eps, 1 - eps)
    bce = -(x * numpy.log(clipped) + (1 - x) * numpy.log1p(-clipped)).mean()
    return {"bce": float(bce), "mse": float(((x_hat - x) ** 2).mean())}


def linear_probe_accuracy(train_codes, train_labels, test_codes, test_labels, classes: int = 10,
                          epochs: int = 30, batch_size: int = 128, lr: float = 1e-2, seed: int = 0) -> float:
    """Test accuracy of a logistic regression trained on codes: how linearly readable the classes are.

    The codes are standardised with the training codes' mean and standard deviation (so the same
    learning rate suits any code's scale), then ``nn.Linear(k, classes)`` is trained by Adam on the
    cross-entropy of the training labels.

    Args:
        train_codes: (N, k) host array. train_labels: (N,) integers in [0, classes).
        test_codes: (M, k). test_labels: (M,).
        epochs, batch_size, lr: the training schedule. seed: the order of the minibatches.

    Returns:
        The share of test codes whose most probable class is the label.

    Raises:
        scratchgen.train.Diverged: a step's loss is NaN or infinite (codes that are not finite, say).
    """
    train, test = _rows(train_codes), _rows(test_codes)
    if train.shape[1] != test.shape[1]:
        raise ValueError(f"linear_probe_accuracy: train codes {train.shape} and test codes {test.shape} "
                         f"differ in size")
    mean, std = train.mean(axis=0), train.std(axis=0) + 1e-8
    standardise = lambda codes: ((codes - mean) / std).astype(numpy.float32)  # noqa: E731

    probe = nn.Linear(train.shape[1], classes)
    opt = optim.Adam(probe.parameters(), lr=lr)
    loader = DataLoader(standardise(train), numpy.asarray(train_labels), batch_size=batch_size, shuffle=True,
                        seed=seed)
    for epoch in range(1, epochs + 1):
        for step, (z, y) in enumerate(loader, start=1):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(probe(z), y)
            check_finite(loss, epoch=epoch, step=step, name="the linear probe's loss")
            loss.backward()
            opt.step()

    with no_grad():
        (z_test,) = next(iter(DataLoader(standardise(test), batch_size=len(test))))
        predicted = probe(z_test).argmax(axis=1).numpy()
    return float((predicted == numpy.asarray(test_labels)).mean())

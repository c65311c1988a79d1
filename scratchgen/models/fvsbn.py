"""The two baselines of the fully visible models: independent pixels, and logistic regression on the past.

Every model of the lecture is compared in the same unit, the test negative log-likelihood in nats per
image (lower is better), or that divided by D·ln 2, bits per dimension (:func:`bits_per_dim`); these
two set the scale.

* :class:`IndependentBernoulli`: p(x) = Π_d θ_d^x_d (1-θ_d)^(1-x_d), each pixel on with its own
  probability and no pixel knowing about another. The maximum-likelihood θ_d is the pixel's frequency in
  the training set, smoothed (add α to each count, Laplace's rule) so that no test pixel has probability
  0. About 211 nats on the embedded MNIST subset: the cost of ignoring all structure.
* :class:`FVSBN`, the fully visible sigmoid belief net (Neal 1992; Frey 1998, "Graphical Models for
  Machine Learning and Digital Communication"): each pixel is a logistic regression on the pixels before it,

      p(x_d = 1 | x_<d) = σ(b_d + Σ_{j<d} W_dj x_j),

  the simplest autoregressive model. W is strictly lower triangular (in the ordering), so it is exactly a
  :class:`~scratchgen.nn.MaskedLinear` with that mask, and exactly a :class:`~scratchgen.models.MADE`
  with no hidden layer, whose output mask [m(d) > m(j)] is the same triangle. We build it that way.
"""

from __future__ import annotations

import math

import numpy

from scratchgen import backend, nn
from scratchgen.nn import functional as F
from scratchgen.ops.elementwise import logistic
from scratchgen.tensor import Tensor
from scratchgen.models.made import MADE

__all__ = ["IndependentBernoulli", "FVSBN", "bits_per_dim"]


class IndependentBernoulli(nn.Module):
    """Independent pixels: logit θ_d per variable, log p(x) = -Σ_d BCE(logit_d, x_d).

    Args:
        in_features: D.

    Attributes:
        logits: (D,) Parameter, log(θ_d / (1-θ_d)); zero (θ = ½) until :meth:`fit` or training.
    """

    def __init__(self, in_features: int):
        super().__init__()
        self.in_features = in_features
        self.logits = nn.Parameter(backend.xp.zeros((in_features,), dtype=backend.DEFAULT_DTYPE))

    def fit(self, x, smoothing: float = 1.0) -> "IndependentBernoulli":
        """Set θ to the maximum-likelihood estimate with add-α smoothing: θ_d = (Σ_n x_nd + α) / (N + 2α).

        Args:
            x: (N, D) binary training data (array or Tensor).
            smoothing: α ≥ 0 (α = 1 is Laplace's rule of succession).
        """
        data = backend.to_numpy(getattr(x, "data", x)).astype(numpy.float64)
        if data.ndim != 2 or data.shape[1] != self.in_features:
            raise ValueError(f"IndependentBernoulli.fit: expected data (N, {self.in_features}), got {data.shape}")
        ones = data.sum(axis=0)
        theta = (ones + smoothing) / (len(data) + 2 * smoothing)
        with numpy.errstate(divide="ignore"):  # θ of 0 or 1 without smoothing: logits of ∓inf are right
            self.logits.data = backend.asarray(numpy.log(theta) - numpy.log1p(-theta), dtype=self.logits.dtype)
        return self

    def forward(self, x: Tensor) -> Tensor:
        """The logits, broadcast to x's shape (N, D): the same for every example."""
        return self.logits * backend.xp.ones(x.shape, dtype=self.logits.dtype)

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) in nats, (N,)."""
        return -F.binary_cross_entropy_with_logits(self(x), x, reduction="none").sum(axis=1)

    def sample(self, n: int = 1) -> Tensor:
        """(n, D) independent draws."""
        theta = logistic(self.logits.data)
        return Tensor((backend.rng().random((n, self.in_features), dtype=theta.dtype) < theta).astype(theta.dtype))

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}"


class FVSBN(MADE):
    """The fully visible sigmoid belief net: one MaskedLinear (D, D) with a strictly lower-triangular mask
    (in the ordering), read as the logits of p(x_d = 1 | x_<d).

    It inherits from MADE (with no hidden layer) its exact ``log_prob`` and ancestral ``sample``.

    Args:
        in_features: D.
        ordering: None (0..D-1), "random", or a permutation, as :class:`MADE`.
        seed: seed of a "random" ordering.
    """

    def __init__(self, in_features: int, ordering=None, seed: int = 0):
        super().__init__(in_features, hidden_sizes=(), ordering=ordering, seed=seed)

    def fit_marginals(self, x, smoothing: float = 1.0) -> "FVSBN":
        """Start from the independent model: W = 0 and b_d = the smoothed logit of pixel d's frequency in
        ``x`` (see :meth:`IndependentBernoulli.fit`). Training then only has to learn the dependencies,
        which takes a fraction of the epochs a random start needs."""
        linear = self.layers[0]
        linear.weight.data[...] = 0
        marginals = IndependentBernoulli(self.in_features).fit(x, smoothing)
        linear.bias.data = marginals.logits.data.astype(linear.bias.dtype)
        return self

    @property
    def weight(self):
        """W (D, D): W[d, j] is the weight of pixel j in pixel d's regression (zero unless j is before d)."""
        return self.layers[0].weight * self.layers[0].mask

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, parameters={int(self.layers[0].mask.data.sum()) + self.in_features}"


def bits_per_dim(nll_nats: float, dims: int) -> float:
    """A negative log-likelihood in nats per example as bits per dimension: nll / (D · ln 2)."""
    return nll_nats / (dims * math.log(2))

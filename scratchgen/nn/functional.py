"""Functional forms of the layers, and the losses, as PyTorch's ``torch.nn.functional`` names them.

Every function here composes ops from :mod:`scratchgen.ops`; none writes a backward of its own. The
losses work on logits, in forms that stay finite for logits of any size:

* log σ(x) = -softplus(-x), and softplus(x) = log(1 + eˣ) is computed as ``logaddexp(x, 0)``;
* log softmax(x)_i = x_i - logsumexp(x), computed after subtracting max(x).
"""

from __future__ import annotations

from scratchgen import backend, ops
from scratchgen.tensor import Tensor

__all__ = [
    "linear", "relu", "leaky_relu", "sigmoid", "tanh", "softplus", "log_softmax", "softmax", "dropout",
    "binary_cross_entropy_with_logits", "cross_entropy", "mse_loss", "gaussian_kl",
]


# ---------------------------------------------------------------------------------------- layers


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x·Wᵀ + b.

    Args:
        x: (..., in_features). weight: (out_features, in_features). bias: (out_features,) or None.

    Returns:
        (..., out_features).
    """
    if bias is None:
        return ops.Linear.apply(x, weight)
    return ops.Linear.apply(x, weight, bias)


def relu(x: Tensor) -> Tensor:
    return ops.ReLU.apply(x)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    return ops.LeakyReLU.apply(x, negative_slope=negative_slope)


def sigmoid(x: Tensor) -> Tensor:
    return ops.Sigmoid.apply(x)


def tanh(x: Tensor) -> Tensor:
    return ops.Tanh.apply(x)


def softplus(x: Tensor) -> Tensor:
    return ops.Softplus.apply(x)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    return ops.LogSoftmax.apply(x, axis=axis)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return log_softmax(x, axis).exp()


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) ("inverted dropout"), so that
    nothing changes at evaluation time, when the input passes through untouched."""
    if not 0 <= p < 1:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if not training or p == 0:
        return x
    keep = backend.rng().random(x.shape, dtype=x.dtype) >= p
    return x * Tensor(keep.astype(x.dtype) / x.dtype.type(1 - p))


# ---------------------------------------------------------------------------------------- losses


def _reduce(loss: Tensor, reduction: str, op: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _as_target(target, like: Tensor, op: str) -> Tensor:
    target = target if isinstance(target, Tensor) else Tensor(backend.asarray(target, dtype=like.dtype))
    if target.shape != like.shape:
        raise ValueError(f"{op}: target shape {target.shape} differs from input shape {like.shape}")
    return target


def binary_cross_entropy_with_logits(logits: Tensor, target, reduction: str = "mean") -> Tensor:
    """Bernoulli negative log-likelihood from logits: -[y·log σ(x) + (1-y)·log(1-σ(x))].

    Written as softplus(x) - x·y, which is the same quantity and never takes the log of 0.
    Its gradient is σ(x) - y.

    Args:
        logits: any shape. target: same shape, values in [0, 1].
        reduction: "mean" over all elements (PyTorch's default), "sum", or "none".
    """
    target = _as_target(target, logits, "binary_cross_entropy_with_logits")
    return _reduce(softplus(logits) - logits * target, reduction, "binary_cross_entropy_with_logits")


def cross_entropy(logits: Tensor, labels, reduction: str = "mean") -> Tensor:
    """Categorical negative log-likelihood -log softmax(x)[y] from logits and integer class labels.

    Args:
        logits: (N, C). labels: (N,) integers in [0, C), as a Tensor or array.
        reduction: "mean" over the batch, "sum", or "none" for one loss per example.
    """
    labels = labels.data if isinstance(labels, Tensor) else backend.asarray(labels)
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(
            f"cross_entropy: expected logits (N, C) and labels (N,), got {logits.shape} and {tuple(labels.shape)}"
        )
    if labels.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: labels must be integers, got dtype {labels.dtype}")
    classes = logits.shape[1]
    one_hot = (labels[:, None] == backend.xp.arange(classes)[None, :]).astype(logits.dtype)
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise ValueError(f"cross_entropy: labels must lie in [0, {classes}), got values from {int(labels.min())} to {int(labels.max())}")
    nll = -(log_softmax(logits, axis=1) * Tensor(one_hot)).sum(axis=1)
    return _reduce(nll, reduction, "cross_entropy")


def mse_loss(input: Tensor, target, reduction: str = "mean") -> Tensor:
    """Mean squared error (x - y)², averaged over all elements by default."""
    target = _as_target(target, input, "mse_loss")
    diff = input - target
    return _reduce(diff * diff, reduction, "mse_loss")


def gaussian_kl(mu: Tensor, logvar: Tensor, reduction: str = "none") -> Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) of a diagonal Gaussian, with σ² = exp(logvar) (Kingma & Welling 2014, App. B):

        KL = ½ Σ_j (μ_j² + σ_j² - 1 - log σ_j²)

    summed over every axis but the first (the latent dimensions).

    Args:
        mu, logvar: (N, ...) of the same shape.
        reduction: "none" for one KL per example, shape (N,); "mean" over the batch; "sum".
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"gaussian_kl: mu {mu.shape} and logvar {logvar.shape} must have the same shape")
    terms = 0.5 * (mu * mu + logvar.exp() - 1.0 - logvar)
    per_example = terms.sum(axis=tuple(range(1, mu.ndim))) if mu.ndim > 1 else terms
    return _reduce(per_example, reduction, "gaussian_kl")

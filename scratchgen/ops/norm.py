"""Batch normalisation (Ioffe & Szegedy 2015), written as the paper's Algorithm 1 in Tensor ops.

For an input x of shape (N, C, ...), each channel c is normalised over the m = N·(H·W·...) numbers it
has in the batch:

    μ = (1/m) Σ x,   σ² = (1/m) Σ (x - μ)²   (biased),   x̂ = (x - μ) / √(σ² + ε),   y = γ·x̂ + β.

In evaluation mode μ and σ² are the running statistics, constants. There is no hand-written backward:
the engine differentiates the composition, which gives the paper's gradient (in training mode, with g
the output gradient and sums over the m numbers of a channel)

    grad_β = Σ g,   grad_γ = Σ g·x̂,   grad_x = γ / (m·√(σ² + ε)) · (m·g - Σ g - x̂·Σ g·x̂),

and, because every step is an op, its second derivative too (a gradient penalty through a generator's
or critic's batch norm). The paths through μ and σ² are what makes batch norm's gradient differ from a
fixed affine map's.

Running statistics are updated in training mode as PyTorch does, in place, with momentum α = 0.1:

    running_mean ← (1-α)·running_mean + α·μ,   running_var ← (1-α)·running_var + α·σ²·m/(m-1)

(the unbiased variance for the running estimate, the biased one to normalise the batch).
"""

from __future__ import annotations

from scratchgen.tensor import Tensor

__all__ = ["batch_norm"]


def _update(running, batch_value, momentum) -> None:
    """running ← (1-α)·running + α·batch_value, in place (the buffer's array is shared with the module)."""
    running *= 1 - momentum
    running += momentum * batch_value.astype(running.dtype)


def batch_norm(x: Tensor, weight: Tensor | None = None, bias: Tensor | None = None, running_mean=None,
               running_var=None, training: bool = True, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """y = γ·(x - μ)/√(σ² + ε) + β per channel.

    Args:
        x: (N, C, ...). weight, bias: γ and β, (C,) each, or both None.
        running_mean, running_var: (C,) arrays or None; updated in place in training mode, used instead
            of the batch's statistics in evaluation mode.
        training: normalise with the batch's statistics (True) or the running ones (False).

    Raises:
        ValueError: shapes that do not fit, a batch with one value per channel in training, or
            evaluation without running statistics.
    """
    if x.ndim < 2:
        raise ValueError(f"batch_norm: expected an input (N, C, ...) of at least 2 dimensions, got shape {x.shape}")
    channels = x.shape[1]
    for name, value in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                        ("running_var", running_var)):
        if value is not None and tuple(value.shape) != (channels,):
            raise ValueError(f"batch_norm: {name} has shape {tuple(value.shape)} but the input {x.shape} has "
                             f"{channels} channels")
    axes = (0,) + tuple(range(2, x.ndim))  # every axis but the channels
    shape = (1, channels) + (1,) * (x.ndim - 2)  # to broadcast per-channel numbers over x
    count = x.size // channels
    if training:
        if count < 2:
            raise ValueError(f"batch_norm: training needs more than one value per channel to estimate a "
                             f"variance, got input shape {x.shape}")
        mean = x.mean(axis=axes, keepdims=True)
        centred = x - mean
        var = (centred * centred).mean(axis=axes, keepdims=True)
        if running_mean is not None:
            _update(running_mean, mean.data.reshape(channels), momentum)
        if running_var is not None:
            _update(running_var, var.data.reshape(channels) * (count / (count - 1)), momentum)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("batch_norm: evaluation mode needs running_mean and running_var")
        centred = x - Tensor(running_mean.reshape(shape).astype(x.dtype))
        var = Tensor(running_var.reshape(shape).astype(x.dtype))
    x_hat = centred * (var + eps) ** -0.5
    if weight is None:
        return x_hat
    return x_hat * weight.reshape(shape) + bias.reshape(shape)

"""Batch normalisation (Ioffe & Szegedy 2015) as one fused op: forward, backward, running statistics.

For an input x of shape (N, C, ...), each channel c is normalised over the m = N·(H·W·...) numbers it
has in the batch:

    μ = (1/m) Σ x,   σ² = (1/m) Σ (x - μ)²   (biased),   x̂ = (x - μ) / √(σ² + ε),   y = γ·x̂ + β.

Backward in training mode (μ and σ² depend on every x of the channel; sums run over the m numbers):

    grad_β = Σ g,   grad_γ = Σ g·x̂,
    grad_x = γ / (m·√(σ² + ε)) · (m·g - Σ g - x̂·Σ g·x̂)

(the last two terms are what flows through μ and σ²; Ioffe & Szegedy's Algorithm 1, simplified).
In evaluation mode μ and σ² are the running statistics, constants, so grad_x = γ·g / √(σ² + ε).

Running statistics are updated in training mode as PyTorch does, in place, with momentum α = 0.1:

    running_mean ← (1-α)·running_mean + α·μ,   running_var ← (1-α)·running_var + α·σ²·m/(m-1)

(the unbiased variance for the running estimate, the biased one to normalise the batch).

One op instead of a dozen elementwise ones: a few passes over the data instead of a graph node and a
temporary per step, and the gradient formula in one place.
"""

from __future__ import annotations

from scratchgen.autograd import Function
from scratchgen.backend import xp

__all__ = ["BatchNorm"]


class BatchNorm(Function):
    """grad_x = γ/(m·√(σ²+ε))·(m·g - Σg - x̂·Σg·x̂) in training, γ·g/√(σ²+ε) in eval; grad_γ = Σg·x̂, grad_β = Σg.

    Inputs: x (N, C, ...) and, for an affine batch norm, weight γ (C,) and bias β (C,).
    """

    def forward(self, x, weight=None, bias=None, running_mean=None, running_var=None, training=True,
                momentum=0.1, eps=1e-5):
        if x.ndim < 2:
            raise ValueError(f"expected an input (N, C, ...) of at least 2 dimensions, got shape {tuple(x.shape)}")
        channels = x.shape[1]
        for name, array in (("weight", weight), ("bias", bias), ("running_mean", running_mean),
                            ("running_var", running_var)):
            if array is not None and array.shape != (channels,):
                raise ValueError(f"{name} has shape {tuple(array.shape)} but the input {tuple(x.shape)} has "
                                 f"{channels} channels")
        self.axes = (0,) + tuple(range(2, x.ndim))  # every axis but the channels
        self.training = training
        shape = (1, channels) + (1,) * (x.ndim - 2)  # to broadcast per-channel numbers over x
        self.count = x.size // channels
        if training:
            if self.count < 2:
                raise ValueError(f"training needs more than one value per channel to estimate a variance, got "
                                 f"input shape {tuple(x.shape)}")
            mean = x.mean(axis=self.axes)
            centred = x - mean.reshape(shape)
            var = (centred * centred).mean(axis=self.axes)
            if running_mean is not None:
                self._update(running_mean, mean, momentum)
            if running_var is not None:
                self._update(running_var, var * (self.count / (self.count - 1)), momentum)
        else:
            if running_mean is None or running_var is None:
                raise ValueError("evaluation mode needs running_mean and running_var")
            mean, var = running_mean, running_var
            centred = x - mean.reshape(shape)
        self.inv_std = (1 / xp.sqrt(var + eps)).reshape(shape)
        centred *= self.inv_std  # x̂, in place: the centred copy is not needed any more
        self.x_hat, self.weight = centred, weight
        if weight is None:
            return centred.copy()  # a new array, so that nothing writes into the saved x̂
        out = centred * weight.reshape(shape)
        out += bias.reshape(shape)
        return out

    @staticmethod
    def _update(running, batch_value, momentum):
        """running ← (1-α)·running + α·batch_value, in place (the buffer's array is shared with the module)."""
        running *= 1 - momentum
        running += momentum * batch_value.astype(running.dtype)

    def backward(self, grad):
        affine = self.weight is not None
        shape = self.inv_std.shape
        scale = self.inv_std if not affine else self.inv_std * self.weight.reshape(shape)  # γ/√(σ²+ε)
        grad_sum = grad_xhat_sum = None
        if self.training or affine:
            grad_sum = grad.sum(axis=self.axes)
            grad_xhat_sum = (grad * self.x_hat).sum(axis=self.axes)
        grad_x = None
        if self.needs_input_grad[0]:
            if self.training:
                m = grad.dtype.type(self.count)
                grad_x = grad - grad_sum.reshape(shape) / m
                grad_x -= self.x_hat * (grad_xhat_sum.reshape(shape) / m)
                grad_x *= scale
            else:
                grad_x = grad * scale
        if not affine:
            return grad_x
        return grad_x, grad_xhat_sum, grad_sum

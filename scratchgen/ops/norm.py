"""Batch normalisation (Ioffe & Szegedy 2015) and group normalisation (Wu & He 2018), each one fused op
with a backward of Tensor ops.

For an input x of shape (N, C, ...), each channel c is normalised over the m = N·(H·W·...) numbers it
has in the batch:

    μ = (1/m) Σ x,   σ² = (1/m) Σ (x - μ)²   (biased),   x̂ = (x - μ) / √(σ² + ε),   y = γ·x̂ + β.

Backward in training mode (μ and σ² depend on every x of the channel; means run over the m numbers):

    grad_β = Σ g,   grad_γ = Σ g·x̂,
    grad_x = γ / √(σ² + ε) · (g - mean(g) - x̂·mean(g·x̂))

(the last two terms are what flows through μ and σ²; Ioffe & Szegedy's Algorithm 1, simplified).
In evaluation mode μ and σ² are the running statistics, constants, so grad_x = γ·g / √(σ² + ε).

The backward is written with Tensor ops, so it can be differentiated again (a gradient penalty through
a network with batch norm), provided x̂ and 1/√(σ² + ε) enter it as functions of x. The forward keeps
both as arrays; :meth:`BatchNorm.statistics` hands those over as constants when the gradient will not be
differentiated (an ordinary backward, where that is exact), and recomputes them from x with ops when it
will (``create_graph=True``). One fused op instead of a dozen elementwise ones: about 2.5× faster on a
DCGAN generator's batch norms than the same formula composed of ops.

Running statistics are updated in training mode as PyTorch does, in place, with momentum α = 0.1:

    running_mean ← (1-α)·running_mean + α·μ,   running_var ← (1-α)·running_var + α·σ²·m/(m-1)

(the unbiased variance for the running estimate, the biased one to normalise the batch).

**Group norm** normalises each sample on its own: its C channels fall into G groups of C/G, and each
group is normalised over its channels and every position, m = (C/G)·(H·W·...) numbers, before a
per-channel γ and β. The formulas are batch norm's with "the m numbers of a channel in the batch"
replaced by "the m numbers of a group in one sample":

    x̂ = (x - μ) / √(σ² + ε),   y = γ·x̂ + β,   μ, σ² per (sample, group),

    grad_β = Σ g,   grad_γ = Σ g·x̂   (per channel, over the samples and positions),
    grad_x = 1/√(σ² + ε) · (ĝ - mean(ĝ) - x̂·mean(ĝ·x̂)),   ĝ = γ·g   (means over each group).

As γ changes within a group, ĝ is not g times a group's constant; but both group means are sums of
per-channel sums, mean(ĝ·x̂) = (1/m) Σ_c γ_c · Σ_positions g·x̂ and likewise for ĝ, so the backward sums
g and g·x̂ over the positions once, per sample and channel, and those two small arrays give the
parameters' gradients (summed over the samples) and the group means (summed, with γ, over each group's
channels): three passes over the activation for the sums and five for grad_x. x̂ and 1/√(σ² + ε) come
from :meth:`GroupNormalisation.statistics`, constants or ops of x, as batch norm's do.

**Memory layout.** Every array is worked on as a view of shape (N, G, C/G, ...), which splits the channel
axis and so never copies, whatever the input's layout. NumPy lays the result of an elementwise op or a
reduction out in its input's memory order, so group norm reads and writes memory in order however the
input is laid out, and hands on its output in the input's layout. That matters because a convolution's
output is a transposed view ((C, H, W, N) in memory, batch fastest): reshaping it to (N, G, C/G·H·W), the
obvious way to write group norm, copies it into C order at the cost of some three passes, every op after
it works in C order, and the next convolution copies it back. The big arrays are multiplied only by the
per-(sample, group) statistics, which come out of reductions in the input's order, or by γ and β, which
do not change along the batch; a per-(sample, channel) product of the two would come out in C order and
turn every product with it into a strided one, several times slower. Forward six passes, backward eight,
against the composed ops' ten and more: on the U-Net's activations (a convolution's output, 64 × 16 × 28
× 28) the forward is 2-3× faster and forward and backward together about 2×.
"""

from __future__ import annotations

from scratchgen.autograd import Function, constant, is_grad_enabled
from scratchgen.backend import xp

__all__ = ["BatchNorm", "GroupNormalisation"]


class BatchNorm(Function):
    """grad_x = γ/√(σ²+ε)·(g - mean g - x̂·mean(g·x̂)) in training, γ·g/√(σ²+ε) in eval; grad_γ = Σg·x̂, grad_β = Σg.

    Inputs: x (N, C, ...) and, for an affine batch norm, weight γ (C,) and bias β (C,).
    """

    saved_inputs = (0, 1)
    saves_output = False

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
        self.training, self.eps = training, eps
        self.shape = (1, channels) + (1,) * (x.ndim - 2)  # to broadcast per-channel numbers over x
        count = x.size // channels
        if training:
            if count < 2:
                raise ValueError(f"training needs more than one value per channel to estimate a variance, got "
                                 f"input shape {tuple(x.shape)}")
            mean = x.mean(axis=self.axes)
            centred = x - mean.reshape(self.shape)
            var = (centred * centred).mean(axis=self.axes)
            if running_mean is not None:
                self._update(running_mean, mean, momentum)
            if running_var is not None:
                self._update(running_var, var * (count / (count - 1)), momentum)
        else:
            if running_mean is None or running_var is None:
                raise ValueError("evaluation mode needs running_mean and running_var")
            mean, var = running_mean.astype(x.dtype), running_var.astype(x.dtype)
            centred = x - mean.reshape(self.shape)
        self.mean = mean.reshape(self.shape)
        self.inv_std = (1 / xp.sqrt(var + eps)).reshape(self.shape)
        centred *= self.inv_std  # x̂, in place: the centred copy is not needed any more
        self.x_hat = centred
        if weight is None:
            return centred.copy()  # a new array, so that nothing writes into the saved x̂
        out = centred * weight.reshape(self.shape)
        out += bias.reshape(self.shape)
        return out

    @staticmethod
    def _update(running, batch_value, momentum):
        """running ← (1-α)·running + α·batch_value, in place (the buffer's array is shared with the module)."""
        running *= 1 - momentum
        running += momentum * batch_value.astype(running.dtype)

    def statistics(self):
        """x̂ and 1/√(σ² + ε) as Tensors for the backward.

        Under an ordinary backward nothing will differentiate the gradient, so the forward's arrays serve
        as constants. Under ``create_graph=True`` they are recomputed from the input with ops, so that
        their own dependence on x (through μ and σ² in training) is part of the graph.
        """
        if not is_grad_enabled():
            return constant(self.x_hat), constant(self.inv_std)
        x = self.inputs[0]
        if not self.training:
            inv_std = constant(self.inv_std)
            return (x - constant(self.mean)) * inv_std, inv_std
        centred = x - x.mean(axis=self.axes, keepdims=True)
        inv_std = ((centred * centred).mean(axis=self.axes, keepdims=True) + self.eps) ** -0.5
        return centred * inv_std, inv_std

    def backward(self, grad):
        affine = len(self.inputs) == 3
        x_hat, inv_std = self.statistics()
        scale = inv_std if not affine else inv_std * self.inputs[1].reshape(self.shape)  # γ/√(σ²+ε)
        grad_x_hat = grad * x_hat if (affine or self.training) else None
        grad_x = None
        if self.needs_input_grad[0]:
            if self.training:
                grad_x = grad - grad.mean(axis=self.axes, keepdims=True)
                grad_x = (grad_x - x_hat * grad_x_hat.mean(axis=self.axes, keepdims=True)) * scale
            else:
                grad_x = grad * scale
        if not affine:
            return grad_x
        grad_weight = grad_x_hat.sum(axis=self.axes) if self.needs_input_grad[1] else None
        grad_bias = grad.sum(axis=self.axes) if self.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias


class GroupNormalisation(Function):
    """grad_x = (ĝ - mean ĝ - x̂·mean(ĝ·x̂))/√(σ²+ε), ĝ = γ·g, means over each group; grad_γ = Σg·x̂, grad_β = Σg.

    Inputs: x (N, C, ...) and, for an affine group norm, weight γ (C,) and bias β (C,).
    Settings: ``num_groups`` G, which divides C, and ``eps`` ε.
    """

    saved_inputs = (0, 1)
    saves_output = False

    def forward(self, x, weight=None, bias=None, num_groups=1, eps=1e-5):
        if x.ndim < 2:
            raise ValueError(f"expected an input (N, C, ...) of at least 2 dimensions, got shape {tuple(x.shape)}")
        samples, channels = x.shape[:2]
        if channels % num_groups:
            raise ValueError(f"the input's {channels} channels do not divide into {num_groups} groups")
        for name, array in (("weight", weight), ("bias", bias)):
            if array is not None and array.shape != (channels,):
                raise ValueError(f"{name} has shape {tuple(array.shape)} but the input {tuple(x.shape)} has "
                                 f"{channels} channels")
        self.eps = eps
        # (N, G, C/G, ...): one group of one sample per (n, g); a view, as it only splits axis 1.
        self.grouped_shape = (samples, num_groups, channels // num_groups) + tuple(x.shape[2:])
        self.parameter_shape = (1,) + self.grouped_shape[1:3] + (1,) * (x.ndim - 2)  # γ, β over the groups
        self.group_axes = tuple(range(2, x.ndim + 1))  # a group's channels and positions
        self.count = x.size // (samples * num_groups)  # m, the numbers in each group
        groups = x.reshape(self.grouped_shape)
        centred = groups - groups.mean(axis=self.group_axes, keepdims=True)
        # σ² = (1/m) Σ (x - μ)², summed by einsum without an array of the squares: subscripts "nga,nga->ng"
        # for a vector (N, C), "ngab,ngab->ng" for (N, C, L), and so on.
        subscripts = "ng" + "abcdefghijklmnopqrstuvwxyz"[: x.ndim - 1]
        var = xp.einsum(f"{subscripts},{subscripts}->ng", centred, centred) / self.count
        self.inv_std = (1 / xp.sqrt(var + eps)).reshape(self.grouped_shape[:2] + (1,) * (x.ndim - 1))
        centred *= self.inv_std  # x̂, in place: the centred copy is not needed any more
        self.x_hat = centred
        if weight is None:
            return xp.copy(centred).reshape(x.shape)  # a new array (in x̂'s layout), so nothing writes into x̂
        out = centred * weight.reshape(self.parameter_shape)
        out += bias.reshape(self.parameter_shape)
        return out.reshape(x.shape)

    def statistics(self):
        """x̂ (N, G, C/G, ...) and 1/√(σ² + ε) (N, G, 1, ...) as Tensors for the backward: the forward's
        arrays as constants under an ordinary backward, ops of the input under ``create_graph=True``
        (see :meth:`BatchNorm.statistics`)."""
        if not is_grad_enabled():
            return constant(self.x_hat), constant(self.inv_std)
        groups = self.inputs[0].reshape(self.grouped_shape)
        centred = groups - groups.mean(axis=self.group_axes, keepdims=True)
        inv_std = ((centred * centred).mean(axis=self.group_axes, keepdims=True) + self.eps) ** -0.5
        return centred * inv_std, inv_std

    def backward(self, grad):
        affine = len(self.inputs) == 3
        x_hat, inv_std = self.statistics()
        grad = grad.reshape(self.grouped_shape)
        positions = self.group_axes[1:]  # the axes after the channel's: H, W, ...
        # Per sample and channel, (N, G, C/G, 1, ...): Σ g and Σ g·x̂ over the positions.
        sum_grad = grad.sum(axis=positions, keepdims=True)
        sum_grad_x_hat = (grad * x_hat).sum(axis=positions, keepdims=True)
        grad_x = None
        if self.needs_input_grad[0]:
            gamma = self.inputs[1].reshape(self.parameter_shape) if affine else None
            # The group means of ĝ = γ·g and ĝ·x̂, (N, G, 1, ...), from the per-channel sums.
            mean_grad = (sum_grad * gamma if affine else sum_grad).sum(axis=2, keepdims=True) / self.count
            mean_grad_x_hat = ((sum_grad_x_hat * gamma if affine else sum_grad_x_hat).sum(axis=2, keepdims=True)
                               / self.count)
            # γ and 1/√(σ²+ε) apply one after the other, not as one product per channel: see "Memory layout".
            grad_x_hat = grad * gamma if affine else grad
            grad_x = (grad_x_hat - mean_grad - x_hat * mean_grad_x_hat) * inv_std
            grad_x = grad_x.reshape(self.inputs[0].shape)
        if not affine:
            return grad_x
        channels = self.inputs[1].shape
        grad_weight = sum_grad_x_hat.sum(axis=0).reshape(channels) if self.needs_input_grad[1] else None
        grad_bias = sum_grad.sum(axis=0).reshape(channels) if self.needs_input_grad[2] else None
        return grad_x, grad_weight, grad_bias

"""Gradient penalties on a discriminator's input gradient: WGAN-GP's and R1.

Both are functions of ∇ₓ D(x), the gradient of the discriminator's output with respect to its *input*,
and both are trained by backpropagating through that gradient into D's weights: a double backward, which
:func:`scratchgen.autograd.grad` gives with ``create_graph=True``.

* **WGAN-GP** (Gulrajani et al., "Improved Training of Wasserstein GANs", 2017): the critic of a
  Wasserstein GAN must be 1-Lipschitz; :func:`gradient_penalty` asks for gradient norm 1 at points on
  the lines between data and generated samples, where the optimal critic has it.
* **R1** (Mescheder et al., "Which Training Methods for GANs do actually Converge?", 2018):
  :func:`r1_penalty` asks for gradient 0 on the data, which damps the oscillation of the unregularised
  game near its equilibrium.

Used by :class:`scratchgen.models.gan.GANTrainer`; builds on :mod:`scratchgen.nn` and the engine.
"""

from __future__ import annotations

from scratchgen import nn
from scratchgen.autograd import grad, no_grad
from scratchgen.tensor import Tensor, rand

__all__ = ["sample_gradients", "gradient_penalty", "r1_penalty"]

# Added under the square root of a gradient norm: the derivative of √s is 1/(2√s), infinite where a
# critic's input gradient vanishes (a flat region of a ReLU network, a zero weight); the shift keeps it
# finite and moves a norm of order 1 by about 1e-12, far below float32's resolution.
_NORM_EPS = 1e-12


def sample_gradients(discriminator: nn.Module, x: Tensor, labels=None) -> Tensor:
    """∇ₓ D(x) for each sample (or pack), flattened and differentiable: (N / packing, packing · features).

    D's output is summed first: D judges each sample (pack) on its own, so the gradient of the sum with
    respect to sample i is the gradient of D's output on sample i alone, and one backward pass gives all
    N of them. The gradients are computed with ``create_graph=True``, so a penalty built from them can be
    backpropagated into D's weights (a double backward).

    Args:
        discriminator: maps samples (N, ...) to one output per pack, (N / packing, 1); its ``packing``
            attribute, if it has one, says how many consecutive samples make a pack (1 otherwise).
        x: the samples, (N, ...); must require grad.
        labels: for a conditional D, the labels of x, which D reads beside it (the gradient is still with
            respect to x alone).

    Raises:
        ValueError: D has batch norm in training mode, which mixes the samples of the batch, so that the
            gradient of the sum is no longer each sample's own; or D returned a number of outputs other
            than N / packing.
    """
    norms = [type(m).__name__ for m in discriminator.modules()
             if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.training]
    if norms:
        raise ValueError(f"sample_gradients: the discriminator has batch norm ({', '.join(norms)}) in training "
                         "mode, which makes each sample's output depend on the whole batch, so a per-sample gradient "
                         "penalty is not defined; remove it (WGAN-GP, section 4, uses layer norm or none)")
    packing = getattr(discriminator, "packing", 1)
    outputs = discriminator(x) if labels is None else discriminator(x, labels)
    if outputs.shape[0] * packing != x.shape[0]:
        raise ValueError(f"sample_gradients: the discriminator gave {outputs.shape[0]} outputs for {x.shape[0]} "
                         f"samples with packing {packing}; it must give one per pack of consecutive samples (its "
                         "`packing` attribute says how many samples a pack holds)")
    (gradients,) = grad(outputs.sum(), x, create_graph=True)
    return gradients.reshape(outputs.shape[0], -1)  # pack() puts consecutive samples side by side, as here


def gradient_penalty(critic: nn.Module, real: Tensor, fake: Tensor, gp_lambda: float = 10.0) -> Tensor:
    """WGAN-GP's gradient penalty (Gulrajani et al. 2017, equation 3):

        λ · E_x̂[(‖∇_x̂ D(x̂)‖₂ − 1)²],   x̂ = ε·x + (1 − ε)·G(z),   ε ~ U[0, 1] per sample,

    on the lines between data and generated samples, where the optimal critic has gradient norm 1. The
    norm is taken over all of a sample's non-batch axes; ε comes from scratchgen's seeded generator.
    With a packing critic (PacGAN) the critic is a function of a whole pack, so a pack is one point: one
    ε per pack and one norm over the pack's samples together.

    Args:
        critic: maps samples to raw scores (N / packing, 1), without batch norm.
        real: N data samples, (N, ...).
        fake: N generated samples, (N, ...), detached from G (the critic's step leaves G alone).
        gp_lambda: the penalty's weight λ; the paper uses 10 in every experiment.

    Returns:
        A scalar tensor whose gradient reaches the critic's weights.

    Raises:
        ValueError: real and fake differ in shape, N is not a multiple of the packing, or the critic is
            not a per-sample function (see :func:`sample_gradients`).
    """
    if real.shape != fake.shape:
        raise ValueError(f"gradient_penalty: real {real.shape} and fake {fake.shape} samples must have the same shape")
    packing = getattr(critic, "packing", 1)
    n = real.shape[0]
    if n % packing:
        raise ValueError(f"gradient_penalty: {n} samples cannot be split into packs of {packing}")
    packs = (n // packing, packing) + real.shape[1:]
    with no_grad():  # x̂ is a leaf: the penalty differentiates with respect to x̂ itself, not to x or G(z)
        epsilon = rand((n // packing,) + (1,) * (len(packs) - 1), dtype=real.dtype)  # broadcasts over a pack
        mixed = (epsilon * real.reshape(packs) + (1 - epsilon) * fake.reshape(packs)).reshape(real.shape)
    norms = ((sample_gradients(critic, mixed.requires_grad_()) ** 2).sum(axis=1) + _NORM_EPS).sqrt()
    return gp_lambda * ((norms - 1) ** 2).mean()


def r1_penalty(discriminator: nn.Module, real: Tensor, gamma: float, labels=None) -> Tensor:
    """The R1 penalty (Mescheder et al. 2018, section 4.1), added to D's loss:

        γ/2 · E_x[‖∇ₓ D(x)‖₂²]   on data x only,

    with D(x) the discriminator's *logit* (the paper's D, before its f = −softplus(−·)). It pushes D's
    gradient to zero where the data are, so that D stops pushing G once G matches them. The norm is
    taken over all of a sample's non-batch axes; with a packing discriminator, over a whole pack.

    Args:
        discriminator: maps samples to logits (N / packing, 1), without batch norm.
        real: N data samples, (N, ...).
        gamma: the penalty's weight γ, with no default: the gradient's size, so a good γ, depends on the
            scale of the data.
        labels: the data's labels, for a conditional D(x, y); the gradient is ∇ₓ D(x, y) at the real pairs.

    Returns:
        A scalar tensor whose gradient reaches D's weights.
    """
    squared_norms = (sample_gradients(discriminator, real.detach().requires_grad_(), labels) ** 2).sum(axis=1)
    return gamma / 2 * squared_norms.mean()

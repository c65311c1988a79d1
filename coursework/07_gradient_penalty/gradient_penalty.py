"""Assignment 7: WGAN-GP's gradient penalty, a loss made of a gradient (Gulrajani et al. 2017).

Read ``coursework/07_gradient_penalty/README.md`` first. Fill in the three gaps marked YOUR CODE HERE,
then grade your work from the repository's root with

    python -m pytest coursework/07_gradient_penalty

The critic maps samples (N, ...) to raw scores (N, 1): no sigmoid, and no batch norm (each sample's
score depends on that sample alone).
"""

import scratchgen as sg  # noqa: F401  (sg.rand, sg.no_grad, sg.grad)


def interpolate(real, fake):
    """x̂ = ε·real + (1 − ε)·fake, with one ε ~ U[0, 1] per sample, as a new leaf that requires grad.

    Args:
        real: N data samples, a Tensor (N, ...) (vectors (N, D) or images (N, C, H, W)).
        fake: N generated samples, a Tensor of the same shape.

    Returns:
        x̂, a Tensor of real's shape with ``requires_grad=True`` and no graph behind it: the penalty
        differentiates with respect to x̂ itself, not to real or fake.
    """
    # YOUR CODE HERE: about 3 lines. Draw ε with sg.rand, shaped (N, 1, ..., 1) so that it broadcasts over
    # every axis of a sample but the batch axis, in real's dtype (dtype=real.dtype); mix under
    # `with sg.no_grad():`; then x̂.requires_grad_().
    raise NotImplementedError("your code here: interpolate")


def gradient_norms(critic, x_hat):
    """‖∇_x̂ D(x̂)‖₂ for each sample, differentiable again (so that a penalty on it trains D's weights).

    Args:
        critic: a Module mapping x_hat (N, ...) to scores (N, 1).
        x_hat: the points, a Tensor (N, ...) that requires grad.

    Returns:
        A Tensor (N,): sample i's gradient norm, over all of its non-batch axes.
    """
    # YOUR CODE HERE: about 3 lines. One call of sg.grad on the sum of the scores gives every sample's
    # gradient at once (D judges each sample alone); it must record its own graph: create_graph=True.
    # Then the norm over all non-batch axes (reshape to (N, -1) first), with a tiny 1e-12 under the
    # square root (see the handout).
    raise NotImplementedError("your code here: gradient_norms")


def gradient_penalty(critic, real, fake, gp_lambda=10.0):
    """λ · mean over the batch of (‖∇_x̂ D(x̂)‖₂ − 1)², x̂ = ε·real + (1 − ε)·fake.

    Args:
        critic: a Module mapping samples (N, ...) to scores (N, 1).
        real, fake: Tensors (N, ...) of the same shape; fake is already detached from the generator.
        gp_lambda: the weight λ (10 in every experiment of the paper).

    Returns:
        A scalar Tensor whose gradient reaches the critic's weights.
    """
    # YOUR CODE HERE: two lines, with interpolate and gradient_norms.
    raise NotImplementedError("your code here: gradient_penalty")

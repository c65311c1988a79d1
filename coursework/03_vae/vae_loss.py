"""Assignment 3: the VAE's loss (the negative ELBO) and the reparameterisation trick.

Read ``coursework/03_vae/README.md`` first. Fill in the three gaps marked YOUR CODE HERE, then grade your
work from the repository's root with

    python -m pytest coursework/03_vae

Conventions (the library's, in ``scratchgen/models/vae.py``): the encoder outputs μ and log σ²
("logvar"), so σ = exp(½·logvar); the decoder outputs logits of Bernoulli pixels; losses are in nats
per image, summed over pixels and latent dimensions and averaged over the batch.
"""

from scratchgen.nn import functional as F  # noqa: F401  (softplus, binary_cross_entropy_with_logits, ...)


def reparameterize(mu, logvar, eps):
    """A sample z = μ + σ·ε of N(μ, diag σ²), differentiable in μ and logvar.

    Args:
        mu, logvar: Tensors (N, D), the encoder's outputs.
        eps: a Tensor (N, D) of standard-normal draws (the randomness, outside the graph).

    Returns:
        z, a Tensor (N, D).
    """
    # YOUR CODE HERE: one line, with Tensor operations (+, *, .exp()) so that autograd records it.
    raise NotImplementedError("your code here: reparameterize")


def gaussian_kl(mu, logvar):
    """KL(N(μ, diag σ²) ‖ N(0, I)) of each example, summed over the D latent dimensions.

    Args:
        mu, logvar: Tensors (N, D).

    Returns:
        A Tensor (N,).
    """
    # YOUR CODE HERE: the closed form from the handout, with Tensor operations.
    raise NotImplementedError("your code here: gaussian_kl")


def vae_loss(logits, x, mu, logvar):
    """The negative ELBO of a Bernoulli VAE, with its two terms, averaged over the batch.

    Args:
        logits: the decoder's output for one z per image, a Tensor (N, ...) (e.g. (N, 1, 28, 28)).
        x: the binary images, of logits' shape (a Tensor or an array).
        mu, logvar: the encoder's outputs (N, D).

    Returns:
        (loss, rec, kl), three scalar Tensors: rec = -log p(x|z) summed over each image's pixels,
        kl = KL(q(z|x) ‖ p(z)), and loss = rec + kl, each averaged over the N images.
    """
    # YOUR CODE HERE: about 4 lines.
    raise NotImplementedError("your code here: vae_loss")

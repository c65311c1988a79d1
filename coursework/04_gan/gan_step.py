"""Assignment 4: one iteration of the GAN's Algorithm 1 (Goodfellow et al. 2014).

Read ``coursework/04_gan/README.md`` first. Fill in the three gaps marked YOUR CODE HERE, then grade your
work from the repository's root with

    python -m pytest coursework/04_gan

The discriminator outputs logits l, with D(x) = σ(l); never probabilities.
"""

import scratchgen as sg  # noqa: F401  (sg.randn, sg.no_grad)
from scratchgen.nn import functional as F  # noqa: F401  (softplus)


def discriminator_loss(real_logits, fake_logits):
    """−V(D, G) on a minibatch, which the discriminator descends (so that it ascends V).

    Args:
        real_logits: D's logits on m data samples, a Tensor (m, 1).
        fake_logits: D's logits on m generated samples, a Tensor (m, 1).

    Returns:
        A scalar Tensor: −(mean log D(x) + mean log(1 − D(G(z)))).
    """
    # YOUR CODE HERE: one line, with F.softplus (see the handout for log σ(l) and log(1 − σ(l))).
    raise NotImplementedError("your code here: discriminator_loss")


def generator_loss(fake_logits):
    """The non-saturating generator loss, mean −log D(G(z)), from D's logits on m generated samples."""
    # YOUR CODE HERE: one line.
    raise NotImplementedError("your code here: generator_loss")


def train_iteration(generator, discriminator, g_optimizer, d_optimizer, real_batch, k=1):
    """One iteration of Algorithm 1: k steps of the discriminator, then one step of the generator.

    Args:
        generator: a Module mapping noise (m, generator.latent_dim) to samples.
        discriminator: a Module mapping samples to logits (m, 1).
        g_optimizer, d_optimizer: optimisers over the generator's and the discriminator's parameters.
        real_batch: a function of no arguments returning the next minibatch of m data samples (a Tensor).
        k: discriminator steps per iteration.

    Returns:
        {"d_loss": the last discriminator loss, "g_loss": the generator loss}, as Python floats.
    """
    # YOUR CODE HERE: about 15 lines. For each of the k discriminator steps: a fresh minibatch of data
    # from real_batch(), m fresh noise draws sg.randn(m, generator.latent_dim), the fake samples (with no
    # gradient into the generator), the loss, and one optimiser step. Then one generator step on m fresh
    # noise draws.
    raise NotImplementedError("your code here: train_iteration")

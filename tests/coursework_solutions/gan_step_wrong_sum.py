"""A planted wrong answer to assignment 4: the discriminator's loss sums over the minibatch instead of
averaging, so its gradients are m times −V's. Algorithm 1 itself is right (fakes under no_grad, every
zero_grad in place): the grader must blame the sum, not advise a zero_grad that is already there."""

import scratchgen as sg
from scratchgen.nn import functional as F


def discriminator_loss(real_logits, fake_logits):
    return F.softplus(-real_logits).sum() + F.softplus(fake_logits).sum()  # BUG: means, not sums


def generator_loss(fake_logits):
    return F.softplus(-fake_logits).mean()


def train_iteration(generator, discriminator, g_optimizer, d_optimizer, real_batch, k=1):
    for _ in range(k):
        real = real_batch()
        with sg.no_grad():
            fake = generator(sg.randn(len(real), generator.latent_dim))
        d_loss = discriminator_loss(discriminator(real), discriminator(fake))
        d_optimizer.zero_grad()
        d_loss.backward()
        d_optimizer.step()
    g_loss = generator_loss(discriminator(generator(sg.randn(len(real), generator.latent_dim))))
    g_optimizer.zero_grad()
    g_loss.backward()
    g_optimizer.step()
    return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}

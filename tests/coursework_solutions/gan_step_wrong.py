"""A planted wrong answer to assignment 4: the fake samples of the discriminator step are not detached
and the generator's gradients are never cleared, so the generator step also applies the gradient that
the discriminator's loss left in the generator's parameters. The losses themselves are right."""

import scratchgen as sg
from scratchgen.nn import functional as F


def discriminator_loss(real_logits, fake_logits):
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits):
    return F.softplus(-fake_logits).mean()


def train_iteration(generator, discriminator, g_optimizer, d_optimizer, real_batch, k=1):
    for _ in range(k):
        real = real_batch()
        fake = generator(sg.randn(len(real), generator.latent_dim))  # BUG: records G's graph too
        d_loss = discriminator_loss(discriminator(real), discriminator(fake))
        d_optimizer.zero_grad()
        d_loss.backward()  # ... so this also fills the generator's .grad
        d_optimizer.step()
    g_loss = generator_loss(discriminator(generator(sg.randn(len(real), generator.latent_dim))))
    g_loss.backward()  # BUG: no g_optimizer.zero_grad() first: the D step's gradient is still there
    g_optimizer.step()
    return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}

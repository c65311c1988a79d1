"""A planted wrong answer to assignment 4: a generator step after every discriminator step (k of them),
where Algorithm 1 takes k discriminator steps and then one generator step. With k = 1 it is right; with
k > 1 the generator takes k - 1 extra steps. The losses and each step's gradients are right."""

import scratchgen as sg
from scratchgen.nn import functional as F


def discriminator_loss(real_logits, fake_logits):
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


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
        g_optimizer.step()  # BUG: inside the loop, so k generator steps
    return {"d_loss": d_loss.item(), "g_loss": g_loss.item()}

"""A planted wrong answer to assignment 3: the reconstruction term averaged over the pixels instead of
summed (``.mean()`` of everything), so it weighs 1/D of what it should against the KL. The sampler and
the KL are right; the trained VAE is bad, and the grader must blame the average, not σ."""

from scratchgen.nn import functional as F


def reparameterize(mu, logvar, eps):
    return mu + (0.5 * logvar).exp() * eps


def gaussian_kl(mu, logvar):
    return 0.5 * (mu * mu + logvar.exp() - 1.0 - logvar).sum(axis=1)


def vae_loss(logits, x, mu, logvar):
    rec = (F.softplus(logits) - logits * x).mean()  # BUG: a mean over pixels too; sum them, average the batch
    kl = gaussian_kl(mu, logvar).mean()
    return rec + kl, rec, kl

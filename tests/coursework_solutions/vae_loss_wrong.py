"""A planted wrong answer to assignment 3: σ = exp(logvar) in the sampler, while the KL uses
σ² = exp(logvar) (the convention bug gradcheck cannot see: both halves are differentiated correctly)."""

from scratchgen.nn import functional as F


def reparameterize(mu, logvar, eps):
    return mu + logvar.exp() * eps  # BUG: σ = exp(½·logvar)


def gaussian_kl(mu, logvar):
    return 0.5 * (mu * mu + logvar.exp() - 1.0 - logvar).sum(axis=1)


def vae_loss(logits, x, mu, logvar):
    rec = (F.softplus(logits) - logits * x).sum(axis=tuple(range(1, logits.ndim))).mean()
    kl = gaussian_kl(mu, logvar).mean()
    return rec + kl, rec, kl

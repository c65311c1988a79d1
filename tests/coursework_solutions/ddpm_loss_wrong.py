"""A planted wrong answer to assignment 9: the square roots are left out, x_t = ᾱ_t x_0 + (1 − ᾱ_t) ε,
so that x_t's variance is (1 − ᾱ_t)², not 1 − ᾱ_t, and its mean shrinks too fast. The loss around it is
right."""

import scratchgen as sg
from scratchgen.nn import functional as F


def q_sample(x0, t, alpha_bars, noise=None):
    noise = sg.backend.rng().standard_normal(x0.shape, dtype=x0.dtype) if noise is None else noise
    a_bar = alpha_bars[t].reshape((-1,) + (1,) * (x0.ndim - 1)).astype(x0.dtype)
    return a_bar * x0 + (1 - a_bar) * noise  # BUG: √ᾱ_t and √(1 − ᾱ_t)


def ddpm_loss(net, x0, alpha_bars, t=None, noise=None):
    t = sg.backend.rng().integers(1, len(alpha_bars), size=len(x0)) if t is None else t
    noise = sg.backend.rng().standard_normal(x0.shape, dtype=x0.dtype) if noise is None else noise
    return F.mse_loss(net(sg.tensor(q_sample(x0, t, alpha_bars, noise)), t), sg.tensor(noise))

"""A planted wrong answer to assignment 9: the network is trained to predict x_0 instead of the noise ε,
with the same squared error. That is a model too (Ho et al. tried it), but not the ε_θ that the
library's sampler, eq. 11 of the paper, expects."""

import scratchgen as sg
from scratchgen.backend import xp
from scratchgen.nn import functional as F


def q_sample(x0, t, alpha_bars, noise=None):
    noise = sg.backend.rng().standard_normal(x0.shape, dtype=x0.dtype) if noise is None else noise
    a_bar = alpha_bars[t].reshape((-1,) + (1,) * (x0.ndim - 1)).astype(x0.dtype)
    return xp.sqrt(a_bar) * x0 + xp.sqrt(1 - a_bar) * noise


def ddpm_loss(net, x0, alpha_bars, t=None, noise=None):
    t = sg.backend.rng().integers(1, len(alpha_bars), size=len(x0)) if t is None else t
    noise = sg.backend.rng().standard_normal(x0.shape, dtype=x0.dtype) if noise is None else noise
    prediction = net(sg.tensor(q_sample(x0, t, alpha_bars, noise)), t)
    return F.mse_loss(prediction, sg.tensor(x0))  # BUG: the target is x_0, not ε

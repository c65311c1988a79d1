"""A planted wrong answer to assignment 9: an off-by-one in t, x_t made with ᾱ_{t−1} (alpha_bars[t − 1]),
as if the schedule's array started at t = 1. At t = 1 it is ᾱ_0 = 1: x_1 = x_0, with no noise at all,
and the network is asked to guess an ε it cannot see."""

import scratchgen as sg
from scratchgen.backend import xp
from scratchgen.nn import functional as F


def q_sample(x0, t, alpha_bars, noise=None):
    noise = sg.backend.rng().standard_normal(x0.shape, dtype=x0.dtype) if noise is None else noise
    a_bar = alpha_bars[t - 1].reshape((-1,) + (1,) * (x0.ndim - 1)).astype(x0.dtype)  # BUG: ᾱ_{t−1}, not ᾱ_t
    return xp.sqrt(a_bar) * x0 + xp.sqrt(1 - a_bar) * noise


def ddpm_loss(net, x0, alpha_bars, t=None, noise=None):
    t = sg.backend.rng().integers(1, len(alpha_bars), size=len(x0)) if t is None else t
    noise = sg.backend.rng().standard_normal(x0.shape, dtype=x0.dtype) if noise is None else noise
    return F.mse_loss(net(sg.tensor(q_sample(x0, t, alpha_bars, noise)), t), sg.tensor(noise))

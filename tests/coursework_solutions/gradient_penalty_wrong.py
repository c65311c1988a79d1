"""A planted wrong answer to assignment 7: the gradient is taken without create_graph=True, so it is a
constant to the engine. Its value is right, but the penalty sends no gradient into the critic's weights:
training the critic with it is training without it."""

import scratchgen as sg


def interpolate(real, fake):
    with sg.no_grad():
        epsilon = sg.rand((real.shape[0],) + (1,) * (real.ndim - 1), dtype=real.dtype)
        mixed = epsilon * real + (1 - epsilon) * fake
    return mixed.requires_grad_()


def gradient_norms(critic, x_hat):
    (gradients,) = sg.grad(critic(x_hat).sum(), x_hat)  # BUG: no create_graph=True
    return ((gradients.reshape(x_hat.shape[0], -1) ** 2).sum(axis=1) + 1e-12).sqrt()


def gradient_penalty(critic, real, fake, gp_lambda=10.0):
    return gp_lambda * ((gradient_norms(critic, interpolate(real, fake)) - 1) ** 2).mean()

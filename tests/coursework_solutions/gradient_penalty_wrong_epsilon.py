"""A planted wrong answer to assignment 7: one ε for the whole batch, so that every x̂ sits at the same
fraction of the way from its generated sample to its data sample, instead of one ε per sample. On a
linear critic the value is still right (its gradient is the same everywhere)."""

import scratchgen as sg


def interpolate(real, fake):
    with sg.no_grad():
        epsilon = sg.rand(1, dtype=real.dtype)  # BUG: one draw, broadcast over the batch
        mixed = epsilon * real + (1 - epsilon) * fake
    return mixed.requires_grad_()


def gradient_norms(critic, x_hat):
    (gradients,) = sg.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((gradients.reshape(x_hat.shape[0], -1) ** 2).sum(axis=1) + 1e-12).sqrt()


def gradient_penalty(critic, real, fake, gp_lambda=10.0):
    return gp_lambda * ((gradient_norms(critic, interpolate(real, fake)) - 1) ** 2).mean()

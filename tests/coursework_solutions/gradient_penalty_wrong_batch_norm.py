"""A planted wrong answer to assignment 7: the gradient's norm is taken over the whole batch, one number
for all N samples, instead of one per sample; the penalty then asks the batch's gradient, not each
sample's, to have norm 1."""

import scratchgen as sg


def interpolate(real, fake):
    with sg.no_grad():
        epsilon = sg.rand((real.shape[0],) + (1,) * (real.ndim - 1), dtype=real.dtype)
        mixed = epsilon * real + (1 - epsilon) * fake
    return mixed.requires_grad_()


def gradient_norms(critic, x_hat):
    (gradients,) = sg.grad(critic(x_hat).sum(), x_hat, create_graph=True)
    return ((gradients ** 2).sum() + 1e-12).sqrt()  # BUG: summed over the batch axis too


def gradient_penalty(critic, real, fake, gp_lambda=10.0):
    return gp_lambda * ((gradient_norms(critic, interpolate(real, fake)) - 1) ** 2).mean()

"""Assignment 9: the DDPM training loss, x_t in one jump from q(x_t | x_0) and ε-prediction (Ho et al. 2020).

Read ``coursework/09_ddpm_loss/README.md`` first. Fill in the two gaps marked YOUR CODE HERE, then grade
your work from the repository's root with

    python -m pytest coursework/09_ddpm_loss

Conventions (those of scratchgen.models.diffusion): steps t are counted 1..T, and the schedule's array
``alpha_bars`` has T + 1 entries indexed by t itself, with alpha_bars[0] = ᾱ_0 = 1 (x_0 is the data):
ᾱ_t is ``alpha_bars[t]``. Build one with ``Diffusion(net, T).alpha_bars``.

The arrays are those of the active backend, as ``alpha_bars`` is: NumPy's, or CuPy's on a GPU. Compute
with ``xp`` (``xp.sqrt``), which is whichever of the two is active.
"""

import scratchgen as sg  # noqa: F401  (sg.backend.rng(), sg.tensor)
from scratchgen.backend import xp  # noqa: F401  (xp.sqrt: NumPy, or CuPy on a GPU)
from scratchgen.nn import functional as F  # noqa: F401  (F.mse_loss)


def q_sample(x0, t, alpha_bars, noise=None):
    """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε: a sample of q(x_t | x_0), in one jump.

    Args:
        x0: the data, an array (N, ...) (float32 or float64).
        t: the step of each example, an integer array (N,) with values in 1..T.
        alpha_bars: ᾱ_0..ᾱ_T, a float64 array (T + 1,).
        noise: ε, an array of x0's shape; None to draw it from N(0, I) with scratchgen's generator.

    Returns:
        x_t, an array of x0's shape and dtype.
    """
    # YOUR CODE HERE: about 4 lines. When noise is None: sg.backend.rng().standard_normal(x0.shape,
    # dtype=x0.dtype). ᾱ_t of each example is alpha_bars[t]; reshape it to (N, 1, ..., 1) so that it
    # broadcasts over an example's axes, and cast it to x0.dtype.
    raise NotImplementedError("your code here: q_sample")


def ddpm_loss(net, x0, alpha_bars, t=None, noise=None):
    """L_simple = mean over the batch and coordinates of (ε − ε_θ(x_t, t))², x_t from q_sample.

    Args:
        net: the noise predictor ε_θ, called as net(x_t, t) with x_t a Tensor (N, ...) and t the integer
            array (N,); returns a Tensor of x_t's shape.
        x0: the data, an array (N, ...).
        alpha_bars: ᾱ_0..ᾱ_T, (T + 1,).
        t: the steps (N,); None to draw each uniformly from 1..T with scratchgen's generator.
        noise: ε (N, ...); None to draw it from N(0, I).

    Returns:
        A scalar Tensor, differentiable in the network's parameters.
    """
    # YOUR CODE HERE: about 6 lines. T = len(alpha_bars) − 1; sg.backend.rng().integers(low, high, size=N)
    # draws from low to high − 1. Draw ε here (not inside q_sample): the loss compares the network's
    # prediction with the very ε that made x_t.
    raise NotImplementedError("your code here: ddpm_loss")

"""Denoising diffusion (Sohl-Dickstein et al. 2015; Ho, Jain & Abbeel 2020) and DDIM sampling (Song et al. 2021).

A diffusion model is a VAE (see :mod:`scratchgen.models.vae`) whose encoder is fixed and whose latent
code is a whole chain x_1, ..., x_T of ever noisier copies of the data x_0. The *encoder*, or forward
process, adds a little Gaussian noise at each step, with a variance schedule β_1 < ... < β_T:

    q(x_t | x_{t−1}) = N(√α_t x_{t−1}, β_t I),    α_t = 1 − β_t,

and, because Gaussians compose, any step in one jump (Ho et al., eq. 4), with ᾱ_t = α_1 α_2 ... α_t:

    q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I),  i.e.  x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε,  ε ~ N(0, I).

When ᾱ_T ≈ 0, x_T is pure noise, matching the prior p(x_T) = N(0, I). The *decoder*, or reverse process,
is learned: p_θ(x_{t−1} | x_t) = N(μ_θ(x_t, t), σ_t² I), undoing one step at a time. As for the VAE,
log p_θ(x_0) is bounded below by an ELBO, here a sum of terms (Ho et al., eq. 5):

    −log p_θ(x_0) ≤ L_T + Σ_{t=2}^{T} L_{t−1} + L_0,    where
    L_T     = KL(q(x_T | x_0) ‖ p(x_T))                        the prior term, with no parameters;
    L_{t−1} = KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t))   one Gaussian KL per step;
    L_0     = −log p_θ(x_0 | x_1)                              the decoder (reconstruction) term.

The posterior of one step given the data is Gaussian in closed form (eq. 6 and 7):

    q(x_{t−1} | x_t, x_0) = N(μ̃_t, β̃_t I),   μ̃_t = √ᾱ_{t−1} β_t/(1−ᾱ_t) x_0 + √α_t (1−ᾱ_{t−1})/(1−ᾱ_t) x_t,
                                              β̃_t = (1−ᾱ_{t−1})/(1−ᾱ_t) β_t.

Ho et al. write μ_θ through a network ε_θ that predicts the noise in x_t (eq. 11):
μ_θ(x_t, t) = (x_t − β_t/√(1−ᾱ_t) ε_θ(x_t, t)) / √α_t. Each L_{t−1} is then a weighted squared error
β_t²/(2σ_t² α_t (1−ᾱ_t)) ‖ε − ε_θ(x_t, t)‖² (eq. 12); dropping the weights gives the *simple loss*

    L_simple = E_{t ~ U{1..T}, x_0, ε} ‖ε − ε_θ(√ᾱ_t x_0 + √(1−ᾱ_t) ε, t)‖²,

which trains better, and is what :meth:`Diffusion.loss` computes (mean over coordinates, as PyTorch's
``mse_loss``). :meth:`Diffusion.bound_terms` computes the bound itself, each term by its own method.

Conventions. Steps t are counted 1..T as in the papers; the schedule's arrays are indexed by t and hold
t = 0 too (β_0 = 0, ᾱ_0 = 1: x_0 is the data). The reverse variance σ_t² is β̃_t ("posterior", the
default) or β_t ("beta"), the two choices of Ho et al. (section 3.2: β_t is optimal for data N(0, I),
β̃_t for data at one point; the toys' tight modes are nearer the second). The data here are continuous
(2-D points), so the decoder p_θ(x_0 | x_1) is a Gaussian N(μ_θ(x_1, 1), β_1 I), where Ho et al. use a
discretised one for 8-bit pixels; its variance is β_1 under both choices, since β̃_1 = 0. As in their
Algorithm 2 the sampler's last step adds no noise, returning the decoder's mean.

Builds on :mod:`scratchgen.nn` (:class:`DenoisingMLP`); the schedules, the forward process and the
samplers are plain array arithmetic on the active backend, in float64 for the schedule.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy

from scratchgen import backend, nn
from scratchgen.autograd import no_grad
from scratchgen.nn import functional as F
from scratchgen.ops import concatenate
from scratchgen.tensor import Tensor

__all__ = [
    "SCHEDULES", "linear_schedule", "cosine_schedule", "ddim_timesteps", "sinusoidal_embedding", "DenoisingMLP",
    "Diffusion", "BoundTerms",
]

LOG_2PI = math.log(2 * math.pi)


# ------------------------------------------------------------------------------------------- schedules


def linear_schedule(T: int, max_beta: float = 0.999) -> numpy.ndarray:
    """β_1..β_T rising linearly from 1e-4 to 0.02 (Ho et al. 2020, section 4), for T = 1000.

    For other T both ends are scaled by 1000/T, as Nichol & Dhariwal (2021) do, so that ᾱ_T stays near 0
    (at T = 1000, ᾱ_T ≈ 4e-5); below T = 21 the last betas would reach 1 and are clipped at ``max_beta``,
    as in :func:`cosine_schedule`. Returns (T,) float64.
    """
    scale = 1000 / T
    return numpy.minimum(numpy.linspace(scale * 1e-4, scale * 0.02, T, dtype=numpy.float64), max_beta)


def cosine_schedule(T: int, s: float = 0.008, max_beta: float = 0.999) -> numpy.ndarray:
    """β_1..β_T from ᾱ_t = f(t)/f(0), f(t) = cos²((t/T + s)/(1 + s) · π/2) (Nichol & Dhariwal 2021, eq. 17).

    ᾱ_t falls slowly at both ends and linearly in between, where the linear schedule destroys
    information quickly and then wastes its last steps on noise. β_t = 1 − ᾱ_t/ᾱ_{t−1}, clipped at
    ``max_beta`` to avoid a singularity at t = T; the offset s keeps β_1 from being vanishingly small.
    """
    f = numpy.cos((numpy.arange(T + 1) / T + s) / (1 + s) * math.pi / 2) ** 2
    return numpy.minimum(1 - f[1:] / f[:-1], max_beta)


SCHEDULES = {"linear": linear_schedule, "cosine": cosine_schedule}


def ddim_timesteps(T: int, steps: int) -> list:
    """``steps`` steps from T down to 1, evenly spaced (Song et al. 2021, section 4.2): the subsequence τ."""
    if not 1 <= steps <= T:
        raise ValueError(f"ddim_timesteps: steps must be from 1 to T = {T}, got {steps}")
    return sorted({int(round(t)) for t in numpy.linspace(1, T, steps)}, reverse=True)


# ------------------------------------------------------------------------------------------ the network


def sinusoidal_embedding(t, dim: int = 64, max_period: float = 10_000.0, dtype=backend.DEFAULT_DTYPE):
    """The Transformer's position code (Vaswani et al. 2017, section 3.5), for steps: (N,) -> (N, dim).

    [sin(t ω_0), ..., sin(t ω_{d/2−1}), cos(t ω_0), ..., cos(t ω_{d/2−1})], ω_k = max_period^(−k/(d/2)):
    wavelengths from 2π to 2π·max_period steps, so that near steps get near codes at every scale. Ho et
    al. feed it to every block of their U-Net; here it is concatenated to the point.
    """
    if dim % 2:
        raise ValueError(f"sinusoidal_embedding: dim must be even, got {dim}")
    xp = backend.xp
    frequencies = xp.exp(-math.log(max_period) * xp.arange(dim // 2, dtype=xp.float64) / (dim // 2))
    angles = xp.asarray(t, dtype=xp.float64)[:, None] * frequencies[None, :]
    return xp.concatenate([xp.sin(angles), xp.cos(angles)], axis=1).astype(dtype)


class DenoisingMLP(nn.Module):
    """ε_θ(x_t, t) for points: [x_t, embedding(t)] -> hidden layers -> the predicted noise, (N, dim).

    Args:
        dim: the points' dimension (2 for the toys).
        hidden: widths of the hidden layers: three of 128, the network of issue 20's reference.
        embedding_dim: numbers in the step's :func:`sinusoidal_embedding` (64).
        activation: "relu", or "silu" (smooth, as in Ho et al.'s U-Net). On ring8 (seed 0, the demo's
            defaults) ReLU put 68.6% of the samples within 3 std of a mode, SiLU 51.4%, and ReLU trains
            and samples about a fifth faster.
    """

    def __init__(self, dim: int = 2, hidden=(128, 128, 128), embedding_dim: int = 64, activation: str = "relu"):
        super().__init__()
        layers = {"silu": nn.SiLU, "relu": nn.ReLU}
        if activation not in layers:
            raise ValueError(f"DenoisingMLP: activation must be one of {tuple(layers)}, got {activation!r}")
        self.dim, self.embedding_dim = dim, embedding_dim
        blocks, width = [], dim + embedding_dim
        for size in hidden:
            blocks += [nn.Linear(width, size), layers[activation]()]
            width = size
        self.net = nn.Sequential(*blocks, nn.Linear(width, dim))

    def forward(self, x: Tensor, t) -> Tensor:
        """x: (N, dim) noisy points; t: (N,) integer steps. Returns ε_θ(x, t), (N, dim)."""
        code = Tensor(sinusoidal_embedding(t, self.embedding_dim, dtype=x.dtype))
        return self.net(concatenate([x, code], axis=1))


# --------------------------------------------------------------------------------------------- the model


def _per_row(values, like):
    """(N,) values as (N, 1, ...), to broadcast against ``like`` (N, ...), in like's dtype."""
    return values.reshape(values.shape + (1,) * (like.ndim - 1)).astype(like.dtype)


class BoundTerms(NamedTuple):
    """The ELBO's terms for each data point, in nats (summed over coordinates); see the module docstring."""

    prior: Tensor  #: L_T, (N,)
    transitions: Tensor  #: L_1 .. L_{T−1}, (T − 1, N): row t − 2 is L_{t−1}
    decoder: Tensor  #: L_0, (N,)

    @property
    def bound(self) -> Tensor:
        """L_T + Σ L_{t−1} + L_0 ≥ −log p_θ(x_0), (N,)."""
        return self.prior + self.transitions.sum(axis=0) + self.decoder


class Diffusion(nn.Module):
    """A variance schedule, the forward process it defines, and a learned reverse process ε_θ.

    Args:
        net: the ε-network, called as ``net(x_t, t)`` with x_t a Tensor (N, ...) and t an integer array
            (N,) of steps in 1..T; returns a Tensor of x_t's shape.
        T: the number of steps.
        schedule: "linear" or "cosine" (see :data:`SCHEDULES`), or an array of T betas.
        variance: σ_t² of the reverse steps: "posterior" (β̃_t) or "beta" (β_t).

    Attributes:
        betas, alphas, alpha_bars, posterior_variances: (T + 1,) float64 arrays indexed by t, with β_0 = 0
            and ᾱ_0 = 1; ``posterior_variances`` holds β̃_t.
    """

    def __init__(self, net: nn.Module, T: int = 1000, schedule="linear", variance: str = "posterior"):
        super().__init__()
        if variance not in ("posterior", "beta"):
            raise ValueError(f"Diffusion: variance must be 'posterior' or 'beta', got {variance!r}")
        betas = SCHEDULES[schedule](T) if isinstance(schedule, str) else numpy.asarray(schedule, numpy.float64)
        if betas.shape != (T,) or not ((betas > 0) & (betas < 1)).all():
            raise ValueError(f"Diffusion: the schedule must be {T} betas in (0, 1), got shape {betas.shape}")
        self.net, self.T, self.variance = net, T, variance
        xp = backend.xp
        self.betas = xp.asarray(numpy.concatenate([[0.0], betas]))
        self.alphas = 1 - self.betas
        self.alpha_bars = xp.cumprod(self.alphas)
        # β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) β_t for t ≥ 1, so β̃_1 = 0; β̃_0 = 0 too, and never used.
        previous = xp.concatenate([xp.ones(1), self.alpha_bars[:-1]])
        self.posterior_variances = self.betas * (1 - previous) / xp.maximum(1 - self.alpha_bars, 1e-20)

    def _at(self, array, t, like):
        """array[t] shaped to broadcast against ``like`` (N, ...): one coefficient per row, in like's dtype."""
        return _per_row(array[backend.xp.asarray(t)], like)

    def _steps(self, t, n: int):
        """t as an integer array (n,) of steps in 1..T, from an int or an array."""
        t = backend.xp.full(n, t) if numpy.isscalar(t) else backend.xp.asarray(t)
        if t.shape != (n,) or int(t.min()) < 1 or int(t.max()) > self.T:
            raise ValueError(f"Diffusion: steps must be {n} integers from 1 to T = {self.T}")
        return t

    def reverse_variance(self, t):
        """σ_t² of p_θ(x_{t−1} | x_t): β̃_t or β_t by ``variance``, and β_1 at t = 1 (the decoder's)."""
        xp = backend.xp
        chosen = self.posterior_variances if self.variance == "posterior" else self.betas
        return xp.where(xp.asarray(t) == 1, self.betas[1], chosen[xp.asarray(t)])

    # ------------------------------------------------------------------ the forward process q, on arrays

    def q_step(self, x_prev, t, noise=None):
        """One step of the chain, x_t = √α_t x_{t−1} + √β_t ε: a sample of q(x_t | x_{t−1}). Arrays (N, ...)."""
        noise = backend.rng().standard_normal(x_prev.shape, dtype=x_prev.dtype) if noise is None else noise
        t = self._steps(t, len(x_prev))
        xp = backend.xp
        return self._at(xp.sqrt(self.alphas), t, x_prev) * x_prev + self._at(xp.sqrt(self.betas), t, x_prev) * noise

    def q_mean_variance(self, x0, t):
        """q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I): (mean (N, ...), variance broadcastable to it)."""
        t = self._steps(t, len(x0))
        return self._at(backend.xp.sqrt(self.alpha_bars), t, x0) * x0, self._at(1 - self.alpha_bars, t, x0)

    def q_sample(self, x0, t, noise=None):
        """x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε, a sample of q(x_t | x_0) in one jump. Arrays (N, ...)."""
        noise = backend.rng().standard_normal(x0.shape, dtype=x0.dtype) if noise is None else noise
        mean, variance = self.q_mean_variance(x0, t)
        return mean + backend.xp.sqrt(variance) * noise

    def q_posterior(self, x0, x_t, t):
        """q(x_{t−1} | x_t, x_0) = N(μ̃_t, β̃_t I) (Ho et al., eq. 7): (μ̃_t (N, ...), β̃_t broadcastable)."""
        xp, t = backend.xp, self._steps(t, len(x0))
        a_bar, a_bar_prev = self._at(self.alpha_bars, t, x0), self._at(self.alpha_bars, t - 1, x0)
        beta, alpha = self._at(self.betas, t, x0), self._at(self.alphas, t, x0)
        mean = xp.sqrt(a_bar_prev) * beta / (1 - a_bar) * x0 + xp.sqrt(alpha) * (1 - a_bar_prev) / (1 - a_bar) * x_t
        return mean, self._at(self.posterior_variances, t, x0)

    # ------------------------------------------------------------------ the reverse process p_θ

    def predicted_mean(self, x_t: Tensor, t, eps: Tensor) -> Tensor:
        """μ_θ(x_t, t) = (x_t − β_t/√(1 − ᾱ_t) ε_θ) / √α_t (Ho et al., eq. 11), from the predicted noise."""
        xp = backend.xp
        coefficient = self._at(self.betas / xp.sqrt(xp.maximum(1 - self.alpha_bars, 1e-20)), t, x_t.data)
        return (x_t - eps * coefficient) * self._at(1 / xp.sqrt(self.alphas), t, x_t.data)

    def loss(self, x0: Tensor, t=None, noise=None) -> Tensor:
        """L_simple: the mean of (ε − ε_θ(x_t, t))² over the batch and coordinates, one step t ~ U{1..T}
        and one ε per point (Ho et al., Algorithm 1). Pass t and noise to fix them."""
        x0 = x0.data if isinstance(x0, Tensor) else backend.xp.asarray(x0)
        t = backend.rng().integers(1, self.T + 1, size=len(x0)) if t is None else self._steps(t, len(x0))
        noise = backend.rng().standard_normal(x0.shape, dtype=x0.dtype) if noise is None else noise
        return F.mse_loss(self.net(Tensor(self.q_sample(x0, t, noise)), t), Tensor(noise))

    # ------------------------------------------------------------------ the bound, term by term

    def prior_term(self, x0) -> Tensor:
        """L_T = KL(N(√ᾱ_T x_0, (1 − ᾱ_T) I) ‖ N(0, I)) = ½ Σ (ᾱ_T x_0² + v − 1 − log v), v = 1 − ᾱ_T: (N,)."""
        x0 = x0.data if isinstance(x0, Tensor) else x0
        mean, variance = self.q_mean_variance(x0, self.T)
        kl = 0.5 * (mean * mean + variance - 1 - backend.xp.log(variance))
        return Tensor(kl.reshape(len(x0), -1).sum(axis=1))

    def transition_term(self, x0, t, noise=None) -> Tensor:
        """L_{t−1} = KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)) at one x_t ~ q(x_t | x_0), for t ≥ 2: (N,).

        Between two Gaussians with variances β̃_t and σ_t² (per coordinate):
        ½ Σ (log(σ_t²/β̃_t) + β̃_t/σ_t² − 1 + (μ̃_t − μ_θ)²/σ_t²). Differentiable in the network's weights.
        """
        x0 = x0.data if isinstance(x0, Tensor) else x0
        t = self._steps(t, len(x0))
        if int(t.min()) < 2:
            raise ValueError("transition_term: t must be at least 2; the step to x_0 is the decoder_term")
        x_t = self.q_sample(x0, t, noise)
        true_mean, true_variance = self.q_posterior(x0, x_t, t)
        variance = _per_row(self.reverse_variance(t), x0)
        mean = self.predicted_mean(Tensor(x_t), t, self.net(Tensor(x_t), t))
        diff = mean - Tensor(true_mean)
        constant = 0.5 * (backend.xp.log(variance / true_variance) + true_variance / variance - 1)
        kl = diff * diff * Tensor(0.5 / variance) + Tensor(backend.xp.broadcast_to(constant, x0.shape))
        return kl.reshape(len(x0), -1).sum(axis=1)

    def decoder_term(self, x0, noise=None) -> Tensor:
        """L_0 = −log N(x_0; μ_θ(x_1, 1), β_1 I) at one x_1 ~ q(x_1 | x_0): the Gaussian decoder, (N,)."""
        x0 = x0.data if isinstance(x0, Tensor) else x0
        t = self._steps(1, len(x0))
        x_1 = self.q_sample(x0, t, noise)
        mean = self.predicted_mean(Tensor(x_1), t, self.net(Tensor(x_1), t))
        variance = float(self.betas[1])
        diff = mean - Tensor(x0)
        return (0.5 * (diff * diff / variance + math.log(variance) + LOG_2PI)).reshape(len(x0), -1).sum(axis=1)

    def bound_terms(self, x0) -> BoundTerms:
        """Every term of the bound for each point, one x_t per step and point: T network calls on N points.

        ``bound_terms(x0).bound`` is an unbiased estimate of the bound L ≥ −log p_θ(x_0), in nats per point.
        """
        x0 = x0.data if isinstance(x0, Tensor) else backend.xp.asarray(x0)
        transitions = [self.transition_term(x0, t) for t in range(2, self.T + 1)]
        empty = Tensor(backend.xp.zeros((0, len(x0)), dtype=x0.dtype))
        rows = concatenate([row.reshape(1, -1) for row in transitions]) if transitions else empty
        return BoundTerms(self.prior_term(x0), rows, self.decoder_term(x0))

    # ------------------------------------------------------------------ sampling

    def _eps(self, x, t: int):
        """ε_θ(x, t) as an array, without recording a graph."""
        with no_grad():
            return self.net(Tensor(x), backend.xp.full(len(x), t)).data

    def _start(self, n: int, x_T, dim):
        """The sampler's x_T: the one given, as an array, or n fresh draws of N(0, I) of shape (n, *dim)."""
        if x_T is not None:
            return x_T.data if isinstance(x_T, Tensor) else backend.xp.asarray(x_T)
        return backend.rng().standard_normal((n,) + tuple(dim), dtype=backend.DEFAULT_DTYPE)

    def ancestral_steps(self, n: int, x_T=None, dim=(2,)):
        """Ho et al.'s Algorithm 2, step by step: yields (T, x_T), then (t − 1, x_{t−1}) after each step,
        x_{t−1} = μ_θ(x_t, t) + σ_t z with z ~ N(0, I), and z = 0 at the last step (t = 1).

        Args:
            n: number of samples; dim: one sample's shape. x_T: the starting noise (n, *dim), or None to draw it.
        """
        x = self._start(n, x_T, dim)
        yield self.T, x
        for t in range(self.T, 0, -1):
            mean = self.predicted_mean(Tensor(x), backend.xp.full(len(x), t), Tensor(self._eps(x, t))).data
            if t > 1:
                noise = backend.rng().standard_normal(x.shape, dtype=x.dtype)
                mean = mean + math.sqrt(float(self.reverse_variance(t))) * noise
            x = mean
            yield t - 1, x

    def ddim_steps(self, n: int, steps=None, eta: float = 0.0, x_T=None, dim=(2,)):
        """DDIM (Song et al. 2021, eq. 12) over a subsequence τ of the steps: yields (t, x_t) from T to 0.

        From x_t to x_s, s the next step of τ (or 0): predict x̂_0 = (x_t − √(1 − ᾱ_t) ε_θ)/√ᾱ_t, then

            x_s = √ᾱ_s x̂_0 + √(1 − ᾱ_s − σ²) ε_θ + σ z,   σ = η √((1 − ᾱ_s)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_s).

        η = 0 is deterministic (an ODE, x_T to x_0 a fixed map); η = 1 over all T steps has σ² = β̃_t and
        the mean μ̃(x_t, x̂_0) = μ_θ, exactly the ancestral sampler with ``variance="posterior"``.

        Args:
            steps: the number of steps (evenly spaced, :func:`ddim_timesteps`), or the steps themselves (the
                largest should be T, where x_T ~ N(0, I) holds); None for all T.
            eta: η from 0 to 1 (beyond 1, σ² would exceed 1 − ᾱ_s). n, x_T, dim: as in :meth:`ancestral_steps`.
        """
        if not 0 <= eta <= 1:
            raise ValueError(f"ddim_steps: eta must be from 0 to 1, got {eta}")
        steps = self.T if steps is None else steps
        taus = ddim_timesteps(self.T, steps) if numpy.isscalar(steps) else sorted({int(s) for s in steps}, reverse=True)
        if not 1 <= taus[-1] <= taus[0] <= self.T:
            raise ValueError(f"ddim_steps: steps must lie from 1 to T = {self.T}, got {taus}")
        x = self._start(n, x_T, dim)
        yield taus[0], x
        for t, s in zip(taus, taus[1:] + [0]):
            a_t, a_s = float(self.alpha_bars[t]), float(self.alpha_bars[s])
            eps = self._eps(x, t)
            x0_hat = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
            sigma = eta * math.sqrt((1 - a_s) / (1 - a_t) * (1 - a_t / a_s))
            x = math.sqrt(a_s) * x0_hat + math.sqrt(max(1 - a_s - sigma ** 2, 0.0)) * eps  # max: round-off only
            if sigma > 0:
                x = x + sigma * backend.rng().standard_normal(x.shape, dtype=x.dtype)
            yield s, x

    def sample(self, n: int, sampler: str = "ancestral", steps=None, eta: float = 0.0, x_T=None, dim=(2,)) -> Tensor:
        """n samples x_0, (n, *dim): by ``sampler`` "ancestral" (all T steps) or "ddim" (``steps``, ``eta``)."""
        if sampler == "ancestral":
            path = self.ancestral_steps(n, x_T, dim)
        elif sampler == "ddim":
            path = self.ddim_steps(n, steps, eta, x_T, dim)
        else:
            raise ValueError(f"Diffusion.sample: sampler must be 'ancestral' or 'ddim', got {sampler!r}")
        for _, x in path:
            pass
        return Tensor(x)

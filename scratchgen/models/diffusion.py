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

**What the network predicts.** ε is one choice of three that carry the same information, since
x_t = a x_0 + s ε with a = √ᾱ_t, s = √(1 − ᾱ_t) and a² + s² = 1: the network may instead predict x_0
itself, or the "velocity" v = a ε − s x_0 (Salimans & Ho 2022), and every formula above reads the noise
back from it,

    ε = (x_t − a x̂_0) / s        (x_0-prediction)          ε = a v̂ + s x_t        (v-prediction).

The three simple losses weight the steps differently. With x_t fixed, ε̂ − ε = a (v̂ − v) = −(a/s)(x̂_0 − x_0),
so ‖v̂ − v‖² = ‖ε̂ − ε‖²/ᾱ_t: v-prediction weighs the noisy steps, where ε is nearly x_t and ε's loss
says almost nothing about x_0, 1/ᾱ_t times more. They decide the coarse shape of a sample, which is
what a short training run lacks (:attr:`Diffusion.prediction`).

**Labels and classifier-free guidance** (Ho & Salimans 2022). A conditional network ε_θ(x_t, t, y)
with one extra label ∅ ("no label") is trained with y replaced by ∅ some of the time (``drop_labels``
in :meth:`Diffusion.loss`), so that the same weights give both ε_θ(x_t, t, y) and ε_θ(x_t, t, ∅). The
samplers then follow

    ε̃ = (1 + w) ε_θ(x_t, t, y) − w ε_θ(x_t, t, ∅),

the guidance weight w ≥ 0 pushing the samples towards what distinguishes y from the other labels: w = 0
is the conditional model itself, larger w trades diversity for samples that are plainly of their label.

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
    "PREDICTIONS", "SCHEDULES", "linear_schedule", "cosine_schedule", "ddim_timesteps", "sinusoidal_embedding", "DenoisingMLP",
    "Diffusion", "BoundTerms",
]

LOG_2PI = math.log(2 * math.pi)

#: What the network may predict: the noise ε, the data x_0, or v = √ᾱ_t ε − √(1 − ᾱ_t) x_0.
PREDICTIONS = ("eps", "x0", "v")


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
        prediction: what the network's output is (:data:`PREDICTIONS`): "eps" (Ho et al.), "x0" or "v".
            The loss regresses it; every other method reads the noise back from it (:meth:`predict_eps`).

    Attributes:
        betas, alphas, alpha_bars, posterior_variances: (T + 1,) float64 arrays indexed by t, with β_0 = 0
            and ᾱ_0 = 1; ``posterior_variances`` holds β̃_t.
    """

    def __init__(self, net: nn.Module, T: int = 1000, schedule="linear", variance: str = "posterior",
                 prediction: str = "eps"):
        super().__init__()
        if variance not in ("posterior", "beta"):
            raise ValueError(f"Diffusion: variance must be 'posterior' or 'beta', got {variance!r}")
        if prediction not in PREDICTIONS:
            raise ValueError(f"Diffusion: prediction must be one of {PREDICTIONS}, got {prediction!r}")
        self.prediction = prediction
        betas = SCHEDULES[schedule](T) if isinstance(schedule, str) else numpy.asarray(schedule, numpy.float64)
        if betas.shape != (T,) or not ((betas > 0) & (betas < 1)).all():
            raise ValueError(f"Diffusion: the schedule must be {T} betas in (0, 1), got shape {betas.shape}")
        self.net, self.T, self.variance = net, T, variance
        # The samplers' per-step scalars come from host copies, so that no step waits on a device read.
        self._host_alpha_bars = numpy.cumprod(1 - numpy.concatenate([[0.0], betas]))
        xp = backend.xp
        self.betas = xp.asarray(numpy.concatenate([[0.0], betas]))
        self.alphas = 1 - self.betas
        self.alpha_bars = xp.cumprod(self.alphas)
        # β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) β_t for t ≥ 1, so β̃_1 = 0; β̃_0 = 0 too, and never used.
        previous = xp.concatenate([xp.ones(1), self.alpha_bars[:-1]])
        self.posterior_variances = self.betas * (1 - previous) / xp.maximum(1 - self.alpha_bars, 1e-20)
        self._host_reverse_variances = backend.to_numpy(self.reverse_variance(numpy.arange(T + 1)))

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

    def _network(self, x_t: Tensor, t, y=None) -> Tensor:
        """The network's raw output at (x_t, t), and y where there are labels."""
        return self.net(x_t, t) if y is None else self.net(x_t, t, y)

    def predict_eps(self, x_t: Tensor, t, y=None) -> Tensor:
        """ε_θ(x_t, t), or ε_θ(x_t, t, y): the noise the network sees in x_t, read from its output by
        :attr:`prediction` (the module docstring's formulas). A Tensor of x_t's shape, differentiable."""
        out = self._network(x_t, t, y)
        if self.prediction == "eps":
            return out
        xp = backend.xp
        a, s = self._at(xp.sqrt(self.alpha_bars), t, x_t.data), self._at(xp.sqrt(1 - self.alpha_bars), t, x_t.data)
        if self.prediction == "v":
            return out * a + x_t * s
        return (x_t - out * a) * (1 / s)  # x0: t ≥ 1, so s ≥ √β_1 > 0

    def target(self, x0, t, noise):
        """What the network's output should be at x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε: ε, x_0 or v (arrays)."""
        if self.prediction == "eps":
            return noise
        if self.prediction == "x0":
            return x0
        xp = backend.xp
        return self._at(xp.sqrt(self.alpha_bars), t, x0) * noise - self._at(xp.sqrt(1 - self.alpha_bars), t, x0) * x0

    def predicted_mean(self, x_t: Tensor, t, eps: Tensor) -> Tensor:
        """μ_θ(x_t, t) = (x_t − β_t/√(1 − ᾱ_t) ε_θ) / √α_t (Ho et al., eq. 11), from the predicted noise."""
        xp = backend.xp
        coefficient = self._at(self.betas / xp.sqrt(xp.maximum(1 - self.alpha_bars, 1e-20)), t, x_t.data)
        return (x_t - eps * coefficient) * self._at(1 / xp.sqrt(self.alphas), t, x_t.data)

    def loss(self, x0: Tensor, t=None, noise=None, y=None, drop_labels: float = 0.0) -> Tensor:
        """L_simple: the mean of (ε − ε_θ(x_t, t))² over the batch and coordinates, one step t ~ U{1..T}
        and one ε per point (Ho et al., Algorithm 1); for x_0- or v-prediction, the same with their
        targets (:meth:`target`). Pass t and noise to fix them.

        Args:
            y: (N,) integer labels for a conditional network, or None.
            drop_labels: the probability with which each label is replaced by the network's
                ``null_label`` (∅), to train for classifier-free guidance: 0.1 in Ho & Salimans.
        """
        x0 = x0.data if isinstance(x0, Tensor) else backend.xp.asarray(x0)
        t = backend.rng().integers(1, self.T + 1, size=len(x0)) if t is None else self._steps(t, len(x0))
        noise = backend.rng().standard_normal(x0.shape, dtype=x0.dtype) if noise is None else backend.xp.asarray(noise)
        if not 0 <= drop_labels <= 1:
            raise ValueError(f"Diffusion.loss: drop_labels is a probability, got {drop_labels}")
        if drop_labels and y is None:
            raise ValueError("Diffusion.loss: drop_labels needs labels y to drop")
        if y is not None:
            y = backend.xp.asarray(y)
            if drop_labels:
                dropped = backend.rng().random(len(y)) < drop_labels
                y = backend.xp.where(dropped, self.net.null_label, y)
        out = self._network(Tensor(self.q_sample(x0, t, noise)), t, y)
        return F.mse_loss(out, Tensor(self.target(x0, t, noise)))

    # ------------------------------------------------------------------ the bound, term by term

    def prior_term(self, x0) -> Tensor:
        """L_T = KL(N(√ᾱ_T x_0, (1 − ᾱ_T) I) ‖ N(0, I)) = ½ Σ (ᾱ_T x_0² + v − 1 − log v), v = 1 − ᾱ_T: (N,)."""
        x0 = x0.data if isinstance(x0, Tensor) else x0
        mean, variance = self.q_mean_variance(x0, self.T)
        kl = 0.5 * (mean * mean + variance - 1 - backend.xp.log(variance))
        return Tensor(kl.reshape(len(x0), -1).sum(axis=1))

    def transition_term(self, x0, t, noise=None, y=None) -> Tensor:
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
        mean = self.predicted_mean(Tensor(x_t), t, self.predict_eps(Tensor(x_t), t, y))
        diff = mean - Tensor(true_mean)
        constant = 0.5 * (backend.xp.log(variance / true_variance) + true_variance / variance - 1)
        kl = diff * diff * Tensor(0.5 / variance) + Tensor(backend.xp.broadcast_to(constant, x0.shape))
        return kl.reshape(len(x0), -1).sum(axis=1)

    def decoder_term(self, x0, noise=None, y=None) -> Tensor:
        """L_0 = −log N(x_0; μ_θ(x_1, 1), β_1 I) at one x_1 ~ q(x_1 | x_0): the Gaussian decoder, (N,)."""
        x0 = x0.data if isinstance(x0, Tensor) else x0
        t = self._steps(1, len(x0))
        x_1 = self.q_sample(x0, t, noise)
        mean = self.predicted_mean(Tensor(x_1), t, self.predict_eps(Tensor(x_1), t, y))
        variance = float(self.betas[1])
        diff = mean - Tensor(x0)
        return (0.5 * (diff * diff / variance + math.log(variance) + LOG_2PI)).reshape(len(x0), -1).sum(axis=1)

    def bound_terms(self, x0, y=None) -> BoundTerms:
        """Every term of the bound for each point, one x_t per step and point: T network calls on N points.

        ``bound_terms(x0).bound`` is an unbiased estimate of the bound L ≥ −log p_θ(x_0), in nats per point;
        with labels y, of L ≥ −log p_θ(x_0 | y).
        """
        x0 = x0.data if isinstance(x0, Tensor) else backend.xp.asarray(x0)
        transitions = [self.transition_term(x0, t, y=y) for t in range(2, self.T + 1)]
        empty = Tensor(backend.xp.zeros((0, len(x0)), dtype=x0.dtype))
        rows = concatenate([row.reshape(1, -1) for row in transitions]) if transitions else empty
        return BoundTerms(self.prior_term(x0), rows, self.decoder_term(x0, y=y))

    # ------------------------------------------------------------------ sampling

    def _eps(self, x, t: int, y=None, guidance: float = 0.0):
        """ε_θ(x, t) as an array, without recording a graph; with labels y, ε_θ(x, t, y), and with a
        guidance weight w > 0 the guided (1 + w) ε_θ(x, t, y) − w ε_θ(x, t, ∅), both halves in one call."""
        xp, n = backend.xp, len(x)
        steps = xp.full(n, t)
        with no_grad():
            if y is None or not guidance:
                return self.predict_eps(Tensor(x), steps, y).data
            null = xp.full(n, self.net.null_label)
            both = self.predict_eps(Tensor(xp.concatenate([x, x])), xp.concatenate([steps, steps]),
                                    xp.concatenate([y, null])).data
            return (1 + guidance) * both[:n] - guidance * both[n:]

    def _denoised(self, x, t: int, eps, clip):
        """x̂_0 = (x_t − √(1 − ᾱ_t) ε)/√ᾱ_t and the ε that goes with it: with ``clip`` = c, x̂_0 is held to
        [−c, c] (images live in [−1, 1]; Ho et al.'s sampler clips so) and ε is read back from the clipped x̂_0."""
        a, s = math.sqrt(self._host_alpha_bars[t]), math.sqrt(1 - self._host_alpha_bars[t])
        x0_hat = (x - s * eps) / a
        if clip is None:
            return x0_hat, eps
        x0_hat = backend.xp.clip(x0_hat, -clip, clip)
        return x0_hat, (x - a * x0_hat) / s

    def _start(self, n: int, x_T, dim, y, guidance: float):
        """The sampler's x_T (the one given, as an array, or n fresh draws of N(0, I) of shape (n, *dim)),
        and its labels as an (n,) array, checked (None for an unconditional sampler)."""
        x = (x_T.data if isinstance(x_T, Tensor) else backend.xp.asarray(x_T)) if x_T is not None else \
            backend.rng().standard_normal((n,) + tuple(dim), dtype=backend.DEFAULT_DTYPE)
        if guidance < 0:
            raise ValueError(f"Diffusion: the guidance weight must be at least 0, got {guidance}")
        if y is None:
            if guidance:
                raise ValueError("Diffusion: guidance needs labels y to guide towards")
            return x, None
        y = backend.xp.full(len(x), y) if numpy.isscalar(y) else backend.xp.asarray(y)
        if y.shape != (len(x),):
            raise ValueError(f"Diffusion: {len(x)} samples but labels of shape {y.shape}")
        return x, y

    def ancestral_steps(self, n: int, x_T=None, dim=(2,), y=None, guidance: float = 0.0, clip=None):
        """Ho et al.'s Algorithm 2, step by step: yields (T, x_T), then (t − 1, x_{t−1}) after each step,
        x_{t−1} = μ_θ(x_t, t) + σ_t z with z ~ N(0, I), and z = 0 at the last step (t = 1).

        Args:
            n: number of samples; dim: one sample's shape. x_T: the starting noise (n, *dim), or None to draw it.
            y: labels for a conditional network, one int or (n,); guidance: the weight w of classifier-free
                guidance (0: none). clip: hold x̂_0 to [−clip, clip] and take the mean μ̃_t(x_t, x̂_0) of
                the posterior (the same μ_θ when nothing is clipped); None: no clipping.
        """
        x, y = self._start(n, x_T, dim, y, guidance)
        yield self.T, x
        for t in range(self.T, 0, -1):
            steps, eps = backend.xp.full(len(x), t), self._eps(x, t, y, guidance)
            if clip is None:
                mean = self.predicted_mean(Tensor(x), steps, Tensor(eps)).data
            else:
                mean = self.q_posterior(self._denoised(x, t, eps, clip)[0], x, steps)[0]
            if t > 1:
                noise = backend.rng().standard_normal(x.shape, dtype=x.dtype)
                mean = mean + math.sqrt(float(self._host_reverse_variances[t])) * noise
            x = mean
            yield t - 1, x

    def ddim_steps(self, n: int, steps=None, eta: float = 0.0, x_T=None, dim=(2,), y=None, guidance: float = 0.0,
                   clip=None):
        """DDIM (Song et al. 2021, eq. 12) over a subsequence τ of the steps: yields (t, x_t) from T to 0.

        From x_t to x_s, s the next step of τ (or 0): predict x̂_0 = (x_t − √(1 − ᾱ_t) ε_θ)/√ᾱ_t, then

            x_s = √ᾱ_s x̂_0 + √(1 − ᾱ_s − σ²) ε_θ + σ z,   σ = η √((1 − ᾱ_s)/(1 − ᾱ_t)) √(1 − ᾱ_t/ᾱ_s).

        η = 0 is deterministic (an ODE, x_T to x_0 a fixed map); η = 1 over all T steps has σ² = β̃_t and
        the mean μ̃(x_t, x̂_0) = μ_θ, exactly the ancestral sampler with ``variance="posterior"``.

        Args:
            steps: the number of steps (evenly spaced, :func:`ddim_timesteps`), or the steps themselves (the
                largest should be T, where x_T ~ N(0, I) holds); None for all T.
            eta: η from 0 to 1 (beyond 1, σ² would exceed 1 − ᾱ_s).
            n, x_T, dim, y, guidance, clip: as in :meth:`ancestral_steps` (clip holds x̂_0, and ε_θ is
                read back from it).
        """
        if not 0 <= eta <= 1:
            raise ValueError(f"ddim_steps: eta must be from 0 to 1, got {eta}")
        steps = self.T if steps is None else steps
        taus = ddim_timesteps(self.T, steps) if numpy.isscalar(steps) else sorted({int(s) for s in steps}, reverse=True)
        if not 1 <= taus[-1] <= taus[0] <= self.T:
            raise ValueError(f"ddim_steps: steps must lie from 1 to T = {self.T}, got {taus}")
        x, y = self._start(n, x_T, dim, y, guidance)
        yield taus[0], x
        for t, s in zip(taus, taus[1:] + [0]):
            a_t, a_s = self._host_alpha_bars[t], self._host_alpha_bars[s]
            x0_hat, eps = self._denoised(x, t, self._eps(x, t, y, guidance), clip)
            sigma = eta * math.sqrt((1 - a_s) / (1 - a_t) * (1 - a_t / a_s))
            x = math.sqrt(a_s) * x0_hat + math.sqrt(max(1 - a_s - sigma ** 2, 0.0)) * eps  # max: round-off only
            if sigma > 0:
                x = x + sigma * backend.rng().standard_normal(x.shape, dtype=x.dtype)
            yield s, x

    def sample(self, n: int, sampler: str = "ancestral", steps=None, eta: float = 0.0, x_T=None, dim=(2,), y=None,
               guidance: float = 0.0, clip=None) -> Tensor:
        """n samples x_0, (n, *dim): by ``sampler`` "ancestral" (all T steps) or "ddim" (``steps``, ``eta``);
        y, guidance and clip as in :meth:`ancestral_steps`."""
        if sampler == "ancestral":
            path = self.ancestral_steps(n, x_T, dim, y, guidance, clip)
        elif sampler == "ddim":
            path = self.ddim_steps(n, steps, eta, x_T, dim, y, guidance, clip)
        else:
            raise ValueError(f"Diffusion.sample: sampler must be 'ancestral' or 'ddim', got {sampler!r}")
        for _, x in path:
            pass
        return Tensor(x)

"""Normalising flows: an exact density by the change of variables, for vectors.

A flow maps a data point x to a code u = f(x) through a chain of bijections f = f_K ∘ ... ∘ f_1, each
easy to invert and with a Jacobian whose determinant is cheap; over a standard normal base density,
the change of variables gives the exact log-likelihood (Rezende and Mohamed 2015; Dinh et al. 2017)

    log p(x) = log N(f(x); 0, I) + Σ_k log |det ∂h_k/∂h_{k-1}|,      h_0 = x, h_k = f_k(h_{k-1}), u = h_K,

and samples x = f⁻¹(u), u ~ N(0, I). Every bijection here is a :class:`Bijection`: its ``forward`` maps
x → u (the density direction) and returns the log-determinant per example; its ``inverse`` maps u → x.

Two families of affine bijections, whose Jacobians are triangular, so that the determinant is the product
of the diagonal:

* :class:`AffineCoupling`, RealNVP (Dinh, Sohl-Dickstein and Bengio 2017, "Density estimation using Real
  NVP", eq. 4-6): split x into halves (x_a, x_b), keep x_a and move x_b by an affine map that x_a chooses,
  u_a = x_a, u_b = x_b ⊙ exp(s(x_a)) + t(x_a), log |det| = Σ s(x_a). s and t may be any networks:
  they are never inverted. Both directions cost one pass; successive couplings swap the halves, so that
  every coordinate is moved.
* :class:`MAFLayer`, the masked autoregressive flow (Papamakarios, Pavlakou and Murray 2017, "Masked
  Autoregressive Flow for Density Estimation", eq. 2-5): x_i = u_i exp(α_i) + μ_i with (μ_i, α_i) computed
  from x_<i by a MADE (:mod:`scratchgen.models.made`), so u_i = (x_i - μ_i) exp(-α_i) and
  log |det ∂u/∂x| = -Σ α_i. Successive layers reverse the ordering.

Why MAF's density is one pass and its sampling D passes, and IAF the opposite. In the density direction
all of x is known, so one pass of the MADE gives every (μ_i, α_i) at once, and u follows elementwise. To
sample, x_i needs μ_i and α_i, which need x_<i, which have to be sampled first: D passes, one variable
each, in the ordering (:meth:`MAFLayer.inverse`). The inverse autoregressive flow (Kingma et al. 2016)
conditions on u instead, x_i = u_i exp(α_i(u_<i)) + μ_i(u_<i): sampling is one pass (all of u is known),
but the density of a given x needs u_<i to compute u_i, D passes. MAF suits density estimation, IAF fast
sampling (and the densities of its own samples, whose u it knows). A coupling layer is both at once, at
the price of moving only half the coordinates per layer.

What an affine flow can and cannot bend. Each layer moves a coordinate by a shift and a scale that depend
smoothly on the others; the composition is a smooth bijection, so it carries the connected, unimodal base
onto a connected set: it cannot tear the Gaussian into 8 or 25 separate islands. To make sharp modes it
must stretch the space between them very thin, and a handful of layers whose scales vary smoothly (and
are bounded by a tanh here, in RealNVP and in our MAF) cannot make the stretch steep enough: some mass
stays on the bridges between modes and the peaks come out too wide. That is why the 2-D toys' affine
flows fall short of the true density on ring8 and grid25, and below a MADE whose conditionals are
mixtures of Gaussians, which can put mass on separate modes outright. Smooth, connected shapes (the
moons, the roll) suit a flow better.
"""

from __future__ import annotations

import math

import numpy

from scratchgen import backend, nn
from scratchgen.autograd import no_grad
from scratchgen.models.made import MADE
from scratchgen.ops import concatenate
from scratchgen.tensor import Tensor, randn

__all__ = ["Bijection", "AffineCoupling", "MAFLayer", "Flow", "RealNVP", "MAF"]


class Bijection(nn.Module):
    """An invertible map x → u with a tractable log |det ∂u/∂x|.

    Subclasses write ``forward(x) -> (u, log_det)``, x and u (N, D) and log_det (N,), and ``inverse(u) -> x``.
    Both are written in Tensor ops, so both can be differentiated (sample under ``no_grad`` when not).
    """

    def forward(self, x: Tensor):
        raise NotImplementedError(f"{type(self).__name__}.forward")

    def inverse(self, u: Tensor) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__}.inverse")


def mlp(in_features: int, out_features: int, hidden_sizes) -> nn.Sequential:
    """Linear layers with ReLU between them: in → hidden... → out."""
    sizes = (in_features,) + tuple(hidden_sizes) + (out_features,)
    layers = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))


class AffineCoupling(Bijection):
    """RealNVP's affine coupling for vectors: one half of x chooses an affine map of the other half.

        u_a = x_a,   u_b = x_b ⊙ exp(s) + t,   s = tanh(s_net(x_a)),  t = t_net(x_a),
        log |det ∂u/∂x| = Σ_j s_j,                x_b = (u_b - t) ⊙ exp(-s)  (the inverse),

    since ∂u/∂x = [[I, 0], [∂u_b/∂x_a, diag(exp s)]] is triangular. tanh keeps every scale within
    [1/e, e], so no layer can blow up early in training (Dinh et al. 2017, section 4.1, scale their s
    with a tanh too).

    Args:
        features: D, at least 2; x_a is the first ⌊D/2⌋ coordinates, x_b the rest (swapped if ``flip``).
        flip: keep the second half and move the first (alternate it between successive couplings).
        hidden_sizes: the hidden layers (ReLU) of each of the two networks s and t.
    """

    def __init__(self, features: int, flip: bool = False, hidden_sizes=(128, 128)):
        super().__init__()
        if features < 2:
            raise ValueError(f"AffineCoupling: needs at least 2 features to split, got {features}")
        self.features, self.flip, self.half = features, flip, features // 2
        kept, moved = (features - self.half, self.half) if flip else (self.half, features - self.half)
        self.s_net = mlp(kept, moved, hidden_sizes)
        self.t_net = mlp(kept, moved, hidden_sizes)

    def _halves(self, x: Tensor):
        first, second = x[:, :self.half], x[:, self.half:]
        return (second, first) if self.flip else (first, second)

    def _join(self, kept: Tensor, moved: Tensor) -> Tensor:
        return concatenate([moved, kept] if self.flip else [kept, moved], axis=1)

    def _scale_and_shift(self, kept: Tensor):
        return self.s_net(kept).tanh(), self.t_net(kept)

    def forward(self, x: Tensor):
        kept, moved = self._halves(x)
        s, t = self._scale_and_shift(kept)
        return self._join(kept, moved * s.exp() + t), s.sum(axis=1)

    def inverse(self, u: Tensor) -> Tensor:
        kept, moved = self._halves(u)
        s, t = self._scale_and_shift(kept)
        return self._join(kept, (moved - t) * (-s).exp())

    def extra_repr(self) -> str:
        return f"features={self.features}, flip={self.flip}"


class MAFLayer(Bijection):
    """One layer of a masked autoregressive flow: u_i = (x_i - μ_i) exp(-α_i), (μ_i, α_i) = MADE(x_<i).

        log |det ∂u/∂x| = -Σ_i α_i,

    since ∂u_i/∂x_j = 0 for every j after i in the ordering (the MADE's autoregressive property) and
    ∂u_i/∂x_i = exp(-α_i): the Jacobian is triangular in the ordering.

    The paper leaves α unbounded. We bound it softly, α = c·tanh(a/c) for the MADE's output a (a for
    |a| ≪ c): on sharp modes (ring8's, of standard deviation 0.01) an unbounded α grows large, a point
    between modes then gets a huge u, and its loss spike throws Adam off for epochs (we saw the test
    log-likelihood fall from 1.9 to -9.6 nats within 15 epochs). c = 3 still lets five layers scale by
    up to e^15.

    Args:
        features: D, at least 2.
        hidden_sizes: the MADE's hidden layers (ReLU).
        reverse: use the ordering D-1, ..., 0 instead of 0, ..., D-1.
        seed: the MADE's seed for its hidden degrees.
        max_log_scale: c, the bound on |α|; None leaves α unbounded, as in the paper.
    """

    def __init__(self, features: int, hidden_sizes=(128, 128), reverse: bool = False, seed: int = 0,
                 max_log_scale: float | None = 3.0):
        super().__init__()
        ordering = numpy.arange(features)[::-1].copy() if reverse else None
        self.made = MADE(features, hidden_sizes, ordering=ordering, outputs_per_dim=2, seed=seed)
        self.features, self.max_log_scale = features, max_log_scale

    def _shift_and_log_scale(self, x: Tensor):
        params = self.made(x)  # (N, D, 2): output (d, 0) is μ_d, (d, 1) is α_d before the bound
        alpha = params[:, :, 1]
        if self.max_log_scale is not None:
            alpha = (alpha * (1 / self.max_log_scale)).tanh() * self.max_log_scale
        return params[:, :, 0], alpha

    def forward(self, x: Tensor):
        mu, alpha = self._shift_and_log_scale(x)
        return (x - mu) * (-alpha).exp(), -alpha.sum(axis=1)

    def inverse(self, u: Tensor) -> Tensor:
        """x from u in D passes: pass i sets x_{o(i)} = u_{o(i)} exp(α) + μ from the x_<o(i) already set.

        Each pass replaces one column through a one-hot mask (x ⊙ (1 - e_d) + new ⊙ e_d, exact in floating
        point), so the whole inverse is Tensor ops and stays differentiable.
        """
        xp = backend.xp
        x = Tensor(xp.zeros(u.shape, dtype=u.dtype))
        for d in backend.to_numpy(self.made.ordering.data):
            mu, alpha = self._shift_and_log_scale(x)
            one_hot = xp.zeros(self.features, dtype=u.dtype)
            one_hot[int(d)] = 1
            x = x * (1 - one_hot) + (u * alpha.exp() + mu) * one_hot
        return x

    def extra_repr(self) -> str:
        return (f"features={self.features}, ordering={backend.to_numpy(self.made.ordering.data).tolist()}, "
                f"max_log_scale={self.max_log_scale}")


class Flow(nn.Module):
    """Bijections composed over a standard normal base: an exact density and exact samples.

    Args:
        bijections: :class:`Bijection` modules, applied in order in the density direction x → u.

    Attributes:
        bijections: a ModuleList of them. features: D, the first bijection's.
    """

    def __init__(self, bijections):
        super().__init__()
        self.bijections = nn.ModuleList(bijections)
        self.features = self.bijections[0].features

    def forward(self, x: Tensor):
        """u = f(x) and Σ_k log |det J_k|, (N, D) and (N,)."""
        log_det = 0.0
        for bijection in self.bijections:
            x, layer_log_det = bijection(x)
            log_det = log_det + layer_log_det
        return x, log_det

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) = log N(f(x); 0, I) + Σ log |det J| in nats, one per example: (N,).

        log N(u; 0, I) = -½ Σ_d u_d² - (D/2) log 2π.
        """
        if x.ndim != 2:
            raise ValueError(f"{type(self).__name__}.log_prob: expected points (N, D), got {x.shape}")
        u, log_det = self(x)
        return -0.5 * (u * u).sum(axis=1) - 0.5 * x.shape[1] * math.log(2 * math.pi) + log_det

    def inverse(self, u: Tensor) -> Tensor:
        """x = f⁻¹(u): the inverses in reverse order."""
        for bijection in reversed(list(self.bijections)):
            u = bijection.inverse(u)
        return u

    def sample(self, n: int) -> Tensor:
        """n exact samples x = f⁻¹(u), u ~ N(0, I), (n, D), without recording a graph."""
        dtype = next(iter(self.parameters())).dtype
        with no_grad():
            return self.inverse(randn(n, self.features, dtype=dtype))

    def trajectory(self, x: Tensor) -> list:
        """The points after each bijection, [x, h_1, ..., u], as Tensors (no graph): the data pushed
        through the flow layer by layer."""
        points = [x]
        with no_grad():
            for bijection in self.bijections:
                points.append(bijection(points[-1])[0])
        return points


class RealNVP(Flow):
    """RealNVP for vectors: ``couplings`` affine couplings, the kept half alternating between them.

    Args:
        features: D. couplings: how many coupling layers. hidden_sizes: of each s and t network.
    """

    def __init__(self, features: int = 2, couplings: int = 8, hidden_sizes=(128, 128)):
        super().__init__(AffineCoupling(features, flip=k % 2 == 1, hidden_sizes=hidden_sizes)
                         for k in range(couplings))


class MAF(Flow):
    """A masked autoregressive flow: ``layers`` MAF layers, the ordering reversed between successive ones
    (so that the variable conditioned on nothing in one layer is conditioned on everything in the next).

    Args:
        features: D. layers: how many MAF layers. hidden_sizes: of each MADE. seed: of the MADEs' degrees.
        max_log_scale: each layer's bound on |α| (see :class:`MAFLayer`).
    """

    def __init__(self, features: int = 2, layers: int = 5, hidden_sizes=(128, 128), seed: int = 0,
                 max_log_scale: float | None = 3.0):
        super().__init__(MAFLayer(features, hidden_sizes, reverse=k % 2 == 1, seed=seed + k,
                                  max_log_scale=max_log_scale) for k in range(layers))

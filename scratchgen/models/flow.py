"""Normalising flows: an exact density by the change of variables, for vectors and for images.

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

Images (the bottom of this file). :class:`ImageRealNVP` is RealNVP's image architecture (Dinh et al. 2017,
section 3.6): :class:`MaskedAffineCoupling` with a checkerboard mask (every other pixel kept), a
:class:`Squeeze` (each 2×2 block into 4 channels, a permutation, log-det 0), then channel masks (half the
channels kept), s and t from a small convolutional net. In front of them, the data's own bijection: integer
pixels are dequantised, x = (k + ν)/256 with ν ~ U[0, 1) (:func:`dequantize`), and :class:`LogitTransform`
maps x to the real line with its log-determinant counted, so that the reported figure is the literature's
bits per dimension of the 8-bit pixels: see :class:`ImageRealNVP` for the bookkeeping.

Flow++'s monotone maps (Ho, Chen, Srinivas, Duan and Abbeel 2019, "Flow++", section 3.2), as options of the
image flow: a number y goes through the CDF F of a mixture of logistics, then the logit, u = logit F(y)
(:func:`logistic_mixture_logit_cdf`, inverted by bisection in :func:`logistic_mixture_inverse`).
:class:`LogisticMixtureCDF` does it with one learned mixture per pixel, right after the logit transform: a
learned marginal per pixel. :class:`MaskedMixtureCoupling` is a coupling whose network chooses a mixture for
every moved pixel from the kept ones: a conditional distribution of any shape, where an affine coupling
only shifts and scales. Both matter on MNIST, whose background pixels (four in five) are exactly 0: after
dequantisation they fill the narrow cell [0, 1/256) evenly, a flat, sharp-edged density that smooth affine
couplings cannot shape and a narrow logistic component can hold.
"""

from __future__ import annotations

import math

import numpy

from scratchgen import backend, nn
from scratchgen.autograd import no_grad
from scratchgen.models.made import MADE
from scratchgen.ops import concatenate
from scratchgen.tensor import Tensor, rand, randn

__all__ = ["Bijection", "AffineCoupling", "MAFLayer", "Flow", "RealNVP", "MAF",
           "LogitTransform", "logistic_mixture_logit_cdf", "logistic_mixture_inverse", "LogisticMixtureCDF", "Squeeze",
           "MaskedAffineCoupling", "MaskedMixtureCoupling", "checkerboard_mask", "channel_mask", "ImageRealNVP",
           "dequantize", "bits_per_dim_dequantized", "independent_pixels_bits_per_dim"]


class Bijection(nn.Module):
    """An invertible map x → u with a tractable log |det ∂u/∂x|.

    Subclasses write ``forward(x) -> (u, log_det)``, x and u (N, D) for vectors or (N, C, H, W) for images,
    and log_det (N,), and ``inverse(u) -> x``. Both are written in Tensor ops, so both can be
    differentiated (sample under ``no_grad`` when not).
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
        event_shape: the shape of one example, (D,) for vectors (the default: the first bijection's
            ``features``) or (C, H, W) for images.
        code_shape: the shape of one example's u, if not ``event_shape`` (after a :class:`Squeeze`).

    Attributes:
        bijections: a ModuleList of them. event_shape, code_shape: as above. features: D, the numbers in one
        example.
    """

    def __init__(self, bijections, event_shape=None, code_shape=None):
        super().__init__()
        self.bijections = nn.ModuleList(bijections)
        self.event_shape = tuple(event_shape) if event_shape is not None else (self.bijections[0].features,)
        self.code_shape = tuple(code_shape) if code_shape is not None else self.event_shape
        self.features = math.prod(self.event_shape)

    def forward(self, x: Tensor):
        """u = f(x) and Σ_k log |det J_k|, shaped as x and (N,)."""
        log_det = 0.0
        for bijection in self.bijections:
            x, layer_log_det = bijection(x)
            log_det = log_det + layer_log_det
        return x, log_det

    def log_prob(self, x: Tensor) -> Tensor:
        """log p(x) = log N(f(x); 0, I) + Σ log |det J| in nats, one per example: (N,).

        log N(u; 0, I) = -½ Σ_d u_d² - (D/2) log 2π, the sum over every number of an example.
        """
        if x.ndim < 2 or tuple(x.shape[1:]) != self.event_shape:
            shape = ", ".join(map(str, self.event_shape))
            raise ValueError(f"{type(self).__name__}.log_prob: expected points (N, {shape}), got {x.shape}")
        u, log_det = self(x)
        u = u.reshape(len(u), -1)
        return -0.5 * (u * u).sum(axis=1) - 0.5 * self.features * math.log(2 * math.pi) + log_det

    def inverse(self, u: Tensor) -> Tensor:
        """x = f⁻¹(u): the inverses in reverse order."""
        for bijection in reversed(list(self.bijections)):
            u = bijection.inverse(u)
        return u

    def sample(self, n: int, temperature: float = 1.0) -> Tensor:
        """n exact samples x = f⁻¹(u), u ~ N(0, I) of (n, *code_shape), as (n, *event_shape), without
        recording a graph.

        A ``temperature`` T below 1 draws u ~ N(0, T² I) instead: samples from nearer the base's mode, less
        varied and cleaner (Kingma and Dhariwal 2018, section 5), no longer from the model's density.
        """
        dtype = next(iter(self.parameters())).dtype
        with no_grad():
            return self.inverse(randn(n, *self.code_shape, dtype=dtype) * temperature)

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


# ------------------------------------------------------------------------------------------------ images


class LogitTransform(Bijection):
    """RealNVP's preprocessing of pixels in [0, 1] (Dinh et al. 2017, section 4.1), as a bijection:

        x' = α + (1 - 2α) x,   y = logit(x') = log x' - log(1 - x'),
        log |det ∂y/∂x| = Σ_d log((1 - 2α) / (x'_d (1 - x'_d))),

    the Jacobian being diagonal. The flow after it works on the whole real line; α = 0.05 keeps y within
    ±logit(0.95) = ±2.94 for x in [0, 1], away from the logit's infinities at 0 and 1. The inverse is
    x = (σ(y) - α) / (1 - 2α). (Its image of [0, 1] is a bounded box, so the flow's mass outside it is lost
    to the pixels' density: a likelihood computed this way is a valid, slightly conservative figure.)

    Args:
        alpha: α, in [0, ½).
    """

    def __init__(self, alpha: float = 0.05):
        super().__init__()
        if not 0 <= alpha < 0.5:
            raise ValueError(f"LogitTransform: alpha must be in [0, 0.5), got {alpha}")
        self.alpha = alpha

    def forward(self, x: Tensor):
        squeezed = x * (1 - 2 * self.alpha) + self.alpha
        log_x, log_1mx = squeezed.log(), (1 - squeezed).log()
        log_det = (math.log(1 - 2 * self.alpha) - log_x - log_1mx).reshape(len(x), -1).sum(axis=1)
        return log_x - log_1mx, log_det

    def inverse(self, u: Tensor) -> Tensor:
        return (u.sigmoid() - self.alpha) * (1 / (1 - 2 * self.alpha))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


def logistic_mixture_logit_cdf(y: Tensor, log_weights: Tensor, means: Tensor, log_scales: Tensor):
    """u = logit F(y) and log du/dy, elementwise, for F the CDF of a mixture of K logistics (Flow++, Ho et
    al. 2019, section 3.2):

        F(y) = Σ_k π_k σ(z_k),   z_k = (y - μ_k) / s_k,        f(y) = F'(y) = Σ_k π_k σ(z_k) σ(-z_k) / s_k,
        u = log F - log(1 - F),                                 du/dy = f / (F (1 - F)).

    Everything is computed in log space, so that no F near 0 or 1 is rounded to 0 or 1 before its log is
    taken: with log σ(z) = -softplus(-z) and 1 - F = Σ_k π_k σ(-z_k),

        log F = logsumexp_k(log π_k - softplus(-z_k)),    log(1 - F) = logsumexp_k(log π_k - softplus(z_k)),
        log f = logsumexp_k(log π_k - softplus(z_k) - softplus(-z_k) - log s_k).

    Args:
        y: (N, ...). log_weights: log π, normalised over K; means: μ; log_scales: log s; each (K, ...) with
            y's trailing shape, shared by the examples, or (N, K, ...), one mixture per example.

    Returns:
        u and log du/dy, both shaped as y.
    """
    z = (y.reshape(len(y), 1, *y.shape[1:]) - means) * (-log_scales).exp()  # (N, K, ...)
    softplus_z, softplus_minus_z = z.softplus(), (-z).softplus()
    log_cdf = (log_weights - softplus_minus_z).logsumexp(axis=1)
    log_survival = (log_weights - softplus_z).logsumexp(axis=1)
    log_density = (log_weights - softplus_z - softplus_minus_z - log_scales).logsumexp(axis=1)
    return log_cdf - log_survival, log_density - log_cdf - log_survival


def logistic_mixture_inverse(u: Tensor, log_weights: Tensor, means: Tensor, log_scales: Tensor,
                             max_halvings: int = 200) -> Tensor:
    """y with logit F(y) = u, elementwise, for the mixture CDF F of :func:`logistic_mixture_logit_cdf` (same
    arguments), which has no closed-form inverse: by bisection, then one Newton step.

    The bracket. At y = max_k (μ_k + s_k u) every z_k ≥ u, so every σ(z_k) ≥ σ(u), and so is their average
    F(y); at y = min_k (μ_k + s_k u), F(y) ≤ σ(u). F is increasing, so the root lies between, and halving the
    bracket (on raw arrays, no graph) closes on it until it is a few rounding errors wide. Each halving
    halves every bracket, so the number needed, log₂ of the widest bracket over its tolerance, is known
    before the first: one read of one number (a wait for a GPU) instead of a test after every halving
    (at most ``max_halvings``). One Newton step written in Tensor ops from there, y ← y₀ - (logit F(y₀) - u) /
    (du/dy)(y₀), hardly moves y but makes it differentiable in u and in the mixture's parameters: at the
    root, the step's gradient is the implicit function theorem's.
    """
    xp, target = backend.xp, u.data
    with no_grad():
        ends = means.data + xp.exp(log_scales.data) * target[:, None]  # (N, K, ...): μ_k + s_k u
        low, high = ends.min(axis=1), ends.max(axis=1)
        tolerance = 4 * float(numpy.finfo(target.dtype).eps) * (1 + xp.abs(low) + xp.abs(high))
        widest = float(((high - low) / tolerance).max())  # the widest bracket, in its own tolerances
        # It is within its tolerance after ⌈log₂ widest⌉ halvings; one more, as a rounded middle can leave a
        # bracket a rounding error wider than half. (An overflowed, infinite width takes max_halvings.)
        needed = math.ceil(math.log2(min(widest, 2.0**max_halvings))) + 1 if widest > 1 else 0
        for _ in range(min(needed, max_halvings)):
            middle = (low + high) / 2
            above = logistic_mixture_logit_cdf(Tensor(middle), log_weights, means, log_scales)[0].data > target
            low, high = xp.where(above, low, middle), xp.where(above, middle, high)
    start = Tensor((low + high) / 2)
    value, log_slope = logistic_mixture_logit_cdf(start, log_weights, means, log_scales)
    return start - (value - u) * (-log_slope).exp()


class LogisticMixtureCDF(Bijection):
    """Every number through its own learned monotone map: the CDF F of a mixture of K logistics, then the
    logit (Flow++'s elementwise transform, Ho et al. 2019, section 3.2, here unconditional, one mixture
    per pixel):

        u = logit F(y),   log |det ∂u/∂y| = Σ_d [log f(y_d) - log F(y_d) - log(1 - F(y_d))]

    (:func:`logistic_mixture_logit_cdf`; the Jacobian is diagonal). F is increasing, so the map is a
    bijection of the real line onto itself. Alone, over the standard normal base, it is a model of
    independent numbers with a flexible marginal each; in an image flow it sits after the
    :class:`LogitTransform` and gives each pixel its own marginal: a narrow component can hold the mass of
    MNIST's background (pixel 0, four pixels in five) on the narrow cell that its dequantised values fill,
    which the smooth couplings after it could not carve out.

    The inverse has no closed form: y with F(y) = σ(u) is found by bisection
    (:func:`logistic_mixture_inverse`).

    Parameters. ``theta`` (3, K, *shape) holds the mixture logits, the means and the log-scales, all
    divided by ``speed``, which multiplies them back on use. Adam moves every parameter by about its
    learning rate per step whatever the size of its gradient; a log-scale that has to travel from about -2
    to -5 (to a component as narrow as a pixel's cell) would take thousands of steps at 1e-3. Stored this way,
    the same optimiser moves these parameters ``speed`` times faster than the networks' weights (the device
    behind the "equalised learning rate" of Karras et al. 2018, who multiply each layer's weights by a
    constant on use to set its effective step).

    Args:
        shape: of one example, e.g. (C, H, W). components: K. low, high: the means start evenly spread
            over [low, high] and the scales at its width / K, F roughly uniform there. speed: as above.
    """

    def __init__(self, shape, components: int = 16, low: float = -3.0, high: float = 3.0, speed: float = 10.0):
        super().__init__()
        shape, width = tuple(shape), (high - low) / components
        theta = numpy.zeros((3, components) + shape)
        theta[1] = (low + width * (numpy.arange(components) + 0.5)).reshape((components,) + (1,) * len(shape))
        theta[2] = math.log(width)
        self.theta = nn.Parameter(backend.asarray((theta / speed).astype(backend.DEFAULT_DTYPE)))
        self.shape, self.components, self.speed = shape, components, speed

    def _mixture(self):
        """log π, μ and log s, each (K, *shape)."""
        theta = self.theta * self.speed
        return theta[0].log_softmax(axis=0), theta[1], theta[2]

    def forward(self, y: Tensor):
        u, log_slope = logistic_mixture_logit_cdf(y, *self._mixture())
        return u, log_slope.reshape(len(y), -1).sum(axis=1)

    def inverse(self, u: Tensor) -> Tensor:
        return logistic_mixture_inverse(u, *self._mixture())

    def extra_repr(self) -> str:
        return f"shape={self.shape}, components={self.components}, speed={self.speed}"


class Squeeze(Bijection):
    """Space to depth: every 2×2 block of pixels becomes 4 channels, (N, C, H, W) → (N, 4C, H/2, W/2).

    Channel 4c + 2i + j of the output holds pixel (2h + i, 2w + j) of input channel c. It only permutes the
    numbers, so |det| = 1 and the log-determinant is 0 (Dinh et al. 2017, section 3.6: after it, a channel
    mask splits each block in two, trading spatial size for channels).
    """

    def forward(self, x: Tensor):
        n, c, h, w = x.shape
        if h % 2 or w % 2:
            raise ValueError(f"Squeeze: needs an even height and width, got {x.shape}")
        blocks = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 3, 5, 2, 4)
        return blocks.reshape(n, 4 * c, h // 2, w // 2), Tensor(backend.xp.zeros(n, dtype=x.dtype))

    def inverse(self, u: Tensor) -> Tensor:
        n, c4, h, w = u.shape
        blocks = u.reshape(n, c4 // 4, 2, 2, h, w).transpose(0, 1, 4, 2, 5, 3)
        return blocks.reshape(n, c4 // 4, 2 * h, 2 * w)


def checkerboard_mask(shape, parity: int = 0) -> numpy.ndarray:
    """b (C, H, W) of 0 and 1: 1 on the pixels (h, w) with h + w ≡ parity (mod 2), in every channel."""
    c, h, w = shape
    rows, cols = numpy.indices((h, w))
    return numpy.broadcast_to((rows + cols) % 2 == parity, (c, h, w)).astype(numpy.float32)


def channel_mask(shape, parity: int = 0) -> numpy.ndarray:
    """b (C, H, W) of 0 and 1: 1 on the first C/2 channels (parity 0) or the last C/2 (parity 1)."""
    c, h, w = shape
    if c % 2:
        raise ValueError(f"channel_mask: needs an even number of channels, got {c}")
    first = numpy.arange(c) < c // 2
    return numpy.broadcast_to((first if parity == 0 else ~first)[:, None, None], (c, h, w)).astype(numpy.float32)


def coupling_net(channels: int, hidden: int, outputs: int | None = None) -> nn.Sequential:
    """The network of an image coupling: 3×3 conv, ReLU, 1×1 conv, ReLU, 3×3 conv to ``outputs`` channels
    (by default 2C: s then t).

    Glow's shape of network (Kingma and Dhariwal 2018, section 3.3), whose last convolution starts at zero,
    so that every affine coupling starts as the identity (s = t = 0) and the flow trains from there.
    ("Same" padding keeps the image size.)
    """
    last = nn.Conv2d(hidden, outputs or 2 * channels, 3, padding=1)
    last.weight.data[...] = 0
    last.bias.data[...] = 0
    return nn.Sequential(nn.Conv2d(channels, hidden, 3, padding=1), nn.ReLU(),
                         nn.Conv2d(hidden, hidden, 1), nn.ReLU(), last)


class MaskedAffineCoupling(Bijection):
    """RealNVP's affine coupling for images, through a binary mask b (Dinh et al. 2017, eq. 8-9):

        u = b ⊙ x + (1 - b) ⊙ (x ⊙ exp(s(b ⊙ x)) + t(b ⊙ x)),     log |det ∂u/∂x| = Σ (1 - b) ⊙ s.

    The numbers where b = 1 are kept and choose an affine map of the others. We zero s and t where b = 1,
    so that u = x ⊙ exp(s) + t holds everywhere, and the inverse is x = (u - t) ⊙ exp(-s), with s and t
    computed from b ⊙ u = b ⊙ x, the kept numbers, which u still holds. The Jacobian is triangular (in an
    order that lists the kept numbers first), with exp(s) on its diagonal.

    Two masks (:func:`checkerboard_mask`, :func:`channel_mask`): a checkerboard keeps every other pixel, a
    channel mask half the channels (used after a :class:`Squeeze`). s = scale ⊙ tanh(s_raw) with a learned
    scale per channel, started at 1 (the paper's choice): bounded, so no coupling can blow up early.

    Args:
        mask: b, (C, H, W) of 0 and 1. hidden: the channels of the network's hidden layers.
    """

    def __init__(self, mask, hidden: int = 32):
        super().__init__()
        mask = numpy.asarray(mask, dtype=numpy.float32)
        self.register_buffer("mask", backend.asarray(mask))
        channels = mask.shape[0]
        self.net = coupling_net(channels, hidden)
        self.scale = nn.Parameter(backend.xp.ones((channels, 1, 1), dtype=backend.DEFAULT_DTYPE))
        self.channels, self.hidden = channels, hidden

    def _scale_and_shift(self, kept: Tensor):
        """s and t from the kept numbers b ⊙ x, both zero where b = 1."""
        moved = 1 - self.mask.astype(kept.dtype)
        h = self.net(kept)
        s = (self.scale * h[:, :self.channels].tanh()) * moved
        return s, h[:, self.channels:] * moved

    def forward(self, x: Tensor):
        s, t = self._scale_and_shift(x * self.mask.astype(x.dtype))
        return x * s.exp() + t, s.reshape(len(x), -1).sum(axis=1)

    def inverse(self, u: Tensor) -> Tensor:
        s, t = self._scale_and_shift(u * self.mask.astype(u.dtype))
        return (u - t) * (-s).exp()

    def extra_repr(self) -> str:
        return f"channels={self.channels}, hidden={self.hidden}, kept={int(self.mask.data.sum())}"


class MaskedMixtureCoupling(Bijection):
    """Flow++'s coupling (Ho et al. 2019, section 3.2, without its affine part): the kept numbers choose,
    for every moved number, a whole mixture of K logistics, and the moved number goes through that
    mixture's CDF and the logit:

        u = b ⊙ x + (1 - b) ⊙ logit F(x; π, μ, s),   (π, μ, s) = net(b ⊙ x),
        log |det ∂u/∂x| = Σ (1 - b) ⊙ log du/dx        (:func:`logistic_mixture_logit_cdf`).

    The Jacobian is triangular as in :class:`MaskedAffineCoupling`, and the inverse again computes the
    mixtures from b ⊙ u = b ⊙ x, then inverts each moved number's CDF (:func:`logistic_mixture_inverse`).
    An affine coupling can only shift and scale a pixel according to its neighbours; this one gives it a
    conditional distribution of any shape (two modes, a narrow spike at the background's cell), F the CDF of
    that distribution and logit F its place on the base's line.

    The network's last convolution starts at zero and its bias at equal weights, scales 1 and K means
    spread over [-1, 1]: F is then close to σ, and the coupling to the identity (logit σ(x) = x). (The
    spread keeps the K components from staying copies of each other: equal components get equal gradients.)

    Args:
        mask: b, (C, H, W) of 0 and 1. hidden: the channels of the network's hidden layers.
        components: K.
    """

    def __init__(self, mask, hidden: int = 32, components: int = 4):
        super().__init__()
        mask = numpy.asarray(mask, dtype=numpy.float32)
        self.register_buffer("mask", backend.asarray(mask))
        channels = mask.shape[0]
        self.net = coupling_net(channels, hidden, 3 * components * channels)
        bias = numpy.zeros((3, components, channels), dtype=numpy.float32)  # logits, means, log-scales
        bias[1] = numpy.linspace(-1, 1, components)[:, None]
        self.net[-1].bias.data[...] = backend.asarray(bias.reshape(-1))
        self.channels, self.hidden, self.components = channels, hidden, components

    def _mixture(self, kept: Tensor):
        """log π, μ and log s, each (N, K, C, H, W), from the kept numbers b ⊙ x."""
        n, c, h, w = kept.shape
        params = self.net(kept).reshape(n, 3, self.components, c, h, w)
        return params[:, 0].log_softmax(axis=1), params[:, 1], params[:, 2]

    def forward(self, x: Tensor):
        kept = self.mask.astype(x.dtype)
        value, log_slope = logistic_mixture_logit_cdf(x, *self._mixture(x * kept))
        return x * kept + value * (1 - kept), (log_slope * (1 - kept)).reshape(len(x), -1).sum(axis=1)

    def inverse(self, u: Tensor) -> Tensor:
        kept = self.mask.astype(u.dtype)
        return u * kept + logistic_mixture_inverse(u, *self._mixture(u * kept)) * (1 - kept)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, hidden={self.hidden}, components={self.components}, "
                f"kept={int(self.mask.data.sum())}")


class ImageRealNVP(Flow):
    """RealNVP for images (Dinh et al. 2017, section 3.6), without its multi-scale factoring-out: pixel
    intensities x in [0, 1]^(C×H×W) → logit → (with ``components``) a learned CDF per pixel → per scale,
    ``couplings`` checkerboard couplings, a squeeze and ``couplings`` channel couplings → finally
    ``couplings`` checkerboard couplings → u ~ N(0, I).

    The masks alternate between successive couplings (parity 0, 1, 0, ...), so that every number is moved.
    For MNIST's (1, 28, 28) and one scale: three checkerboard couplings at 28×28, a squeeze to (4, 14, 14),
    three channel couplings and three checkerboard couplings at 14×14.

    Bits per dimension. The model is a density over x in [0, 1]^D; the data are integer pixels k in
    {0, ..., 255}^D. Uniform dequantisation (Theis, van den Oord and Bethge 2016; :func:`dequantize`) makes
    them continuous, v = k + ν with ν ~ U[0, 1)^D, a point of [0, 256)^D, and x = v / 256. A density p_x on
    [0, 1]^D is the density p_v(v) = p_x(v / 256) / 256^D on [0, 256)^D (the change of variables of v ↦ v/256),
    and since a density on [0, 256)^D is the density of a discrete model with P(k) = ∫_[0,1)^D p_v(k + ν) dν,

        -log P(k) ≤ E_ν[-log p_v(k + ν)] = E_ν[-log p_x(x)] + D log 256             (Jensen),

    so the literature's bits per dimension, a bound on the discrete model's code length, is

        bpd = (-log p_x(x) + D ln 256) / (D ln 2) = -log p_x(x) / (D ln 2) + 8,

    with log p_x(x) = log N(u; 0, I) + Σ log |det J| over every bijection, the logit's included
    (:meth:`bits_per_dim`). A model no better than uniform on the pixels scores 8.

    Args:
        shape: (C, H, W); H and W divisible by 2 per scale. couplings: per group (above). hidden: channels
        of each coupling's network. scales: squeezes. alpha: the logit's α. components: K of a
        :class:`LogisticMixtureCDF` after the logit, a learned marginal per pixel (Flow++'s elementwise
        transform); 0, the default, leaves it out, as RealNVP does. coupling_components: K of
        :class:`MaskedMixtureCoupling` couplings (Flow++'s); 0, the default, makes them RealNVP's
        :class:`MaskedAffineCoupling`.
    """

    def __init__(self, shape=(1, 28, 28), couplings: int = 3, hidden: int = 32, scales: int = 1, alpha: float = 0.05,
                 components: int = 0, coupling_components: int = 0):
        c, h, w = shape
        if h % 2 ** scales or w % 2 ** scales:
            raise ValueError(f"ImageRealNVP: {scales} squeezes need H and W divisible by {2 ** scales}, got {shape}")

        def coupling(mask):
            if coupling_components:
                return MaskedMixtureCoupling(mask, hidden, coupling_components)
            return MaskedAffineCoupling(mask, hidden)

        bijections = [LogitTransform(alpha)]
        if components:
            edge = math.log((1 - alpha) / alpha)  # the logit maps [0, 1] onto [-edge, edge]
            bijections.append(LogisticMixtureCDF(shape, components, low=-edge, high=edge))
        for _ in range(scales):
            bijections += [coupling(checkerboard_mask((c, h, w), k % 2)) for k in range(couplings)]
            bijections.append(Squeeze())
            c, h, w = 4 * c, h // 2, w // 2
            bijections += [coupling(channel_mask((c, h, w), k % 2)) for k in range(couplings)]
        bijections += [coupling(checkerboard_mask((c, h, w), k % 2)) for k in range(couplings)]
        super().__init__(bijections, event_shape=shape, code_shape=(c, h, w))

    def bits_per_dim(self, x: Tensor) -> Tensor:
        """(-log p_x(x) + D ln 256) / (D ln 2) per example, (N,), for dequantised pixels x in [0, 1)^D: the
        bits per dimension of the integer pixels (see the class docstring)."""
        return bits_per_dim_dequantized(self.log_prob(x), self.features)

    def sample_pixels(self, n: int, temperature: float = 1.0) -> numpy.ndarray:
        """n samples as integer pixels (n, C, H, W) uint8: ⌊256 x⌋, clipped to 0..255 (the model's mass
        outside [0, 1) lands on the edge values)."""
        x = backend.to_numpy(self.sample(n, temperature).data)
        return numpy.clip(numpy.floor(256 * x), 0, 255).astype(numpy.uint8)


def dequantize(pixels: Tensor, noise: Tensor | None = None) -> Tensor:
    """x = (k + ν) / 256 in [0, 1) for integer pixels k in 0..255, ν ~ U[0, 1) drawn afresh (or ``noise``).

    Args:
        pixels: a Tensor of any integer or float dtype; the result is float32 unless ``noise`` is float64.
        noise: ν, of pixels' shape: a fixed draw (the test set's, so that its figure is repeatable).
    """
    if noise is None:
        noise = rand(*pixels.shape)
    return (pixels.astype(noise.dtype) + noise) * (1 / 256)


def bits_per_dim_dequantized(log_prob_unit, dims: int):
    """log p_x(x) in nats of a density on [0, 1]^D (x = (k + ν)/256) as bits per dimension of the integer
    pixels k: (-log p_x(x) + D ln 256) / (D ln 2). Tensors, arrays and numbers alike."""
    return (-log_prob_unit + dims * math.log(256)) * (1 / (dims * math.log(2)))


def independent_pixels_bits_per_dim(train_pixels, test_pixels, smoothing: float = 1.0) -> float:
    """The independent-pixel baseline, under the same dequantisation: each pixel d its own distribution
    P_d(k) over 0..255, the training images' counts plus ``smoothing`` each, normalised. Dequantised, its
    density on [0, 256)^D is constant on every unit cell, p_v(k + ν) = Π_d P_d(k_d), so its bits per
    dimension is exactly the mean of -log₂ P_d(k_d) over the test pixels.

    Args:
        train_pixels, test_pixels: integer arrays (N, ...) in 0..255.
    """
    train = numpy.asarray(train_pixels).reshape(len(train_pixels), -1).astype(numpy.int64)
    test = numpy.asarray(test_pixels).reshape(len(test_pixels), -1).astype(numpy.int64)
    counts = numpy.full((train.shape[1], 256), float(smoothing))
    numpy.add.at(counts, (numpy.broadcast_to(numpy.arange(train.shape[1]), train.shape), train), 1)
    probabilities = counts[numpy.arange(test.shape[1]), test] / counts.sum(axis=1)  # P_d(k_d), (N_test, D)
    return float(-numpy.log2(probabilities).mean())

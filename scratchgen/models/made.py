"""MADE: an autoencoder whose masks make its outputs the conditionals of an autoregressive model.

Germain, Gregor, Murray and Larochelle (2015), "MADE: Masked Autoencoder for Distribution Estimation".

Any density over D variables factorises exactly, in any ordering o of them, as

    p(x) = Π_i p(x_{o(i)} | x_{o(1)}, ..., x_{o(i-1)}).

MADE computes all D conditionals in one pass of a feed-forward network by cutting connections: output
o(i) may depend only on the inputs before it in the ordering. The paper does this with *degrees*:

* input d gets degree m(d) = its position in the ordering, 1..D;
* hidden unit k of layer l gets a degree m_l(k) drawn uniformly from {min m_{l-1}, ..., D-1};
* a hidden unit sees the units of the layer below whose degree is ≤ its own,
  M_l[k, k'] = [m_l(k) ≥ m_{l-1}(k')], so it depends only on inputs of degree ≤ m_l(k);
* output d sees the last hidden layer's units of degree strictly below its own, [m(d) > m_L(k)].

Every path from input d' to output d therefore climbs through degrees m(d') ≤ ... < m(d): output d
depends only on the inputs before it (the *autoregressive property*). Drawing m_l(k) ≥ the smallest
degree below guarantees each unit some input, and m_l(k) ≤ D-1 some output (the degree rule): no
unit is wasted. (In nets of several hidden layers we also lower any degree above the largest of the layer
above it, which the paper's rule alone leaves unconnected: see :func:`made_degrees`.) The masks are
applied by :class:`~scratchgen.nn.MaskedLinear`.

Two kinds of training from the paper:

* **connectivity-agnostic**: ``num_masks`` different draws of the hidden degrees, cycled through during
  training (:meth:`MADE.next_masks`, every N steps) so one set of weights serves them all;
* **order-agnostic**: each draw uses a new random ordering too.

At test time the model is then an ensemble: p(x) = (1/M) Σ_m p_m(x), so log p(x) is the log-mean-exp of
the M log-likelihoods (:meth:`MADE.log_prob` with ``masks=M``). Probabilities are averaged, never logits:
averaged logits would be no mixture of the models, nor even normalised.

**Class-conditional MADE.** Built with ``classes=C``, every layer's pre-activation gets a learned vector of
the label y added, W_l(M_l ⊙ h) + V_l·onehot(y) + b_l (the conditioning of the conditional PixelCNN, van
den Oord et al. 2016). The label is given, not modelled, so any output may read it without breaking the
ordering: the network computes the conditionals of p(x | y) = Π_i p(x_o(i) | x_o(<i), y), exactly. With
the ten conditional likelihoods, Bayes' rule turns the model into a classifier,
p(y | x) = p(y) p(x | y) / Σ_y' p(y') p(x | y') (:meth:`MADE.classify`): a generative model that classifies.

The conditionals are Bernoulli (one logit per binary pixel) in :class:`MADE`; for real-valued data
:class:`GaussianMixtureMADE` makes each conditional a mixture of K Gaussians (as in the MDN of Bishop
1994; the RNADE of Uria et al. 2013 does the same). Both give the exact log-likelihood and draw exact
samples by ancestral sampling, one variable at a time in the ordering.
"""

from __future__ import annotations

import math

import numpy

from scratchgen import backend, nn
from scratchgen.autograd import no_grad
from scratchgen.nn import functional as F
from scratchgen.ops import stack
from scratchgen.ops.elementwise import logistic
from scratchgen.tensor import Tensor

__all__ = ["MADE", "GaussianMixtureMADE", "made_degrees", "made_masks"]


def made_degrees(ordering, hidden_sizes, rng: numpy.random.Generator) -> list:
    """The degrees of the paper's section 4: [inputs (D,), hidden layer 1, ..., hidden layer L].

    Args:
        ordering: (D,) a permutation of 0..D-1; ``ordering[i]`` is the variable modelled i-th.
        hidden_sizes: units per hidden layer.
        rng: host NumPy generator for the hidden degrees.

    Returns:
        A list of host int64 arrays; input d has degree (position of d in ordering) + 1.
    """
    num_inputs = len(ordering)
    input_degrees = numpy.empty(num_inputs, dtype=numpy.int64)
    input_degrees[numpy.asarray(ordering)] = numpy.arange(1, num_inputs + 1)
    degrees = [input_degrees]
    for size in hidden_sizes:
        low = int(degrees[-1].min())  # ≥ the smallest degree below: every unit has an input
        degrees.append(rng.integers(low, num_inputs, size=size))  # ≤ D-1: the last layer's reach an output
    # Below the last hidden layer, a unit whose degree exceeds every degree of the layer above would have
    # no way out; lower it to the largest degree above (top down, so each layer sees its final upper
    # neighbour). The smallest degree of each layer is unchanged, so every unit keeps an input.
    for layer in range(len(degrees) - 2, 0, -1):
        degrees[layer] = numpy.minimum(degrees[layer], degrees[layer + 1].max())
    return degrees


def made_masks(degrees, outputs_per_dim: int = 1) -> list:
    """The 0/1 masks (out, in) of each layer from :func:`made_degrees`, as host float32 arrays.

    Hidden layers connect [m_l(k) ≥ m_{l-1}(k')]; the output layer connects [m(d) > m_L(k)], its rows
    repeated ``outputs_per_dim`` times (output row d·K + c is parameter c of variable d).
    """
    masks = [(later[:, None] >= earlier[None, :]) for earlier, later in zip(degrees[:-1], degrees[1:])]
    masks.append(numpy.repeat(degrees[0][:, None] > degrees[-1][None, :], outputs_per_dim, axis=0))
    return [m.astype(numpy.float32) for m in masks]


class MADE(nn.Module):
    """A masked MLP whose output d is the logit of p(x_d = 1 | the variables before d in the ordering).

    Args:
        in_features: D, the number of variables (at least 2).
        hidden_sizes: units of each hidden layer (ReLU); () gives a single masked linear layer.
        ordering: None for 0..D-1 (raster order for images), "random" for a permutation drawn from
            ``seed``, or a sequence, a permutation of 0..D-1.
        num_masks: how many mask sets :meth:`next_masks` cycles through (1: one fixed set).
        order_agnostic: draw a new random ordering with each mask set after the first.
        seed: seed of the host generator that draws the orderings and degrees; mask set k is always the
            same for the same seed, so it can be rebuilt at test time.
        outputs_per_dim: parameters per variable (1 logit here; subclasses need more).
        classes: 0 for p(x); C > 0 for p(x | y): then the forward, :meth:`log_prob` and :meth:`sample` take
            the labels ``y``, (N,) integers or (N, C) label rows.

    Attributes:
        layers: a ModuleList of MaskedLinear layers.
        ordering: (D,) int64 buffer, the ordering of the mask set in use.
        mask_index: 0-d int64 buffer, which mask set is in use (saved with the model, so a resumed run
            continues the cycle).
    """

    def __init__(self, in_features: int, hidden_sizes=(500,), ordering=None, num_masks: int = 1,
                 order_agnostic: bool = False, seed: int = 0, outputs_per_dim: int = 1, classes: int = 0):
        super().__init__()
        if in_features < 2:
            raise ValueError(f"{type(self).__name__}: needs at least 2 variables, got in_features={in_features}")
        if num_masks < 1:
            raise ValueError(f"{type(self).__name__}: num_masks must be at least 1, got {num_masks}")
        self.in_features, self.hidden_sizes = in_features, tuple(hidden_sizes)
        self.outputs_per_dim, self.num_masks = outputs_per_dim, num_masks
        self.order_agnostic, self.seed = order_agnostic, seed
        self.base_ordering = self._check_ordering(ordering)
        sizes = (in_features,) + self.hidden_sizes + (in_features * outputs_per_dim,)
        self.layers = nn.ModuleList(nn.MaskedLinear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.classes = classes
        if classes:  # V_l: the label's vector added to layer l's pre-activation; unmasked, as y is given
            self.label_layers = nn.ModuleList(nn.Linear(classes, b, bias=False) for b in sizes[1:])
        self.use_masks(0)

    def _check_ordering(self, ordering) -> numpy.ndarray:
        d = self.in_features
        if ordering is None:
            return numpy.arange(d)
        if isinstance(ordering, str):
            if ordering != "random":
                raise ValueError(f"{type(self).__name__}: ordering must be None, 'random' or a permutation, "
                                 f"got {ordering!r}")
            return numpy.random.default_rng(self.seed).permutation(d)
        ordering = numpy.asarray(backend.to_numpy(getattr(ordering, "data", ordering)), dtype=numpy.int64)
        if ordering.shape != (d,) or not numpy.array_equal(numpy.sort(ordering), numpy.arange(d)):
            raise ValueError(f"{type(self).__name__}: ordering must be a permutation of 0..{d - 1}, got {ordering}")
        return ordering

    # ------------------------------------------------------------------ masks

    def use_masks(self, index: int) -> None:
        """Install mask set ``index`` (0..num_masks-1): its ordering, degrees and masks.

        Set 0 uses the ``ordering`` given to the constructor; with ``order_agnostic`` the other sets draw
        their own. The same index always gives the same masks.
        """
        if not 0 <= index < self.num_masks:
            raise ValueError(f"{type(self).__name__}.use_masks: index {index} outside 0..{self.num_masks - 1}")
        rng = numpy.random.default_rng([self.seed, index])
        ordering = rng.permutation(self.in_features) if self.order_agnostic and index > 0 else self.base_ordering
        self.degrees = made_degrees(ordering, self.hidden_sizes, rng)
        for layer, mask in zip(self.layers, made_masks(self.degrees, self.outputs_per_dim)):
            layer.set_mask(mask)
        self.register_buffer("ordering", backend.asarray(ordering))
        self.register_buffer("mask_index", backend.asarray(index, dtype=numpy.int64))

    def next_masks(self) -> None:
        """Move on to the next mask set, cyclically (connectivity- and order-agnostic training)."""
        if self.num_masks > 1:
            self.use_masks((int(self.mask_index.data) + 1) % self.num_masks)

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        super().load_state_dict(state, strict)
        self.use_masks(int(self.mask_index.data))  # rebuild the degrees that belong to the loaded masks

    # ------------------------------------------------------------------ the network

    def forward(self, x: Tensor, y=None) -> Tensor:
        """The parameters of every conditional, from one pass.

        Args:
            x: (N, D).
            y: the labels, for a class-conditional MADE.

        Returns:
            (N, D) logits when ``outputs_per_dim`` is 1, else (N, D, outputs_per_dim).
        """
        if x.ndim != 2 or x.shape[1] != self.in_features:
            raise ValueError(f"{type(self).__name__}: expected input (N, {self.in_features}), got {x.shape}")
        labels = F.label_rows(y, self.classes, len(x), type(self).__name__, self.layers[0].weight.dtype)
        h = x
        for index, layer in enumerate(self.layers):
            h = layer(h)
            if labels is not None:
                h = h + self.label_layers[index](labels)
            if index < len(self.layers) - 1:
                h = F.relu(h)
        out = h
        return out if self.outputs_per_dim == 1 else out.reshape(x.shape[0], self.in_features, self.outputs_per_dim)

    def conditional_log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """log p(x_d | x_<d) for every d: (N, D), from the forward's ``params``. Bernoulli here."""
        return -F.binary_cross_entropy_with_logits(params, x, reduction="none")

    def sample_variable(self, params):
        """Draw one variable for each row from its conditional's parameters (N,) (a raw array): Bernoulli."""
        return backend.bernoulli(logistic(params))

    # ------------------------------------------------------------------ density and samples

    def log_prob(self, x: Tensor, masks: int = 1, y=None) -> Tensor:
        """The exact log-likelihood log p(x) (log p(x | y) given labels) in nats, one per example: (N,).

        Args:
            x: (N, D).
            masks: 1 for the mask set in use; M > 1 for the ensemble of mask sets 0..M-1,
                log (1/M) Σ_m p_m(x) = logsumexp_m log p_m(x) - log M. The set in use is restored after.
            y: the labels, for a class-conditional MADE.
        """
        if masks == 1:
            return self.conditional_log_prob(self(x, y), x).sum(axis=1)
        if not 1 <= masks <= self.num_masks:
            raise ValueError(f"{type(self).__name__}.log_prob: masks={masks}, but the model has "
                             f"{self.num_masks} mask sets")
        current = int(self.mask_index.data)
        per_mask = []
        for index in range(masks):
            self.use_masks(index)
            per_mask.append(self.conditional_log_prob(self(x, y), x).sum(axis=1))
        self.use_masks(current)
        return stack(per_mask, axis=0).logsumexp(axis=0) - math.log(masks)

    def classify(self, x: Tensor, prior=None, masks: int = 1) -> Tensor:
        """p(y | x) by Bayes' rule from the C class-conditional likelihoods: (N, C), rows summing to 1.

        log p(y | x) = log p(y) + log p(x | y) − logsumexp_y' [log p(y') + log p(x | y')]: C passes of the
        network, no gradient.

        Args:
            x: (N, D). prior: p(y), C probabilities; uniform by default. masks: as in :meth:`log_prob`.
        """
        if not self.classes:
            raise ValueError(f"{type(self).__name__}.classify: needs a class-conditional model (built with classes=C)")
        xp = backend.xp
        prior = xp.full(self.classes, 1 / self.classes) if prior is None else backend.asarray(prior)
        with no_grad():
            joint = stack([self.log_prob(x, masks, y=xp.full(len(x), label, dtype=xp.int64)) for label in
                           range(self.classes)], axis=1) + Tensor(xp.log(prior).astype(x.dtype))
            return F.softmax(joint, axis=1)

    def sample(self, n: int = 1, x=None, start: int = 0, y=None) -> Tensor:
        """Ancestral sampling: draw the variables one at a time, in the ordering, each from its conditional
        given those drawn before it (D passes of the network, with the mask set in use).

        Args:
            n: number of samples (ignored when ``x`` is given).
            x: (N, D) values to keep for the first ``start`` variables of the ordering (a completion);
                the rest are overwritten.
            start: how many variables of the ordering are given in ``x``.
            y: the labels to sample for, (N,), for a class-conditional MADE.

        Returns:
            (N, D) samples, not requiring grad.
        """
        data = backend.xp.zeros((n, self.in_features), dtype=self.layers[0].weight.dtype)
        if x is not None:
            data = backend.asarray(getattr(x, "data", x), dtype=data.dtype).copy()
        ordering = backend.to_numpy(self.ordering.data)
        with no_grad():
            for d in ordering[start:]:
                params = self(Tensor(data), y).data
                data[:, d] = self.sample_variable(params[:, d])
        return Tensor(data)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, hidden_sizes={self.hidden_sizes}, num_masks={self.num_masks}, "
                f"order_agnostic={self.order_agnostic}" + (f", classes={self.classes}" if self.classes else ""))


class GaussianMixtureMADE(MADE):
    """MADE for real-valued data: each conditional p(x_d | x_<d) is a mixture of K Gaussians,

        p(x_d | x_<d) = Σ_k π_k N(x_d; μ_k, σ_k²),

    whose weights (as logits), means and log standard deviations are the 3K outputs of variable d.

    Args:
        in_features: D (2 for the toy distributions in the plane).
        components: K.
        hidden_sizes, ordering, num_masks, order_agnostic, seed: as :class:`MADE`.
    """

    def __init__(self, in_features: int = 2, components: int = 10, hidden_sizes=(128, 128), **kwargs):
        self.components = components
        super().__init__(in_features, hidden_sizes, outputs_per_dim=3 * components, **kwargs)
        # Start every conditional as K narrow Gaussians spread evenly over [-2, 2] rather than K copies of
        # one: identical components get identical gradients and would never separate. (This suits data
        # standardised to mean 0 and variance 1.)
        bias = self.layers[-1].bias.data.reshape(in_features, 3 * components)
        bias[:, components:2 * components] = backend.xp.linspace(-2, 2, components)
        bias[:, 2 * components:] = math.log(2 / components)

    def split(self, params):
        """(..., 3K) -> weight logits, means, log standard deviations, each (..., K). Works on Tensors and arrays."""
        k = self.components
        return params[..., :k], params[..., k:2 * k], params[..., 2 * k:]

    def conditional_log_prob(self, params: Tensor, x: Tensor) -> Tensor:
        """log p(x_d | x_<d) = logsumexp_k [log π_k - ½((x_d - μ_k)/σ_k)² - log σ_k - ½ log 2π]: (N, D)."""
        logits, means, log_stds = self.split(params)
        z = (x.reshape(x.shape + (1,)) - means) * (-log_stds).exp()
        log_normal = -0.5 * z * z - log_stds - 0.5 * math.log(2 * math.pi)
        return (F.log_softmax(logits, axis=-1) + log_normal).logsumexp(axis=-1)

    def sample_variable(self, params):
        """Pick a component k with probability π_k for each row, then draw μ_k + σ_k·ε."""
        xp = backend.xp
        logits, means, log_stds = self.split(params)
        weights = xp.exp(logits - logits.max(axis=-1, keepdims=True))
        cumulative = xp.cumsum(weights / weights.sum(axis=-1, keepdims=True), axis=-1)
        u = backend.rng().random((len(params), 1), dtype=params.dtype)
        k = xp.minimum((cumulative < u).sum(axis=-1), self.components - 1)[:, None]
        noise = backend.rng().standard_normal((len(params), 1), dtype=params.dtype)
        return (xp.take_along_axis(means, k, axis=-1) + xp.exp(xp.take_along_axis(log_stds, k, axis=-1)) * noise)[:, 0]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", components={self.components}"

"""The binary restricted Boltzmann machine, trained by contrastive divergence, with its exact likelihood.

Smolensky (1986), "Information processing in dynamical systems: foundations of harmony theory"; Hinton
(2002), "Training products of experts by minimizing contrastive divergence"; Tieleman (2008), "Training
restricted Boltzmann machines using approximations to the likelihood gradient" (persistent CD); Hinton
(2010), "A practical guide to training restricted Boltzmann machines".

**Where it sits on the lecture's map** (Goodfellow 2017, figure 9): an *explicit* density whose
normaliser cannot in general be computed, so both its likelihood and its gradient are *approximated*, and
the approximation is a *Markov chain*: samples come from running Gibbs sampling for many steps, never in
one pass as MADE's or a GAN's do.

**The model.** V binary visible units v and H binary hidden units h, joined by weights W (H, V) (laid
out as a :class:`~scratchgen.nn.Linear` from visible to hidden) and no connection within a layer:

    E(v, h) = -hᵀWv - bᵀv - cᵀh,        p(v, h) = exp(-E(v, h)) / Z,        Z = Σ_v Σ_h exp(-E(v, h)).

Because no two hidden units touch, summing h out factorises, one unit at a time, into the *free energy*

    p(v) = exp(-F(v)) / Z,      F(v) = -bᵀv - Σ_j softplus(c_j + W_j·v),      softplus(a) = log(1 + eᵃ),

and, for the same reason, each layer is independent given the other (the two conditionals):

    p(h_j = 1 | v) = σ(c_j + W_j·v),        p(v_i = 1 | h) = σ(b_i + Σ_j h_j W_ji).

Block Gibbs sampling alternates them, v → h → v → ..., a Markov chain whose stationary law is p(v, h).

**Why log Z is intractable, and why it is tractable here.** Z sums 2^(V+H) terms. Summing out h by hand
(as in F) leaves 2^V; summing out v instead leaves 2^H:

    log Z = log Σ_h exp(cᵀh) Π_i (1 + exp(b_i + (Wᵀh)_i)) = logsumexp_h [cᵀh + Σ_i softplus(b_i + (Wᵀh)_i)].

No further factorisation exists (the visible units couple every pair of hidden units), so the cost is
exponential in the smaller layer: hopeless for 784 pixels and 500 hidden units (estimate it with AIS,
Salakhutdinov and Murray 2008), but for H ≤ 20 it is at most 2^20 ≈ 10⁶ rows of V softplus terms, a few
seconds (:meth:`RBM.log_partition`). Then log p(v) = -F(v) - log Z exactly, and the RBM's test NLL
stands in the same table as MADE's and PixelCNN's.

**The learning rule.** For one example, ∂ log p(v)/∂θ = -∂F(v)/∂θ + E_{p(v')}[∂F(v')/∂θ]: a *positive
phase* at the data and a *negative phase*, an expectation under the model. For W this is

    ∂ log p(v) / ∂W = E[h vᵀ | v] - E_{p(v', h')}[h' v'ᵀ],

the correlation of hidden and visible units with the data clamped minus the same correlation when the
model runs free (Hebbian learning minus "unlearning"). The negative phase needs samples from p, which
only a Markov chain can give. **CD-k** (Hinton 2002) starts the chain at the data and runs k Gibbs
steps: cheap and biased. **Persistent CD** (PCD, Tieleman 2008) keeps a set of chains alive across
updates and advances each by k steps per update; the weights change slowly, so the chains stay close to
the model's current distribution, and the estimate is that of true maximum likelihood as the learning
rate falls. As Hinton's guide advises, the hidden side of both statistics uses the probabilities
p(h = 1 | v) rather than samples (the same expectation, with less noise).

This is not backpropagation: :meth:`RBM.likelihood_gradients` writes the two statistics out, and
:class:`ContrastiveDivergence` puts them into each parameter's ``.grad``. (Autograd of the surrogate
F(v_data) - F(v_model), with the samples held fixed, gives the same numbers; the tests check it. Writing
the statistics out shows what CD *is*.) Setting ``.grad`` rather than updating the arrays by hand lets
the ordinary optimisers of :mod:`scratchgen.optim` (SGD, its momentum and weight decay) and the demos'
checkpoints apply unchanged.
"""

from __future__ import annotations

import numpy

from scratchgen import backend, nn
from scratchgen.models.fvsbn import IndependentBernoulli
from scratchgen.nn import functional as F
from scratchgen.nn._checks import positive_int
from scratchgen.ops.elementwise import logistic
from scratchgen.tensor import Tensor

__all__ = ["RBM", "ContrastiveDivergence"]

MAX_EXACT_HIDDEN = 20
"""The largest hidden layer whose log Z :meth:`RBM.log_partition` sums exactly (2^20 hidden states)."""


def _array(x):
    """The raw backend array of a Tensor, or ``x`` (an array of either library, or a list) as an array of the
    active backend: a NumPy array is copied to the device, as :func:`_as_tensor` copies it for the energies.
    (Not ``x.data``: a NumPy array's own ``.data`` is a buffer.)"""
    return x.data if isinstance(x, Tensor) else backend.asarray(x)


class RBM(nn.Module):
    """A binary restricted Boltzmann machine, E(v, h) = -hᵀWv - bᵀv - cᵀh.

    Args:
        visible: V, the number of visible units (784 for MNIST).
        hidden: H, the number of hidden units (at most 20 for the exact :meth:`log_partition`).
        init_std: the weights start N(0, init_std²) (0.01, as Hinton's guide and scikit-learn); the
            biases start at zero (see :meth:`fit_marginals` for a better visible bias).

    Attributes:
        weight: (H, V) Parameter W. visible_bias: (V,) Parameter b. hidden_bias: (H,) Parameter c.
    """

    def __init__(self, visible: int, hidden: int, init_std: float = 0.01):
        super().__init__()
        self.visible = positive_int(self, "visible", visible)
        self.hidden = positive_int(self, "hidden", hidden)
        dtype = backend.DEFAULT_DTYPE
        self.weight = nn.Parameter(init_std * backend.rng().standard_normal((hidden, visible), dtype=dtype))
        self.visible_bias = nn.Parameter(backend.xp.zeros((visible,), dtype=dtype))
        self.hidden_bias = nn.Parameter(backend.xp.zeros((hidden,), dtype=dtype))

    def fit_marginals(self, x, smoothing: float = 1.0) -> "RBM":
        """Set b_i to the log-odds of pixel i's (smoothed) frequency in ``x`` (Hinton's guide, section 8):
        while W is near 0 the model is then the independent-pixel baseline (the same smoothed estimate), and
        training starts from there rather than from all pixels at ½."""
        logits = IndependentBernoulli(self.visible).fit(x, smoothing).logits.data
        self.visible_bias.data = logits.astype(self.visible_bias.dtype)
        return self

    # ------------------------------------------------------------------ energies (Tensors, differentiable)

    def energy(self, v, h) -> Tensor:
        """E(v, h) = -hᵀWv - bᵀv - cᵀh, one per row: (N,) from v (N, V) and h (N, H)."""
        v, h = _as_tensor(v), _as_tensor(h)
        return -((F.linear(v, self.weight) * h).sum(axis=1) + (v * self.visible_bias).sum(axis=1)
                 + (h * self.hidden_bias).sum(axis=1))

    def free_energy(self, v) -> Tensor:
        """F(v) = -bᵀv - Σ_j softplus(c_j + W_j·v) = -log Σ_h exp(-E(v, h)), one per row: (N,)."""
        v = _as_tensor(v)
        return -(v * self.visible_bias).sum(axis=1) - F.softplus(F.linear(v, self.weight, self.hidden_bias)).sum(axis=1)

    # ------------------------------------------------------------------ conditionals and Gibbs (raw arrays)

    def hidden_probabilities(self, v):
        """p(h_j = 1 | v) = σ(c_j + W_j·v): (N, H) from v (N, V) (Tensor or array; returns an array)."""
        return logistic(_array(v) @ self.weight.data.T + self.hidden_bias.data)

    def visible_probabilities(self, h):
        """p(v_i = 1 | h) = σ(b_i + Σ_j h_j W_ji): (N, V) from h (N, H) (returns an array)."""
        return logistic(_array(h) @ self.weight.data + self.visible_bias.data)

    def sample_hidden(self, v):
        """h ~ p(h | v), (N, H) of zeros and ones."""
        return backend.bernoulli(self.hidden_probabilities(v))

    def sample_visible(self, h):
        """v ~ p(v | h), (N, V) of zeros and ones."""
        return backend.bernoulli(self.visible_probabilities(h))

    def gibbs(self, v, steps: int = 1):
        """``steps`` sweeps of block Gibbs sampling from v: h ~ p(h | v), then v ~ p(v | h). Returns (N, V)."""
        v = _array(v)
        for _ in range(steps):
            v = self.sample_visible(self.sample_hidden(v))
        return v

    def sample(self, n: int = 1, steps: int = 1000, start=None):
        """Run ``n`` chains for ``steps`` Gibbs sweeps and return their last states, (n, V).

        Args:
            start: (n, V) first states; by default, draws from p(v | h = 0) = σ(b) (the independent
                pixels, after :meth:`fit_marginals`).
        """
        if start is None:
            start = backend.bernoulli(backend.xp.broadcast_to(logistic(self.visible_bias.data), (n, self.visible)))
        return self.gibbs(start, steps)

    # ------------------------------------------------------------------ the exact likelihood

    def log_partition(self, batch_size: int = 1024) -> float:
        """log Z, exactly, by summing over all 2^H hidden states (see the module docstring):

            log Z = logsumexp_h [cᵀh + Σ_i softplus(b_i + (Wᵀh)_i)].

        The states are enumerated ``batch_size`` at a time as the bits of the integers 0..2^H-1; the
        (batch, V) softplus array is the whole cost, so a batch small enough for the cache is fastest.
        Each batch's terms are combined in float64; with float32 weights the result agreed with float64
        weights to 3e-6 nats on the demo's trained model (log Z ≈ 213).

        Raises:
            ValueError: H > 20 (2^H terms; the answer is then an estimate such as AIS's, not a sum).
        """
        if self.hidden > MAX_EXACT_HIDDEN:
            raise ValueError(f"RBM.log_partition: {self.hidden} hidden units means 2^{self.hidden} terms; the exact "
                             f"sum is for at most {MAX_EXACT_HIDDEN} (estimate log Z by AIS for larger models)")
        xp = backend.xp
        weight, visible_bias, hidden_bias = self.weight.data, self.visible_bias.data, self.hidden_bias.data
        states = 2 ** self.hidden
        bits = xp.arange(self.hidden - 1, -1, -1)  # state s has h_j = bit (H-1-j) of s
        per_batch = []
        for start in range(0, states, batch_size):
            codes = xp.arange(start, min(start + batch_size, states))
            h = ((codes[:, None] >> bits) & 1).astype(weight.dtype)
            a = h @ weight
            a += visible_bias
            terms = (h @ hidden_bias + _softplus_(a).sum(axis=1)).astype(numpy.float64)
            peak = terms.max()
            per_batch.append(peak + xp.log(xp.exp(terms - peak).sum()))
        per_batch = backend.to_numpy(xp.stack(per_batch))  # one transfer to the host, at the end
        peak = per_batch.max()
        return float(peak + numpy.log(numpy.exp(per_batch - peak).sum()))

    def log_prob(self, v, log_z: float | None = None) -> Tensor:
        """log p(v) = -F(v) - log Z in nats, one per row: (N,).

        Args:
            v: (N, V) binary.
            log_z: :meth:`log_partition`'s value, if already computed for these parameters (it costs
                seconds; the free energies of 1,000 digits cost milliseconds).
        """
        return -self.free_energy(v) - (self.log_partition() if log_z is None else log_z)

    # ------------------------------------------------------------------ the learning rule

    def likelihood_gradients(self, positive, negative) -> dict:
        """The gradient of the mean negative log-likelihood, estimated as negative minus positive statistics:

            ∂/∂W = <p(h|v) vᵀ>_model - <p(h|v) vᵀ>_data,   ∂/∂b = <v>_model - <v>_data,
            ∂/∂c = <p(h|v)>_model - <p(h|v)>_data,

        each <·> a mean over the rows (the sign is that of the loss an optimiser minimises; the ascent
        direction on log p is data minus model).

        Args:
            positive: (N, V) training examples (the data term).
            negative: (M, V) samples standing in for the model (the end of a Gibbs chain).

        Returns:
            {"weight": (H, V), "visible_bias": (V,), "hidden_bias": (H,)} arrays, named as the parameters.
        """
        positive, negative = _array(positive), _array(negative)
        h_positive, h_negative = self.hidden_probabilities(positive), self.hidden_probabilities(negative)
        return {
            "weight": h_negative.T @ negative / len(negative) - h_positive.T @ positive / len(positive),
            "visible_bias": negative.mean(axis=0) - positive.mean(axis=0),
            "hidden_bias": h_negative.mean(axis=0) - h_positive.mean(axis=0),
        }

    def extra_repr(self) -> str:
        return f"visible={self.visible}, hidden={self.hidden}"


class ContrastiveDivergence:
    """Contrastive divergence, CD-k (Hinton 2002), or persistent CD, PCD-k (Tieleman 2008).

    ``set_gradients(v)`` draws the negative samples and adds :meth:`RBM.likelihood_gradients` to each
    parameter's ``.grad``, as ``loss.backward()`` would; an optimiser's ``step()`` then applies them::

        cd = ContrastiveDivergence(model, k=1, persistent=True)
        opt = optim.SGD(model.parameters(), lr=0.05)
        for (x,) in loader:
            opt.zero_grad()
            cd.set_gradients(x)
            opt.step()

    Args:
        model: the RBM.
        k: Gibbs sweeps per update.
        persistent: False for CD-k (each chain starts at the minibatch), True for PCD-k (the chains go on
            from where the last update left them).
        chains: PCD's number of chains; by default the size of the first minibatch (as scikit-learn).

    Attributes:
        chains: (chains, V) PCD's current states (None until the first update, and always for CD-k).
    """

    def __init__(self, model: RBM, k: int = 1, persistent: bool = False, chains: int | None = None):
        self.model, self.k, self.persistent = model, positive_int(self, "k", k), bool(persistent)
        self.num_chains = None if chains is None else positive_int(self, "chains", chains)
        self.chains = None

    def negative_samples(self, v):
        """The model's stand-ins for this update: k Gibbs sweeps from v (CD) or from the chains (PCD)."""
        if not self.persistent:
            return self.model.gibbs(v, self.k)
        if self.chains is None:  # start from the independent pixels σ(b), as RBM.sample does
            self.chains = self.model.sample(self.num_chains or len(_array(v)), steps=0)
        self.chains = self.model.gibbs(self.chains, self.k)
        return self.chains

    def set_gradients(self, v):
        """Add the CD (or PCD) estimate of the mean NLL's gradient to the parameters' ``.grad``.

        Args:
            v: (N, V) a minibatch of training data (Tensor or array).

        Returns:
            The negative samples used, (N or chains, V).
        """
        negative = self.negative_samples(v)
        for name, grad in self.model.likelihood_gradients(v, negative).items():
            parameter = getattr(self.model, name)
            parameter.grad = grad if parameter.grad is None else parameter.grad + grad
        return negative

    def state_dict(self) -> dict:
        """PCD's chains (so a resumed run continues them); empty for CD or before the first update."""
        return {} if self.chains is None else {"chains": self.chains}

    def load_state_dict(self, state: dict) -> None:
        unknown = sorted(set(state) - {"chains"})
        if unknown:
            raise ValueError(f"ContrastiveDivergence.load_state_dict: unknown entries {unknown}")
        chains = state.get("chains")
        if chains is not None and (not self.persistent or chains.shape[1:] != (self.model.visible,)):
            raise ValueError(f"ContrastiveDivergence.load_state_dict: chains of shape {chains.shape} do not fit "
                             f"{'PCD' if self.persistent else 'CD, which keeps no chains'} on {self.model.visible} "
                             f"visible units")
        self.chains = None if chains is None else backend.asarray(chains, dtype=self.model.weight.dtype)

    def __repr__(self) -> str:
        return f"ContrastiveDivergence(k={self.k}, persistent={self.persistent})"


def _as_tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(backend.asarray(x))


def _softplus_(a):
    """softplus(a) = max(a, 0) + log(1 + e^-|a|), computed in place in ``a`` (which it returns): the
    formula of :class:`~scratchgen.ops.elementwise.LogOnePlusExp`, with one temporary array instead of four."""
    tail = backend.xp.abs(a)
    backend.xp.negative(tail, out=tail)
    backend.xp.exp(tail, out=tail)
    tail += 1
    backend.xp.log(tail, out=tail)
    backend.xp.maximum(a, 0, out=a)
    a += tail
    return a

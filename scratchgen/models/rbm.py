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
exponential in the smaller layer: for H ≤ 20 it is at most 2^20 ≈ 10⁶ rows of V softplus terms, a few
seconds (:meth:`RBM.log_partition`). Then log p(v) = -F(v) - log Z exactly, and the RBM's test NLL
stands in the same table as MADE's and PixelCNN's. For 784 pixels and 500 hidden units the sum is
hopeless, and :func:`ais_log_partition` estimates it instead, by annealed importance sampling
(Neal 2001; Salakhutdinov and Murray 2008, "On the quantitative analysis of deep belief networks").

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

import contextlib
from dataclasses import dataclass

import numpy

from scratchgen import backend, nn
from scratchgen.models.fvsbn import IndependentBernoulli
from scratchgen.nn import functional as F
from scratchgen.nn._checks import positive_int
from scratchgen.ops.elementwise import logistic
from scratchgen.tensor import Tensor

__all__ = ["RBM", "ContrastiveDivergence", "AISEstimate", "ais_log_partition", "ais_schedule"]

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
                             f"sum is for at most {MAX_EXACT_HIDDEN} (estimate log Z with ais_log_partition beyond)")
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
            per_batch.append(_log_sum_exp((h @ hidden_bias + _softplus_(a).sum(axis=1)).astype(numpy.float64), xp))
        return float(_log_sum_exp(backend.to_numpy(xp.stack(per_batch))))  # one transfer to the host, at the end

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


# ------------------------------------------------------------------ log Z by annealed importance sampling

DEFAULT_AIS_STEPS = 10_000
"""K, the annealing steps of :func:`ais_schedule`'s default: two thirds of the paper's 15,000, about 20 s
for 784 × 500 with 100 runs on one core."""


def ais_schedule(steps: int = DEFAULT_AIS_STEPS) -> numpy.ndarray:
    """Salakhutdinov and Murray's inverse temperatures 0 = β_0 < β_1 < ... < β_K = 1, for K = ``steps``.

    Theirs are 15,000 steps spaced evenly, 1,000 in [0, 0.5), 4,000 in [0.5, 0.9) and 10,000 in [0.9, 1]:
    two thirds of the steps in the last tenth of the way, where the distributions sharpen into the trained
    model's modes and change most per unit of β. The same proportions, 1 : 4 : 10, for any K ≥ 3.

    Returns:
        (K + 1,) float64 NumPy array (host numbers: each β is a Python float in the loop).
    """
    steps = positive_int("ais_schedule", "steps", steps)
    if steps < 3:
        raise ValueError(f"ais_schedule: steps must be at least 3 (one per stretch of the schedule), got {steps}; "
                         f"pass betas=[0, 1] to ais_log_partition for plain importance sampling")
    first, second = max(1, round(steps / 15)), max(1, round(4 * steps / 15))
    return numpy.concatenate([numpy.linspace(0.0, 0.5, first, endpoint=False),
                              numpy.linspace(0.5, 0.9, second, endpoint=False),
                              numpy.linspace(0.9, 1.0, steps - first - second + 1)])


@dataclass(frozen=True)
class AISEstimate:
    """What :func:`ais_log_partition` returns, in nats.

    Attributes:
        log_z: log Ẑ = log Z_A + log mean_m w_m, the estimate of the model's log Z.
        log_z_lower, log_z_upper: log(Ẑ - 3σ̂) and log(Ẑ + 3σ̂), σ̂ the standard error of Ẑ estimated from
            the runs (the interval Salakhutdinov and Murray report; -inf below when 3σ̂ ≥ Ẑ, NaN for one run).
        log_z_base: log Z_A of the base-rate model, exact: Σ_i softplus(b_A,i) + H log 2.
        log_weights: (runs,) float64 NumPy array, each run's log w_m, an estimate of log(Z / Z_A).
        base_visible_bias: (V,) float64 NumPy array, b_A.
        betas: (K + 1,) the schedule used.
    """

    log_z: float
    log_z_lower: float
    log_z_upper: float
    log_z_base: float
    log_weights: numpy.ndarray
    base_visible_bias: numpy.ndarray
    betas: numpy.ndarray

    @property
    def effective_runs(self) -> float:
        """(Σ w)² / Σ w², between 1 (one run carries all the weight) and the number of runs (all equal)."""
        relative = numpy.exp(self.log_weights - self.log_weights.max())
        return float(relative.sum() ** 2 / (relative ** 2).sum())


def ais_log_partition(model: RBM, data=None, *, betas=None, runs: int = 100, seed: int | None = None) -> AISEstimate:
    """log Z of ``model`` by annealed importance sampling (Neal 2001; Salakhutdinov and Murray 2008).

    **Importance sampling.** For a *base* distribution p_A = p*_A / Z_A whose Z_A we know and can sample,
    Z_B = Σ_v p*_B(v) = Z_A · E_{v ~ p_A}[p*_B(v) / p*_A(v)]: the mean of the weights w = p*_B / p*_A at
    draws from the base is an unbiased estimate of Z_B / Z_A. It is useless when p_A and p_B are far apart,
    as a factorised base and a trained RBM are: nearly every draw lands where p*_B is tiny, and the mean
    rests on draws too rare to happen.

    **Annealing.** Bridge them with distributions p_0 = p_A, p_1, ..., p_K = p_B, each close to the next,
    and a Markov transition T_k that leaves p_k invariant. Draw v_1 ~ p_0, then v_{k+1} ~ T_k(· | v_k), and

        w = Π_{k=1..K} p*_k(v_k) / p*_{k-1}(v_k).

    w is still unbiased for Z_K / Z_0. Run the chain backwards from v_K ~ p_K with the reversals
    T̃_k(v | v') = T_k(v' | v) p_k(v) / p_k(v') (a Markov chain, so its path probabilities sum to 1); the
    ratio of its path probability to the forward one telescopes, T by T, to (Z_0 / Z_K) · w. So w is a
    density ratio on paths, and E_forward[w] = Z_K / Z_0 · Σ_paths backward(path) = Z_K / Z_0. With one
    step (``betas=[0, 1]``) this is the plain importance sampling above.

    **The path for an RBM.** The base is an RBM with the same H hidden units, zero weights and hidden biases
    c_A = 0, and visible biases b_A: p_A(v) = Π_i σ(b_A,i)^v_i (1 - σ(b_A,i))^(1-v_i), sampled exactly, with
    log Z_A = Σ_i softplus(b_A,i) + H log 2 (each free hidden unit doubles the count). p_k interpolates the
    two energies of (v, h), E_k = (1 - β_k) E_A + β_k E_B, so p_k is itself an RBM, with weights β_k W,
    hidden biases β_k c and visible biases (1 - β_k) b_A + β_k b. Its hidden units see β_k (W v + c), and
    T_k is one sweep of its block Gibbs sampler, v → h → v. Summing h out as for F(v),

        -log p*_k(v) = F_k(v) = -((1 - β_k) b_A + β_k b)ᵀv - Σ_j softplus(β_k (c_j + W_j·v)),

    so a weight's factor is exp(F_{k-1}(v_k) - F_k(v_k)): the free energies, with no hidden state in it.
    (Counting T_k's state as v alone, the kernel v → v of a whole sweep leaves p_k(v) invariant, and
    the argument above needs nothing more.) The weights are multiplied as sums of logs in float64.

    **The estimate and its interval.** With M independent runs, Ẑ = Z_A · mean_m w_m is unbiased for Z,
    and its standard error σ̂ = Z_A · std_m(w_m) / √M. log Ẑ is not unbiased: by Jensen, E[log Ẑ] ≤ log Z,
    and the weights are heavy-tailed, so a finite mean usually misses the rare large ones. AIS therefore
    tends to *under*estimate log Z, and the NLL mean F(x) + log Ẑ is on average optimistic. The reported
    log(Ẑ ± 3σ̂) measures the spread of the weights that were drawn; a narrow interval cannot show the
    weights that were never drawn (more steps, not more runs, is the cure for those).

    Args:
        model: the RBM (V visible, H hidden units).
        data: (N, V) binary examples whose smoothed pixel log-odds become b_A (as :meth:`RBM.fit_marginals`;
            the paper's base-rate model); None uses the model's own visible biases.
        betas: the schedule 0 = β_0 ≤ ... ≤ β_K = 1 (a sequence of numbers); by default
            :func:`ais_schedule`'s K = 10,000 (about 20 s for 784 × 500 with 100 runs on one core).
        runs: M, the independent annealing runs (the paper's 100).
        seed: draw from a generator of this seed, leaving the caller's random stream untouched
            (:func:`~scratchgen.backend.fork_rng`); None draws from :func:`~scratchgen.backend.rng`.

    Raises:
        TypeError: model not an RBM, or runs not an int. ValueError: data not (N, V), runs below 1, or a
            schedule that does not rise from 0 to 1.
    """
    if not isinstance(model, RBM):
        raise TypeError(f"ais_log_partition: model must be an RBM, got {type(model).__name__}")
    runs = positive_int("ais_log_partition", "runs", runs)
    betas = ais_schedule() if betas is None else _checked_schedule(betas)
    xp = backend.xp
    weight, visible_bias, hidden_bias = model.weight.data, model.visible_bias.data, model.hidden_bias.data
    if data is None:
        base_bias = visible_bias.copy()
    else:
        shape = tuple(_array(data).shape)
        if len(shape) != 2 or shape[1] != model.visible:
            raise ValueError(f"ais_log_partition: data must be (N, {model.visible}) binary examples, got shape {shape}")
        base_bias = IndependentBernoulli(model.visible).fit(data).logits.data.astype(weight.dtype)
    log_z_base = backend.to_numpy(_softplus_(base_bias.astype(numpy.float64)).sum()) + model.hidden * numpy.log(2)
    bias_change = (visible_bias - base_bias).astype(numpy.float64)  # b - b_A

    with backend.fork_rng(seed) if seed is not None else contextlib.nullcontext():
        v = backend.bernoulli(xp.broadcast_to(logistic(base_bias), (runs, model.visible)))  # v_1 ~ p_A
        log_w = xp.zeros(runs, dtype=numpy.float64)
        steps = len(betas) - 1
        for k in range(1, steps + 1):
            beta, previous = float(betas[k]), float(betas[k - 1])
            inputs = v @ weight.T
            inputs += hidden_bias  # W v + c, (runs, H)
            wide = inputs.astype(numpy.float64)
            # F_{k-1}(v_k) - F_k(v_k) = (β_k - β_{k-1}) (b - b_A)ᵀv + Σ_j [softplus(β_k a_j) - softplus(β_{k-1} a_j)]
            # with a = W v + c: the log of the weight's k-th factor
            log_w += (beta - previous) * (v @ bias_change)
            log_w += _softplus_(beta * wide).sum(axis=1) - _softplus_(previous * wide).sum(axis=1)
            if k < steps:  # v_{k+1} ~ T_k(· | v_k): one Gibbs sweep of the RBM at β_k
                h = backend.bernoulli(logistic(beta * inputs))
                v = backend.bernoulli(logistic(beta * (h @ weight + visible_bias) + (1 - beta) * base_bias))

    log_w = backend.to_numpy(log_w)  # the one transfer to the host
    log_mean_w = _log_sum_exp(log_w) - numpy.log(runs)  # log mean_m w_m
    relative = numpy.exp(log_w - log_mean_w)  # w_m / mean w: mean 1, so σ̂ / Ẑ = std / √M
    spread = 3 * relative.std(ddof=1) / numpy.sqrt(runs) if runs > 1 else numpy.nan
    log_z = float(log_z_base + log_mean_w)
    return AISEstimate(log_z=log_z, log_z_lower=-numpy.inf if spread >= 1 else log_z + float(numpy.log1p(-spread)),
                       log_z_upper=log_z + float(numpy.log1p(spread)), log_z_base=float(log_z_base),
                       log_weights=log_w, base_visible_bias=backend.to_numpy(base_bias).astype(numpy.float64),
                       betas=betas)


def _checked_schedule(betas) -> numpy.ndarray:
    """``betas`` as a float64 NumPy array, checked to rise from 0 to 1 (ValueError naming ais_log_partition)."""
    schedule = numpy.asarray(betas, dtype=numpy.float64)
    if (schedule.ndim != 1 or len(schedule) < 2 or schedule[0] != 0 or schedule[-1] != 1
            or (numpy.diff(schedule) < 0).any()):
        raise ValueError(f"ais_log_partition: betas must be a sequence rising from 0 to 1 (β_0 = 0 ≤ β_1 ≤ ... "
                         f"≤ β_K = 1, K ≥ 1), got {numpy.array2string(schedule, threshold=6)}")
    return schedule


def _as_tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(backend.asarray(x))


def _log_sum_exp(a, xp=numpy):
    """log Σ exp(a) over an array of module ``xp`` (NumPy's, or the backend's), its largest value taken out
    first so that no exp overflows: log Σ e^a_i = m + log Σ e^(a_i - m), m = max a."""
    peak = a.max()
    return peak + xp.log(xp.exp(a - peak).sum())


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

"""Optimisers: SGD with momentum (Polyak 1964; as in Goodfellow et al.'s GAN) and Adam (Kingma & Ba 2015).

An optimiser holds a list of parameters and, for each, the state of its update rule. ``step()`` reads
each parameter's ``.grad`` and changes its ``.data`` in place; ``zero_grad()`` clears the gradients
before the next backward. The update rules and hyperparameter names are PyTorch's::

    opt = Adam(model.parameters(), lr=1e-3)
    for x, y in loader:
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

Updates run outside autograd, on raw arrays, in place, so that no graph is recorded and no parameter
array is reallocated. Gradients are never written to: the engine may share one gradient array between
several tensors. :class:`EMA`, at the end, keeps a moving average of the weights beside an optimiser.
"""

from __future__ import annotations

import contextlib
import math
import numbers

from scratchgen import backend
from scratchgen.nn.module import array_to_load

__all__ = ["Optimizer", "SGD", "Adam", "linear_decay", "EMA"]


class Optimizer:
    """Base class: the parameter list, checked hyperparameters, ``zero_grad``, and saving/loading state.

    A subclass names its hyperparameters and the state it keeps per parameter, and checks its
    hyperparameters in :meth:`check_hyperparameters`: the constructor and :meth:`load_state_dict` both
    call it, so a value from a file passes exactly the checks that one from the command line does.
    """

    #: Names of the hyperparameters, saved in ``state_dict``; subclasses list theirs.
    hyperparameters: tuple = ("lr",)
    #: Names of the arrays (each shaped like its parameter) and of the step counters kept per parameter.
    state_arrays: tuple = ()
    state_counters: tuple = ()

    def __init__(self, params, **hyperparameters):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for i, p in enumerate(self.params):
            if not p.requires_grad:
                raise ValueError(f"{type(self).__name__}: parameter {i} (shape {p.shape}) does not require grad")
        vars(self).update(self.check_hyperparameters(hyperparameters, type(self).__name__))
        self.state = [dict() for _ in self.params]  # per parameter: name -> array or number

    def check_hyperparameters(self, values: dict, where: str) -> dict:
        """``values`` checked, as plain floats (and tuples): exactly the names in :attr:`hyperparameters`,
        each within its range. Subclasses check theirs and add them to what this returns.

        Args:
            values: name -> value, from the constructor's arguments or a saved state.
            where: who is asking, for the messages ("Adam", "Adam.load_state_dict").

        Raises:
            ValueError: a name missing or unknown, or a value out of its range.
        """
        missing = sorted(set(self.hyperparameters) - set(values))
        unknown = sorted(set(values) - set(self.hyperparameters))
        if missing or unknown:
            raise ValueError(f"{where}: missing hyperparameters {missing}, unknown hyperparameters {unknown}; "
                             f"a {type(self).__name__} has {list(self.hyperparameters)}")
        return {"lr": _checked_number(where, "learning rate", values["lr"], "positive and finite", lambda lr: lr > 0)}

    def zero_grad(self) -> None:
        """Forget the gradients of every parameter (they accumulate across backward calls otherwise)."""
        for p in self.params:
            p.grad = None

    def step(self) -> None:
        for p, state in zip(self.params, self.state):
            if p.grad is not None:
                self.update(p, p.grad, state)

    def update(self, param, grad, state: dict) -> None:
        """Change ``param.data`` in place from its gradient and its state; subclasses write the rule."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        """{"type": "Adam", "hyperparameters": {...}, "state": {"0": {"exp_avg": array, "step": 3, ...}, ...}}.

        The arrays are the live state, not copies (as in PyTorch): save or deep-copy them before stepping on.
        """
        return {
            "type": type(self).__name__,
            "hyperparameters": {name: getattr(self, name) for name in self.hyperparameters},
            "state": {str(i): dict(s) for i, s in enumerate(self.state) if s},
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Load :meth:`state_dict`'s output, all or nothing: everything is checked before anything is set.

        Raises:
            ValueError: the state is another optimiser's, a hyperparameter is missing, unknown or out of
                range (as the constructor would say), or a parameter's state has other names, shapes or
                counts than this optimiser keeps.
            TypeError: a saved array's dtype is of another kind than its parameter's.
        """
        where = f"{type(self).__name__}.load_state_dict"
        unknown = sorted(set(state_dict) - {"type", "hyperparameters", "state"})
        if unknown:
            raise ValueError(f"{where}: unknown entries {unknown} in the state")
        # A state saved before the type was recorded has none; its hyperparameters' names still differ.
        saved_type = state_dict.get("type", type(self).__name__)
        if saved_type != type(self).__name__:
            raise ValueError(f"{where}: the state was saved by {saved_type}, not {type(self).__name__}; load it into {saved_type}")
        hyperparameters = self.check_hyperparameters(state_dict["hyperparameters"], where)
        state = self._checked_state(state_dict["state"], where)
        vars(self).update(hyperparameters)
        self.state = state

    def _checked_state(self, saved: dict, where: str) -> list:
        """The per-parameter state from ``saved`` ({"0": {...}, ...}), each entry checked, as new arrays."""
        state = [dict() for _ in self.params]
        index = {str(i): i for i in range(len(self.params))}
        names = sorted(self.state_arrays + self.state_counters)
        for key, entries in saved.items():
            if key not in index:
                raise ValueError(f"{where}: state for parameter {key!r}, but the parameters are numbered "
                                 f"0 to {len(self.params) - 1}")
            i = index[key]
            found = sorted(entries) if isinstance(entries, dict) else entries
            if found != names:
                raise ValueError(f"{where}: parameter {i}'s state has {found!r}; a {type(self).__name__} keeps {names}")
            for name in self.state_arrays:
                state[i][name] = array_to_load(entries[name], self.params[i], f"{where}: {name} of parameter {i}")
            for name in self.state_counters:
                count = entries[name]
                if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 0:
                    raise ValueError(f"{where}: {name} of parameter {i} must be a count (an integer >= 0), "
                                     f"got {count!r}")
                state[i][name] = int(count)
        return state


def _checked_weight_decay(where: str, value) -> float:
    """Weight decay, shared by SGD and Adam: an L2 penalty's coefficient, so not negative."""
    return _checked_number(where, "weight_decay", value, "at least 0 and finite", lambda decay: decay >= 0)


def _checked_number(where: str, name: str, value, rule: str, holds) -> float:
    """``value`` as a float, if it is a finite real number for which ``holds(value)`` is true.

    Finiteness is checked here for every rule: an infinite learning rate is positive, and NaN passes any
    check written as ``if lr <= 0: raise``.

    Raises:
        ValueError: "<where>: <name> must be <rule>, got <value>" otherwise.
    """
    if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
            or not holds(value)):
        raise ValueError(f"{where}: {name} must be {rule}, got {value!r}")
    return float(value)


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and weight decay (L2 penalty):

        d = g + λ·θ;   b ← μ·b + d;   θ ← θ - lr·b        (b = d on the first step)
    """

    hyperparameters = ("lr", "momentum", "weight_decay")
    state_arrays = ("momentum_buffer",)

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, momentum=momentum, weight_decay=weight_decay)

    def check_hyperparameters(self, values: dict, where: str) -> dict:
        checked = super().check_hyperparameters(values, where)
        checked["momentum"] = _checked_number(where, "momentum", values["momentum"], "in [0, 1)", lambda m: 0 <= m < 1)
        checked["weight_decay"] = _checked_weight_decay(where, values["weight_decay"])
        return checked

    def update(self, param, grad, state):
        if self.weight_decay:
            grad = grad + self.weight_decay * param.data
        if self.momentum:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = grad.copy()
            else:
                buffer = state["momentum_buffer"]
                buffer *= self.momentum
                buffer += grad
            grad = state["momentum_buffer"]
        param.data -= self.lr * grad


class Adam(Optimizer):
    """Adam: per-parameter steps from running averages of the gradient and its square:

        m ← β1·m + (1-β1)·g;   v ← β2·v + (1-β2)·g²
        θ ← θ - lr · (m / (1-β1ᵗ)) / (√(v / (1-β2ᵗ)) + ε)
    """

    hyperparameters = ("lr", "betas", "eps", "weight_decay")
    state_arrays = ("exp_avg", "exp_avg_sq")
    state_counters = ("step",)

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)

    def check_hyperparameters(self, values: dict, where: str) -> dict:
        checked = super().check_hyperparameters(values, where)
        betas = values["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise ValueError(f"{where}: betas must be a pair (beta1, beta2), got {betas!r}")
        checked["betas"] = tuple(_checked_number(where, f"betas[{i}]", beta, "in [0, 1)", lambda b: 0 <= b < 1)
                                 for i, beta in enumerate(betas))
        checked["eps"] = _checked_number(where, "eps", values["eps"], "positive and finite", lambda eps: eps > 0)
        checked["weight_decay"] = _checked_weight_decay(where, values["weight_decay"])
        return checked

    def update(self, param, grad, state):
        beta1, beta2 = self.betas
        if self.weight_decay:
            grad = grad + self.weight_decay * param.data
        if not state:
            state["step"] = 0
            state["exp_avg"] = backend.xp.zeros_like(param.data)
            state["exp_avg_sq"] = backend.xp.zeros_like(param.data)
        state["step"] += 1
        m, v, t = state["exp_avg"], state["exp_avg_sq"], state["step"]
        xp = backend.xp
        # One scratch array serves every intermediate, in place: far fewer allocations than the
        # one-line formula, which matters when the parameters are large and the model is small.
        scratch = xp.empty_like(param.data)  # (an array even for a 0-d parameter, unlike grad * c)
        xp.multiply(grad, 1 - beta1, out=scratch)
        m *= beta1
        m += scratch  # m ← β1·m + (1-β1)·g
        xp.multiply(grad, grad, out=scratch)
        scratch *= 1 - beta2
        v *= beta2
        v += scratch  # v ← β2·v + (1-β2)·g²
        # The bias corrections folded into two scalars, as PyTorch does: θ ← θ - lr/(1-β1ᵗ) · m / (√v/√(1-β2ᵗ) + ε)
        xp.sqrt(v, out=scratch)
        scratch *= 1 / math.sqrt(1 - beta2**t)
        scratch += self.eps
        xp.divide(m, scratch, out=scratch)
        scratch *= self.lr / (1 - beta1**t)
        param.data -= scratch


def linear_decay(lr: float, step: int, total: int, decay_from: float) -> float:
    """A learning-rate schedule: ``lr`` until the fraction ``decay_from`` of ``total`` steps, then falling
    linearly to 0 at the last step (1: never). A function of the step alone, so that a resumed run follows
    the same schedule; set it before each step with ``opt.lr = linear_decay(base, step, total, 0.5)``.
    """
    start = decay_from * total
    if step < start:
        return lr
    return lr * (total - step) / max(total - start, 1)


class EMA:
    """An exponential moving average of a module's weights, to evaluate or sample with: the averaged
    weights of a noisy training run are usually better than its last ones (Polyak & Juditsky 1992; the
    weights diffusion models are sampled with, Ho et al. 2020, decay 0.9999).

    After the n-th call of :meth:`update`, for every parameter θ with values θ_1, ..., θ_n after each step:

        θ̄_n = Σ_k w_k θ_k,   w_k = (1 − d) d^(n−k) / (1 − d^n)     (``bias_correction=True``, the default)

    the average with weights falling by d per step back in time, normalised to sum to 1, as Adam corrects
    its moments (Kingma & Ba 2015): nothing of the random initial weights is in it. It is kept as one
    running array per parameter, θ̄ ← d_n θ̄ + (1 − d_n) θ with d_n = d (1 − d^(n−1)) / (1 − d^n), which
    rises from 0 at the first update towards d. Without the correction the rule is θ̄ ← d θ̄ + (1 − d) θ
    from θ̄_0 = the weights at construction (the usual form; at d = 0.999 the initial weights still hold
    d^500 = 61% of the average after 500 steps, the budget of a 10-minute CPU run). Either way, before
    the first update the average is the weights at construction.

    Only parameters are averaged; buffers (batch norm's running statistics) are left to the module::

        ema = EMA(model, decay=0.999)
        for x in loader:
            ...; opt.step(); ema.update()
        with ema.average_parameters():      # the averaged weights, put back afterwards
            samples = diffusion.sample(64, ...)

    Args:
        module: the module whose parameters to average.
        decay: d, in [0, 1).
        bias_correction: normalise the weights w_k (above), or start from the module's weights.

    Raises:
        ValueError: a decay outside [0, 1), or a module without parameters.
    """

    def __init__(self, module, decay: float = 0.999, bias_correction: bool = True):
        self.decay = _checked_number("EMA", "decay", decay, "in [0, 1)", lambda d: 0 <= d < 1)
        if not isinstance(bias_correction, bool):
            raise ValueError(f"EMA: bias_correction must be True or False, got {bias_correction!r}")
        self.bias_correction = bias_correction
        self.module = module
        self.params = dict(module.named_parameters())
        if not self.params:
            raise ValueError(f"EMA: {type(module).__name__} has no parameters to average")
        self.num_updates = 0
        self.shadow = {name: p.data.copy() for name, p in self.params.items()}  # θ̄, one array per parameter

    def current_decay(self) -> float:
        """The d_n the next update will use: d, or d (1 − d^(n−1)) / (1 − d^n) with the bias correction."""
        if not self.bias_correction:
            return self.decay
        n = self.num_updates + 1
        return self.decay * (1 - self.decay ** (n - 1)) / (1 - self.decay ** n)

    def update(self) -> None:
        """θ̄ ← d_n θ̄ + (1 − d_n) θ for every parameter, in place; call it after each optimiser step."""
        decay = self.current_decay()
        for name, p in self.params.items():
            average = self.shadow[name]
            average *= decay
            average += (1 - decay) * p.data
        self.num_updates += 1

    def copy_to(self, module=None) -> None:
        """Overwrite the parameters of ``module`` (the averaged module by default, or another of the same
        architecture) with the averages."""
        module = self.module if module is None else module
        names = sorted(name for name, _ in module.named_parameters())
        if names != sorted(self.shadow):
            raise ValueError(f"EMA.copy_to: the module's parameters {names} are not the averaged ones "
                             f"{sorted(self.shadow)}")
        module.load_state_dict(self.shadow, strict=False)  # not strict: buffers are not averaged; shapes checked

    @contextlib.contextmanager
    def average_parameters(self):
        """Within the block the module holds the averaged weights; afterwards its own come back, also when
        the block raises."""
        own = {name: p.data for name, p in self.params.items()}
        self.copy_to()
        try:
            yield self.module
        finally:
            for name, p in self.params.items():
                p.data = own[name]

    def state_dict(self) -> dict:
        """{"decay": d, "bias_correction": bool, "num_updates": n, "shadow": {name: array}}, live arrays
        (copy them to keep a snapshot, as for :meth:`Optimizer.state_dict`)."""
        return {"decay": self.decay, "bias_correction": self.bias_correction, "num_updates": self.num_updates,
                "shadow": dict(self.shadow)}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load :meth:`state_dict`'s output, all or nothing; the saved decay and correction replace these.

        Raises:
            ValueError: entries missing or unknown, a decay or count out of range, or averages for other
                parameters or of other shapes than the module's. TypeError: an average of another dtype kind.
        """
        where = "EMA.load_state_dict"
        expected = {"decay", "bias_correction", "num_updates", "shadow"}
        if set(state_dict) != expected:
            raise ValueError(f"{where}: expected the entries {sorted(expected)}, got {sorted(state_dict)}")
        decay = _checked_number(where, "decay", state_dict["decay"], "in [0, 1)", lambda d: 0 <= d < 1)
        count, correction = state_dict["num_updates"], state_dict["bias_correction"]
        if isinstance(count, bool) or not isinstance(count, numbers.Integral) or count < 0:
            raise ValueError(f"{where}: num_updates must be a count (an integer >= 0), got {count!r}")
        if not isinstance(correction, bool):
            raise ValueError(f"{where}: bias_correction must be True or False, got {correction!r}")
        saved = state_dict["shadow"]
        if set(saved) != set(self.params):
            raise ValueError(f"{where}: averages for {sorted(set(saved) - set(self.params))} that the module "
                             f"lacks, none for {sorted(set(self.params) - set(saved))}")
        shadow = {name: array_to_load(saved[name], p, f"{where}: {name}") for name, p in self.params.items()}
        self.decay, self.bias_correction, self.num_updates, self.shadow = decay, correction, int(count), shadow

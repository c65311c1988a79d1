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
several tensors.
"""

from __future__ import annotations

import math

from scratchgen import backend

__all__ = ["Optimizer", "SGD", "Adam"]


class Optimizer:
    """Base class: the parameter list, ``zero_grad``, and saving/loading of per-parameter state."""

    #: Names of the hyperparameters saved in ``state_dict``; subclasses list theirs.
    hyperparameters: tuple = ("lr",)

    def __init__(self, params, lr: float):
        self.params = list(params)
        if not self.params:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        for i, p in enumerate(self.params):
            if not p.requires_grad:
                raise ValueError(f"{type(self).__name__}: parameter {i} (shape {p.shape}) does not require grad")
        if lr <= 0:
            raise ValueError(f"{type(self).__name__}: learning rate must be positive, got {lr}")
        self.lr = lr
        self.state = [dict() for _ in self.params]  # per parameter: name -> array or number

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
        """{"hyperparameters": {...}, "state": {"0": {"exp_avg": array, "step": 3, ...}, ...}}.

        The arrays are the live state, not copies (as in PyTorch): save or deep-copy them before stepping on.
        """
        return {
            "hyperparameters": {name: getattr(self, name) for name in self.hyperparameters},
            "state": {str(i): dict(s) for i, s in enumerate(self.state) if s},
        }

    def load_state_dict(self, state_dict: dict) -> None:
        for name, value in state_dict["hyperparameters"].items():
            setattr(self, name, tuple(value) if isinstance(value, list) else value)
        self.state = [dict() for _ in self.params]
        for key, saved in state_dict["state"].items():
            i = int(key)
            if i >= len(self.params):
                raise ValueError(f"{type(self).__name__}.load_state_dict: state for parameter {i}, but only "
                                 f"{len(self.params)} parameters")
            for name, value in saved.items():
                if hasattr(value, "shape"):
                    if tuple(value.shape) != self.params[i].shape:
                        raise ValueError(f"{type(self).__name__}.load_state_dict: {name} of parameter {i} has shape "
                                         f"{tuple(value.shape)}, the parameter {self.params[i].shape}")
                    value = backend.asarray(value, dtype=self.params[i].dtype).copy()
                self.state[i][name] = value


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum and weight decay (L2 penalty):

        d = g + λ·θ;   b ← μ·b + d;   θ ← θ - lr·b        (b = d on the first step)
    """

    hyperparameters = ("lr", "momentum", "weight_decay")

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr)
        if not 0 <= momentum < 1:
            raise ValueError(f"SGD: momentum must be in [0, 1), got {momentum}")
        self.momentum, self.weight_decay = momentum, weight_decay

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

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr)
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"Adam: betas must be in [0, 1), got {betas}")
        self.betas, self.eps, self.weight_decay = tuple(betas), eps, weight_decay

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

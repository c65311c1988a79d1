"""A generative stochastic network in its simplest form: the Markov chain of a denoising autoencoder.

The lecture's map has a leaf "Markov chain, implicit density": a model we can sample from by running a
chain, but whose density we never write down. Bengio, Yao, Alain and Vincent (2013, "Generalized
denoising auto-encoders as generative models") showed that a denoising autoencoder is such a model.
Train it, as :class:`~scratchgen.models.autoencoder.DenoisingAutoencoder` does, to give a distribution
P_θ(x | x̃) over clean images x from a corrupted x̃ ~ C(x̃ | x); then alternate the two conditionals::

    x̃_t     ~ C(x̃ | x_t)          corrupt          (the known noise, salt-and-pepper here)
    x_{t+1} ~ P_θ(x | x̃_t)        denoise, sample  (Bernoulli(σ(logits)) for binary pixels)

If P_θ(x | x̃) is the true P(x | x̃) of the data, the data distribution P(x) is a stationary
distribution of this chain: draw x ~ P(x), corrupt it, and (x, x̃) is a draw of the joint P(x, x̃);
sampling x′ from P(x | x̃) gives another draw of that joint, so x′ ~ P(x) again. Their Theorem 1 makes
this a consistent estimator: as P_θ(x | x̃) → P(x | x̃) and the chain is ergodic, its stationary
distribution tends to P(x). No density is ever computed, hence *implicit*; Bengio, Thibodeau-Laufer,
Alain and Yosinski (2014, "Deep generative stochastic networks trainable by backprop") generalised the
idea to chains with latent state, the GSNs that give this leaf its name.

**Why the chain must sample.** The argument above needs x_{t+1} to be a *draw* from P_θ(x | x̃_t).
Taking the mean σ(logits) instead turns the second half of each step into a deterministic function,
and a denoiser is, by training, a contraction towards the data: it maps everything near a digit to that
digit's *average* look. The chain of means then settles on a few blurred prototypes, grey images that
the data never contains, and never produces the variation within a mode that the Bernoulli draw would
(:func:`chain_step` takes ``sample=False`` to show this; ``tests/test_models_gsn.py`` measures it).

**The corruption must be able to reach everything.** The chain is ergodic only if C(x̃ | x) can move
any image anywhere in a few steps. Salt-and-pepper noise (each pixel, with probability ``level``,
replaced by a fair coin) can switch pixels on and off; masking noise can only switch them off, and
leaves switching on to the denoiser alone. Corruption that is too weak mixes slowly (the chain stays
near one digit); corruption that is too strong makes P(x | x̃) many-moded, hard for a factorised
Bernoulli output to fit.

**Walkback** (Bengio et al. 2013, section 3.4): a chain started at data can wander into places the
training pairs (x, x̃) never visited, and the denoiser has no reason to lead it back; left alone these
become *spurious modes*. :func:`walkback_loss` trains on the chain's own excursions: from each training
x it runs k corrupt-and-sample steps and scores every reconstruction along the way against x, so that
the denoiser learns to walk back from where its chain goes. k = 1 is ordinary denoising training.

Built on :mod:`scratchgen.models.autoencoder` (the denoiser, :func:`~scratchgen.models.autoencoder.corrupt`
and the loss) and :mod:`scratchgen.backend` (arrays and the seeded generator), on either backend.
"""

from __future__ import annotations

from scratchgen import backend
from scratchgen.autograd import no_grad
from scratchgen.models.autoencoder import DenoisingAutoencoder, reconstruction_loss
from scratchgen.tensor import Tensor

__all__ = ["chain_step", "run_chain", "random_binary_images", "walkback_loss"]


def _check_model(model, where: str) -> None:
    if not isinstance(model, DenoisingAutoencoder):
        raise TypeError(f"{where}: expected a DenoisingAutoencoder (its corruption C(x̃|x) is half of the chain), "
                        f"got {type(model).__name__}")


def chain_step(model: DenoisingAutoencoder, x, sample: bool = True):
    """One transition of the chain: x_t → x̃_t ~ C(x̃ | x_t) → x_{t+1} ~ P_θ(x | x̃_t).

    The corruption is the model's own (``model.corrupt``: its noise and level, the ones it was trained
    with); the reconstruction distribution is a Bernoulli per pixel with P(x = 1 | x̃) = σ(logits).

    Args:
        model: a trained denoising autoencoder with a logit output.
        x: (N, C, H, W) current states, a Tensor or a backend array, binary for a proper chain.
        sample: draw x_{t+1} from the Bernoulli (the chain of Bengio et al. 2013); False takes its mean
            σ(logits) instead, the deterministic shortcut that does *not* sample P(x) (see the module
            docstring).

    Returns:
        (x_next, mean): backend arrays of x's shape: the next state, and the reconstruction's mean
        σ(logits) it was drawn from (the same array when ``sample`` is False).
    """
    _check_model(model, "chain_step")
    x = x if isinstance(x, Tensor) else Tensor(backend.asarray(x))
    with no_grad():
        corrupted = model.corrupt(x)
        mean = model.decode(model.encode(corrupted)).sigmoid().data
    return (backend.bernoulli(mean) if sample else mean), mean


def run_chain(model: DenoisingAutoencoder, x0, steps: int, every: int = 1, sample: bool = True):
    """Run N chains side by side for ``steps`` transitions, keeping every ``every``-th state.

    The model is put in evaluation mode first, so that no layer (dropout, batch norm) behaves as in
    training; the chain's randomness is the corruption and the Bernoulli draw alone.

    Args:
        model: a trained :class:`~scratchgen.models.autoencoder.DenoisingAutoencoder`.
        x0: (N, C, H, W) starting states (random noise from :func:`random_binary_images`, or data).
        steps: transitions to run, at least 1. every: keep the states after steps every, 2·every, ...
        sample: as in :func:`chain_step`.

    Returns:
        (states, means), backend arrays of shape (K, N, C, H, W) with K = 1 + steps // every: the kept
        states x_0, x_every, x_2·every, ..., and the reconstruction means each was drawn from (means[0]
        is x_0 itself, which was drawn from nothing).

    Raises:
        ValueError: if steps or every is not a positive integer.
    """
    _check_model(model, "run_chain")
    if not isinstance(steps, int) or steps < 1 or not isinstance(every, int) or every < 1:
        raise ValueError(f"run_chain: steps and every must be positive integers, got steps={steps!r}, every={every!r}")
    model.eval()
    x = x0.data if isinstance(x0, Tensor) else backend.asarray(x0)
    states, means = [x], [x]
    for step in range(1, steps + 1):
        x, mean = chain_step(model, x, sample)
        if step % every == 0:
            states.append(x)
            means.append(mean)
    return backend.xp.stack(states), backend.xp.stack(means)


def random_binary_images(n: int, image_shape, p: float = 0.5):
    """(n, *image_shape) images of independent Bernoulli(p) pixels: the chain's start "from noise"."""
    shape = (n,) + tuple(image_shape)
    return backend.bernoulli(backend.xp.full(shape, p, dtype=backend.xp.float32))


def walkback_loss(model: DenoisingAutoencoder, x: Tensor, walkbacks: int = 1, loss: str = "bce") -> Tensor:
    """The denoising loss averaged over k steps of the chain started at the training images x.

    Step j corrupts the chain's current state x*_j (x*_1 = x), reconstructs, and scores that
    reconstruction against the *original* x; x*_{j+1} is then drawn from the reconstruction's
    Bernoulli. The draws carry no gradient: they only choose where the next training input x̃ comes
    from, as the chain would. With ``walkbacks=1`` this is ordinary denoising training,
    ``reconstruction_loss(model(x), x)`` in training mode.

    Args:
        model: the denoising autoencoder being trained.
        x: (N, C, H, W) binary training images.
        walkbacks: k, the number of chain steps scored, at least 1.
        loss: as in :func:`~scratchgen.models.autoencoder.reconstruction_loss`.

    Returns:
        A scalar Tensor: the mean over the k steps of the per-pixel loss.
    """
    _check_model(model, "walkback_loss")
    if not isinstance(walkbacks, int) or walkbacks < 1:
        raise ValueError(f"walkback_loss: walkbacks must be a positive integer, got {walkbacks!r}")
    state, total = x, None
    for j in range(walkbacks):
        logits = model.decode(model.encode(model.corrupt(state)))
        term = reconstruction_loss(logits, x, loss)
        total = term if total is None else total + term
        if j + 1 < walkbacks:
            with no_grad():  # the draw is a constant: no gradient flows through where the chain went
                state = Tensor(backend.bernoulli(logits.detach().sigmoid().data))
    return total / walkbacks

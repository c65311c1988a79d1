"""The variational autoencoder (Kingma & Welling 2014) and its importance-weighted bound (Burda et al. 2016).

A VAE is a latent-variable model: draw a code from the prior p(z) = N(0, I), then an image from the
decoder p(x|z). Its likelihood p(x) = ∫ p(z) p(x|z) dz has no closed form, so an encoder q(z|x) =
N(μ(x), diag σ²(x)) is trained with the decoder to maximise the evidence lower bound (ELBO)

    log p(x) ≥ ELBO(x) = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z)),

whose gap is KL(q(z|x) ‖ p(z|x)). The first term, the *reconstruction* term, is estimated with one
sample z = μ + σ·ε, ε ~ N(0, I) (the reparameterisation trick, which makes the sample a differentiable
function of the encoder's outputs); the second, the *KL* term, is in closed form
(:func:`scratchgen.nn.functional.gaussian_kl`).

Averaging k importance weights instead of one gives a tighter bound (Burda et al. 2016, Theorem 1):

    log p(x) ≥ L_k(x) = E[log (1/k) Σ_i p(x, z_i) / q(z_i|x)],   z_1..z_k ~ q(z|x),

with L_1 = ELBO ≤ L_k ≤ L_{k+1} → log p(x). It serves to estimate the test negative log-likelihood
(k = 500 here, as in Burda et al.) and, optionally, as the training objective (the IWAE).

Conventions, each pinned by a test in ``tests/test_models_vae.py``:

* the encoder outputs log σ² ("logvar"), and σ = exp(½·logvar) in the sampler and the KL alike;
* losses are in nats per image: summed over pixels and latent dimensions, averaged over the batch
  (PyTorch's example also sums over the batch; with Adam the two train alike);
* decoders output logits: p(x|z) is Bernoulli(σ(logits)) for binarised images, or N(σ(logits), s²) for
  grey levels, with one variance s² shared by all pixels and learned (the "σ-VAE" of Rybkin et al. 2021).

**The conditional VAE** (Sohn, Lee and Yan, "Learning Structured Output Representation using Deep
Conditional Generative Models", 2015) models p(x | y) for a label y: built with ``classes=C``, the
encoder is q(z | x, y) and the decoder p(x | z, y), the label entering each as a one-hot row (beside the
image's features at the encoder's dense layer, :class:`LabelledEncoder`, and beside the code), while the
prior stays p(z) = N(0, I). The ELBO and its bound
L_k are those above with every term given y, so they bound log p(x | y); :func:`marginal_nll` sums the ten
conditionals into −log p(x) = −log Σ_y p(y) p(x | y). The code z then holds what the label does not:
the style (slant, thickness) that a decoder given another y draws as another digit. (The label must reach
the encoder's hidden layer, not only its output: given y only in the linear maps to μ and log σ², the
encoder cannot take the digit's identity out of z, and the decoder learns to read the digit from z and
to ignore y; on MNIST such a model drew the asked digit in 36% of samples.)

Builds on :mod:`scratchgen.nn` (Linear, Conv2d, ConvTranspose2d, the losses) and Tensor.logsumexp.
:class:`DenseVAE` is the network of PyTorch's ``examples/vae`` (784-400-20); :class:`ConvVAE` swaps its
dense layers for two strided convolutions down and two transposed convolutions up.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy

from scratchgen import backend, nn
from scratchgen.autograd import no_grad
from scratchgen.data import DataLoader
from scratchgen.nn import functional as F
from scratchgen.tensor import Tensor

__all__ = [
    "VAE", "DenseVAE", "ConvVAE", "VAELoss", "reparameterize", "log_standard_normal", "log_normal",
    "evaluate", "importance_sampled_nll", "marginal_nll", "LabelledEncoder",
]

LIKELIHOODS = ("bernoulli", "gaussian")
LOG_2PI = math.log(2 * math.pi)


class VAELoss(NamedTuple):
    """The negative ELBO and its two terms, in nats per image (averaged over the batch)."""

    loss: Tensor  #: rec + kl, the quantity to minimise
    rec: Tensor  #: −log p(x|z) for one z ~ q(z|x), summed over pixels
    kl: Tensor  #: KL(q(z|x) ‖ p(z)) in closed form, summed over latent dimensions


# ---------------------------------------------------------------------------------------- Gaussians


def reparameterize(mu: Tensor, logvar: Tensor, eps=None) -> Tensor:
    """A sample z = μ + σ·ε of N(μ, diag σ²), σ = exp(½·logvar), differentiable in μ and logvar.

    Args:
        mu, logvar: (..., D).
        eps: standard-normal noise whose trailing axes are mu's shape, e.g. (k, N, D) for k samples per
            row; None to draw one sample from :func:`scratchgen.backend.rng`. Pass fixed noise to make
            the sample a deterministic function (for gradcheck).

    Returns:
        z, of eps's shape (mu's shape when eps is None).
    """
    if eps is None:
        eps = backend.rng().standard_normal(mu.shape, dtype=mu.dtype)
    eps = eps if isinstance(eps, Tensor) else Tensor(backend.asarray(eps, dtype=mu.dtype))
    if mu.shape != logvar.shape or eps.shape[eps.ndim - mu.ndim:] != mu.shape:
        raise ValueError(f"reparameterize: mu {mu.shape}, logvar {logvar.shape} and eps {eps.shape} do not fit; "
                         f"expected equal mu and logvar, and eps of shape (..., *mu.shape)")
    return mu + (0.5 * logvar).exp() * eps


def log_standard_normal(z: Tensor) -> Tensor:
    """log N(z; 0, I) = −½ Σ_j (z_j² + log 2π), summed over the last axis: (..., D) -> (...)."""
    return -0.5 * (z * z + LOG_2PI).sum(axis=-1)


def log_normal(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; μ, diag σ²) = −½ Σ_j ((z_j − μ_j)²/σ_j² + log σ_j² + log 2π), over the last axis.

    Args:
        z: (..., D); mu, logvar: broadcastable to z.
    """
    diff = z - mu
    return -0.5 * (diff * diff * (-logvar).exp() + logvar + LOG_2PI).sum(axis=-1)


# ---------------------------------------------------------------------------------------- the model


class VAE(nn.Module):
    """Encoder q(z|x) = N(μ, diag σ²), prior p(z) = N(0, I), decoder p(x|z) from logits.

    :class:`DenseVAE` and :class:`ConvVAE` build the two networks; this class holds the probability.

    Args:
        encoder: images (N, *image_shape) -> features (N, features); for a conditional VAE, a module of
            (images, labels), such as :class:`LabelledEncoder`.
        decoder: codes (M, latent_dim) -> logits (M, *image_shape).
        features: width of the encoder's output, mapped to μ and log σ² by two linear heads.
        latent_dim: D, the size of z.
        likelihood: "bernoulli" for binary pixels, "gaussian" for grey levels in [0, 1].
        image_shape: one image's shape, (1, 28, 28) for MNIST.
        classes: 0 for p(x); C > 0 for the conditional VAE of p(x | y): then every method that reads
            images or codes takes their labels ``y`` too, (N,) integers or (N, C) label rows, and the
            decoder's first layer must read latent_dim + C numbers.
    """

    #: The Gaussian decoder's standard deviation s before training. Learned from there, but Adam moves log s²
    #: by about lr per step, so it starts near a good reconstruction's pixel error: started at s = 1, the
    #: reconstruction term is too weak against the KL and the codes go unused for many epochs.
    initial_sigma = 0.1

    def __init__(self, encoder: nn.Module, decoder: nn.Module, features: int, latent_dim: int,
                 likelihood: str = "bernoulli", image_shape=(1, 28, 28), classes: int = 0):
        super().__init__()
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"{type(self).__name__}: likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        self.latent_dim, self.likelihood, self.image_shape = latent_dim, likelihood, tuple(image_shape)
        self.classes = classes
        self.encoder = encoder
        self.fc_mu = nn.Linear(features, latent_dim)
        self.fc_logvar = nn.Linear(features, latent_dim)
        self.decoder = decoder
        if likelihood == "gaussian":  # log s², one variance shared by every pixel, learned with the rest
            self.log_sigma2 = nn.Parameter(backend.xp.full((1,), 2 * math.log(self.initial_sigma),
                                                            dtype=backend.DEFAULT_DTYPE))

    def as_images(self, x: Tensor) -> Tensor:
        """x as (N, *image_shape), from (N, *image_shape) or flattened (N, prod(image_shape))."""
        if x.ndim < 1 or x.size != len(x) * math.prod(self.image_shape):
            raise ValueError(f"{type(self).__name__}: input of shape {x.shape} does not hold images of shape "
                             f"{self.image_shape}; expected (N, {', '.join(map(str, self.image_shape))}) or flattened")
        return x.reshape((len(x),) + self.image_shape)

    def encode(self, x: Tensor, y=None):
        """q(z|x) (or q(z|x, y)): x (N, ...) -> (μ, log σ²), each (N, D)."""
        x = self.as_images(x)
        F.label_rows(y, self.classes, len(x), f"{type(self).__name__}.encode")  # checked here, used by the encoder
        h = self.encoder(x, y) if self.classes else self.encoder(x)
        return self.fc_mu(h), self.fc_logvar(h)

    def decode(self, z: Tensor, y=None) -> Tensor:
        """p(x|z) (or p(x|z, y)): codes (..., N, D) -> logits (..., N, *image_shape); leading axes (samples)
        pass through, and the N labels are repeated along them."""
        lead = z.shape[:-1]
        z = F.with_labels(z, y, self.classes, f"{type(self).__name__}.decode")
        logits = self.decoder(z.reshape(-1, z.shape[-1]))
        return logits.reshape(lead + self.image_shape)

    def forward(self, x: Tensor, eps=None, y=None):
        """Encode, sample one code per image, decode: returns (logits (N, *image_shape), μ, log σ²)."""
        mu, logvar = self.encode(x, y)
        return self.decode(reparameterize(mu, logvar, eps), y), mu, logvar

    def log_likelihood(self, x: Tensor, logits: Tensor) -> Tensor:
        """log p(x|z) summed over each image's pixels: x (N, *image_shape), logits (..., N, *image_shape) -> (..., N)."""
        x = Tensor(backend.xp.broadcast_to(self.as_images(x).data, logits.shape))  # the same x for every sample
        pixels = tuple(range(logits.ndim - len(self.image_shape), logits.ndim))
        if self.likelihood == "bernoulli":
            return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").sum(axis=pixels)
        squared = F.mse_loss(logits.sigmoid(), x, reduction="none").sum(axis=pixels)
        count = math.prod(self.image_shape)
        return -0.5 * (squared * (-self.log_sigma2).exp() + count * (self.log_sigma2 + LOG_2PI))

    def loss(self, x: Tensor, eps=None, y=None) -> VAELoss:
        """The negative ELBO, −log p(x|z) + KL(q(z|x) ‖ p(z)), one z per image, averaged over the batch
        (for a conditional VAE, −log p(x|z, y) + KL(q(z|x, y) ‖ p(z)), which bounds −log p(x|y)).

        Args:
            x: (N, *image_shape) or flattened, binary (Bernoulli) or in [0, 1] (Gaussian).
            eps: fixed noise (N, D), or None to draw it.
            y: the images' labels, for a conditional VAE.
        """
        x = self.as_images(x)
        logits, mu, logvar = self(x, eps, y)
        rec = -self.log_likelihood(x, logits).mean()
        kl = F.gaussian_kl(mu, logvar, reduction="mean")
        return VAELoss(rec + kl, rec, kl)

    def iwae_bound(self, x: Tensor, k: int, eps=None, y=None) -> Tensor:
        """log (1/k) Σ_i p(x|z_i) p(z_i) / q(z_i|x) for k codes z_i ~ q(z|x): per image, (N,).

        An unbiased estimate of the bound L_k ≤ log p(x); the log-mean-exp is a logsumexp, so weights
        of e^-100 do not underflow. Differentiable: minimise ``-iwae_bound(x, k).mean()`` to train an IWAE.

        Args:
            x: (N, *image_shape) or flattened. k: samples per image.
            eps: fixed noise (k, N, D), or None to draw it.
            y: the images' labels, for a conditional VAE, whose bound is on log p(x|y).
        """
        if k < 1:
            raise ValueError(f"iwae_bound: k must be a positive number of samples, got {k}")
        x = self.as_images(x)
        mu, logvar = self.encode(x, y)
        if eps is None:
            eps = backend.rng().standard_normal((k,) + mu.shape, dtype=mu.dtype)
        if tuple(eps.shape) != (k,) + mu.shape:
            raise ValueError(f"iwae_bound: eps has shape {tuple(eps.shape)}, expected (k, N, D) = {(k,) + mu.shape}")
        z = reparameterize(mu, logvar, eps)  # (k, N, D)
        log_w = self.log_likelihood(x, self.decode(z, y)) + log_standard_normal(z) - log_normal(z, mu, logvar)
        return log_w.logsumexp(axis=0) - math.log(k)

    # ------------------------------------------------------------------ pictures

    def sample(self, n: int, y=None, z=None, mean: bool = True) -> Tensor:
        """n images from n codes z ~ p(z): the decoder's means E[x|z] = σ(logits), or draws x ~ p(x|z).

        Args:
            y: for a conditional VAE, the n labels to draw (integers, or label rows to blend digits).
            z: (n, D) codes to decode instead of fresh draws (the same style under different labels).
            mean: True for the means, in [0, 1] (smooth pictures, what papers usually show); False for
                samples of the model itself: binary pixels x ~ Bernoulli(σ(logits)), or grey levels
                x = σ(logits) + s·ε, ε ~ N(0, I), for the Gaussian likelihood (not clipped to [0, 1]).

        Returns:
            (n, *image_shape).
        """
        with no_grad():
            if z is None:
                z = Tensor(backend.rng().standard_normal((n, self.latent_dim), dtype=backend.DEFAULT_DTYPE))
            means = self.decode(z, y).sigmoid()
            if mean:
                return means
            if self.likelihood == "bernoulli":
                u = backend.rng().random(means.shape, dtype=means.dtype)
                return Tensor((u < means.data).astype(means.dtype))
            eps = backend.rng().standard_normal(means.shape, dtype=means.dtype)
            return means + Tensor(eps) * (0.5 * self.log_sigma2).exp()

    def reconstruct(self, x: Tensor, y=None) -> Tensor:
        """The mean image decoded from each input's mean code μ(x): (N, *image_shape)."""
        with no_grad():
            return self.decode(self.encode(x, y)[0], y).sigmoid()

    def interpolate(self, x_from: Tensor, x_to: Tensor, steps: int = 10) -> Tensor:
        """Decode ``steps`` codes on the line from μ(x_from) to μ(x_to): (N, steps, *image_shape).

        Unconditional VAEs only: a conditional one walks between labels instead, by decoding one code
        under blends of two label rows (``sample(n, y=rows, z=codes)``)."""
        if self.classes:
            raise ValueError(f"{type(self).__name__}.interpolate: for an unconditional VAE; a conditional one "
                             "interpolates between labels with sample(n, y=label rows, z=codes)")
        with no_grad():
            start, end = self.encode(x_from)[0], self.encode(x_to)[0]
            t = Tensor(backend.xp.linspace(0, 1, steps, dtype=start.dtype)[None, :, None])
            codes = start.reshape(len(start), 1, -1) * (1.0 - t) + end.reshape(len(end), 1, -1) * t
            return self.decode(codes).sigmoid()


class LabelledEncoder(nn.Module):
    """q(z|x, y)'s network: ``body`` reads the image, the label's one-hot row joins its output, and
    ``head`` reads both: head([body(x), onehot(y)]) -> features.

    Args:
        body: images -> flat features (N, F). head: (N, F + classes) -> (N, features). classes: C.
    """

    def __init__(self, body: nn.Module, head: nn.Module, classes: int):
        super().__init__()
        self.body, self.head, self.classes = body, head, classes

    def forward(self, x, y):
        return self.head(F.with_labels(self.body(x), y, self.classes, "LabelledEncoder"))


class DenseVAE(VAE):
    """The VAE of PyTorch's ``examples/vae``: x -> 400 ReLU -> (μ, log σ²) ∈ R^D; z -> 400 ReLU -> logits.

    Args:
        hidden: width of the one hidden layer on each side (400).
        latent_dim: D (20). likelihood, image_shape, classes: as in :class:`VAE`.
    """

    def __init__(self, hidden: int = 400, latent_dim: int = 20, likelihood: str = "bernoulli", image_shape=(1, 28, 28),
                 classes: int = 0):
        pixels = math.prod(image_shape)
        if classes:  # the label beside the pixels, into the hidden layer
            encoder = LabelledEncoder(nn.Flatten(), nn.Sequential(nn.Linear(pixels + classes, hidden), nn.ReLU()), classes)
        else:
            encoder = nn.Sequential(nn.Flatten(), nn.Linear(pixels, hidden), nn.ReLU())
        decoder = nn.Sequential(nn.Linear(latent_dim + classes, hidden), nn.ReLU(), nn.Linear(hidden, pixels),
                                nn.Unflatten(image_shape))
        super().__init__(encoder, decoder, hidden, latent_dim, likelihood, image_shape, classes)


class ConvVAE(VAE):
    """A convolutional VAE: two 4x4 stride-2 convolutions halve the image twice (28 -> 14 -> 7), a dense
    layer maps to the codes; the decoder mirrors it with transposed convolutions (7 -> 14 -> 28).

    Args:
        channels: channels after the first and second convolution (32, 64).
        hidden: width of the dense layer between the feature maps and the codes (256).
        latent_dim, likelihood, classes: as in :class:`VAE`.
        image_shape: (C, H, W) with H and W divisible by 4.
    """

    def __init__(self, channels=(32, 64), hidden: int = 256, latent_dim: int = 20, likelihood: str = "bernoulli",
                 image_shape=(1, 28, 28), classes: int = 0):
        c, h, w = image_shape
        if h % 4 or w % 4:
            raise ValueError(f"ConvVAE: image height and width must be divisible by 4, got image_shape {image_shape}")
        c1, c2 = channels
        maps = (c2, h // 4, w // 4)
        convolutions = [nn.Conv2d(c, c1, 4, stride=2, padding=1), nn.ReLU(),
                        nn.Conv2d(c1, c2, 4, stride=2, padding=1), nn.ReLU(), nn.Flatten()]
        if classes:  # the label beside the feature maps, into the dense layer
            encoder = LabelledEncoder(nn.Sequential(*convolutions),
                                      nn.Sequential(nn.Linear(math.prod(maps) + classes, hidden), nn.ReLU()), classes)
        else:
            encoder = nn.Sequential(*convolutions, nn.Linear(math.prod(maps), hidden), nn.ReLU())
        decoder = nn.Sequential(
            nn.Linear(latent_dim + classes, hidden), nn.ReLU(), nn.Linear(hidden, math.prod(maps)), nn.ReLU(),
            nn.Unflatten(maps),
            nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(c1, c, 4, stride=2, padding=1),
        )
        super().__init__(encoder, decoder, hidden, latent_dim, likelihood, image_shape, classes)


# ---------------------------------------------------------------------------------------- evaluation


def evaluate(model: VAE, images, batch_size: int = 500, labels=None) -> dict:
    """The negative ELBO and its terms over a whole dataset, in nats per image (one z per image).

    Leaves the model in evaluation mode.

    Args:
        images: host array (N, ...) of float pixels, binary for a Bernoulli model.
        labels: host array (N,) of their labels, for a conditional VAE.

    Returns:
        ``{"neg_elbo": ..., "rec": ..., "kl": ...}`` as Python floats.
    """
    model.eval()
    totals = numpy.zeros(3)
    with no_grad():
        for batch in DataLoader(*_with_labels(images, labels), batch_size=batch_size):
            totals += [term.item() * len(batch[0]) for term in model.loss(batch[0], y=_labels_of(batch))]
    return {name: float(total / len(images)) for name, total in zip(("neg_elbo", "rec", "kl"), totals)}


def importance_sampled_nll(model: VAE, images, k: int = 500, max_samples: int = 2_500, labels=None) -> float:
    """−log p(x) (−log p(x|y) for a conditional VAE) estimated by the k-sample bound, averaged over the
    images: an upper bound on the NLL (in expectation) that approaches it as k grows.

    Args:
        images: host array (N, ...) of float pixels.
        labels: host array (N,) of their labels, for a conditional VAE.
        k: importance samples per image.
        max_samples: images x samples decoded at once, whatever k and N are; this bounds memory. The
            largest array is not the 784 pixels per code but, in the conv decoder, its transposed
            convolution's columns, 512 × 49 numbers per code: 250 MB at 2,500 codes. (At 25,000 it was
            2.5 GB, and the evaluation took twice as long, most of it in fresh memory.)
    """
    model.eval()
    total = 0.0
    with no_grad():
        for batch in DataLoader(*_with_labels(images, labels), batch_size=max(1, max_samples // k)):
            total += model.iwae_bound(batch[0], k, y=_labels_of(batch)).sum().item()
    return -total / len(images)


def marginal_nll(model: VAE, images, k: int = 500, prior=None, max_samples: int = 2_500) -> float:
    """−log p(x) = −log Σ_y p(y) p(x|y) of a conditional VAE, averaged over the images, each p(x|y) by
    its k-sample bound: a model of p(x | y) is also one of p(x), with the label summed out.

    Each log p(x|y) is replaced by its bound L_k(x|y) ≤ log p(x|y), so the sum is a bound too: an upper
    bound (in expectation) on −log p(x). Costs C times :func:`importance_sampled_nll`.

    Args:
        images: host array (N, ...) of float pixels.
        k: importance samples per image and label.
        prior: p(y), C probabilities; uniform by default.
    """
    if not model.classes:
        raise ValueError("marginal_nll: the model is unconditional (classes=0); use importance_sampled_nll")
    classes = model.classes
    prior = numpy.full(classes, 1 / classes) if prior is None else numpy.asarray(prior, dtype=numpy.float64)
    model.eval()
    per_label = numpy.empty((classes, len(images)))
    with no_grad():
        for label in range(classes):
            start = 0
            for (x,) in DataLoader(images, batch_size=max(1, max_samples // k)):
                y = numpy.full(len(x), label, dtype=numpy.int64)
                per_label[label, start:start + len(x)] = backend.to_numpy(model.iwae_bound(x, k, y=y).data)
                start += len(x)
    joint = per_label + numpy.log(prior)[:, None]  # log p(y) + log p(x|y), per label and image
    top = joint.max(axis=0)
    return float(-(top + numpy.log(numpy.exp(joint - top).sum(axis=0))).mean())


def _with_labels(images, labels) -> tuple:
    """The arrays a DataLoader cuts into batches: the images, and their labels when there are some."""
    return (images,) if labels is None else (images, numpy.asarray(labels))


def _labels_of(batch):
    """A batch's labels, or None for a batch of images alone."""
    return batch[1] if len(batch) == 2 else None

"""Autoencoders: learn a small code z from unlabelled images by training a network to rebuild x from z.

The lecture's first generative idea. An *encoder* squeezes an image x into a code z = f(x) of a few
numbers, a *decoder* maps it back to an image x̂ = g(z), and both are trained together to make x̂ close
to x. Nothing tells the network what z should mean; because the code is much smaller than the image,
the only way to rebuild x well is to keep in z what varies most between images (Hinton & Salakhutdinov
2006, "Reducing the dimensionality of data with neural networks"). A linear autoencoder trained on
squared error learns the same subspace as PCA (Baldi & Hornik 1989); the non-linear ones here do better
with the same number of code numbers, which the demo measures (see :mod:`scratchgen.models.baselines`).

Four autoencoders, each with an ``encode`` / ``decode`` pair:

* :class:`DenseAutoencoder`: 784 → 256 → code, mirrored back, ReLU in between;
* :class:`DeepAutoencoder`: the same with more hidden layers (784 → 512 → 256 → code);
* :class:`ConvAutoencoder`: strided convolutions down (28 → 14 → 7), a linear layer to the code, and
  transposed convolutions back up (7 → 14 → 28);
* :class:`DenoisingAutoencoder`: any of the above, fed a corrupted x (Gaussian, masking or salt-and-pepper
  noise) while trained to rebuild the clean x, so that it must learn what digits look like rather than
  copy pixels (Vincent, Larochelle, Bengio & Manzagol 2008, "Extracting and composing robust features
  with denoising autoencoders"). Run as a Markov chain, corrupt then denoise then sample, it becomes a
  generative model: see :mod:`scratchgen.models.gsn`.

Conventions. Images are (N, 1, 28, 28) float tensors with grey levels in [0, 1]. ``decode`` returns
*logits*: the reconstruction's grey levels are σ(logits), which :meth:`Autoencoder.reconstruct` gives.
Working with logits lets the loss use the stable ``binary_cross_entropy_with_logits`` (see
:func:`reconstruction_loss`). Built on :mod:`scratchgen.nn` (Linear, Conv2d, ConvTranspose2d, ReLU).
"""

from __future__ import annotations

import numpy

from scratchgen import backend, nn
from scratchgen.nn import functional as F
from scratchgen.tensor import Tensor

__all__ = [
    "Autoencoder", "DenseAutoencoder", "DeepAutoencoder", "ConvAutoencoder", "DenoisingAutoencoder",
    "corrupt", "reconstruction_loss", "NOISE_KINDS",
]

MNIST_SHAPE = (1, 28, 28)
NOISE_KINDS = ("gaussian", "masking", "salt_and_pepper")


class Autoencoder(nn.Module):
    """Base class: an ``encoder`` and a ``decoder`` module, and what every autoencoder does with them.

    Subclasses build ``self.encoder`` (images (N, *image_shape) → codes (N, code_size)) and
    ``self.decoder`` (codes → logits (N, *image_shape)) in ``__init__``; the methods below are shared.

    Attributes:
        code_size: numbers in the code z.
        image_shape: (C, H, W) of one image.
    """

    def __init__(self, code_size: int, image_shape=MNIST_SHAPE):
        super().__init__()
        if not isinstance(code_size, int) or code_size < 1:
            raise ValueError(f"{type(self).__name__}: code_size must be a positive integer, got {code_size!r}")
        self.code_size = code_size
        self.image_shape = tuple(image_shape)

    def encode(self, x: Tensor) -> Tensor:
        """The code of each image.

        Args:
            x: (N, C, H, W) images with grey levels in [0, 1].

        Returns:
            z: (N, code_size).
        """
        if x.shape[1:] != self.image_shape:
            raise ValueError(f"{type(self).__name__}.encode: images of shape {x.shape}; expected "
                             f"(N, {', '.join(map(str, self.image_shape))})")
        return self.encoder(x)

    def decode(self, z: Tensor) -> Tensor:
        """The logits of the image each code stands for (σ of them gives grey levels in [0, 1]).

        Args:
            z: (N, code_size).

        Returns:
            logits: (N, C, H, W).
        """
        if z.ndim != 2 or z.shape[1] != self.code_size:
            raise ValueError(f"{type(self).__name__}.decode: codes of shape {z.shape}; expected (N, {self.code_size})")
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of the reconstruction of ``x``: decode(encode(x)), (N, C, H, W)."""
        return self.decode(self.encode(x))

    def reconstruct(self, x: Tensor) -> Tensor:
        """The reconstruction's grey levels σ(decode(encode(x))), in [0, 1], (N, C, H, W)."""
        return self.forward(x).sigmoid()

    def extra_repr(self) -> str:
        return f"code_size={self.code_size}"


class DenseAutoencoder(Autoencoder):
    """Fully connected: image → hidden[0] → ... → code, mirrored back, ReLU after every hidden layer.

    The code itself is linear (no activation), so it can take any real value; the decoder's last layer
    gives logits.

    Args:
        code_size: numbers in the code (32 by default; 2 to draw the codes in the plane).
        hidden: widths of the encoder's hidden layers, from the image inwards; the decoder uses them
            in reverse. (256,) gives 784-256-32-256-784.
        image_shape: (C, H, W).
    """

    def __init__(self, code_size: int = 32, hidden=(256,), image_shape=MNIST_SHAPE):
        super().__init__(code_size, image_shape)
        self.hidden = tuple(hidden)
        pixels = int(numpy.prod(self.image_shape))
        widths = (pixels,) + self.hidden
        encoder = [nn.Flatten()]
        for width_in, width_out in zip(widths, widths[1:]):
            encoder += [nn.Linear(width_in, width_out), nn.ReLU()]
        encoder.append(nn.Linear(widths[-1], code_size))
        self.encoder = nn.Sequential(*encoder)

        decoder, widths = [], (code_size,) + self.hidden[::-1]
        for width_in, width_out in zip(widths, widths[1:]):
            decoder += [nn.Linear(width_in, width_out), nn.ReLU()]
        decoder += [nn.Linear(widths[-1], pixels), nn.Unflatten(self.image_shape)]
        self.decoder = nn.Sequential(*decoder)

    def extra_repr(self) -> str:
        widths = (int(numpy.prod(self.image_shape)),) + self.hidden + (self.code_size,)
        return "-".join(map(str, widths + widths[-2::-1]))


class DeepAutoencoder(DenseAutoencoder):
    """A deeper :class:`DenseAutoencoder`: 784-512-256-code by default, mirrored.

    Hinton & Salakhutdinov (2006) needed layer-wise RBM pre-training to train their 784-1000-500-250-30
    network; with ReLU units and Adam, plain backpropagation from a random start is enough. Depth pays
    only with enough data, though: on the 4,000 embedded training digits this network reconstructs
    worse than the one-hidden-layer :class:`DenseAutoencoder`, and a third hidden layer (128) worse still.
    """

    def __init__(self, code_size: int = 32, hidden=(512, 256), image_shape=MNIST_SHAPE):
        super().__init__(code_size, hidden, image_shape)


class ConvAutoencoder(Autoencoder):
    """Strided convolutions down, a linear code, transposed convolutions up.

    For MNIST with the defaults::

        encoder: conv(1→32, k3, s2, p1) ReLU      (N, 32, 14, 14)
                 conv(32→64, k3, s2, p1) ReLU     (N, 64, 7, 7)
                 flatten, linear 3136 → code      (N, code)
        decoder: linear code → 3136, ReLU, unflatten to (N, 64, 7, 7)
                 conv_transpose(64→32, k3, s2, p1, output_padding 1) ReLU   (N, 32, 14, 14)
                 conv_transpose(32→1,  k3, s2, p1, output_padding 1)        (N, 1, 28, 28) logits

    A stride-2 convolution halves the image (rounding up), so it replaces pooling; the transposed
    convolution with stride 2 doubles it, and ``output_padding=1`` adds the one row and column that
    (H - 1)·2 - 2 + 3 = 2H - 1 falls short of 2H.

    Args:
        code_size: numbers in the code.
        channels: channels after each stride-2 convolution; each halves the height and width, so the
            image's sides must be divisible by 2 ** len(channels).
        image_shape: (C, H, W).
    """

    def __init__(self, code_size: int = 32, channels=(32, 64), image_shape=MNIST_SHAPE):
        super().__init__(code_size, image_shape)
        self.channels = tuple(channels)
        in_channels, height, width = self.image_shape
        scale = 2 ** len(self.channels)
        if height % scale or width % scale:
            raise ValueError(f"ConvAutoencoder: images of {height}×{width} cannot be halved {len(self.channels)} "
                             f"times exactly; use sides divisible by {scale} or fewer channels")
        inner = (self.channels[-1], height // scale, width // scale)  # (64, 7, 7) for MNIST
        inner_size = int(numpy.prod(inner))

        encoder, previous = [], in_channels
        for c in self.channels:
            encoder += [nn.Conv2d(previous, c, 3, stride=2, padding=1), nn.ReLU()]
            previous = c
        encoder += [nn.Flatten(), nn.Linear(inner_size, code_size)]
        self.encoder = nn.Sequential(*encoder)

        decoder = [nn.Linear(code_size, inner_size), nn.ReLU(), nn.Unflatten(inner)]
        outs = self.channels[-2::-1] + (in_channels,)  # (32, 1): the encoder's channels in reverse
        for c_in, c_out in zip(self.channels[::-1], outs):
            decoder.append(nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1))
            decoder.append(nn.ReLU())
        decoder.pop()  # the last layer gives logits, without an activation
        self.decoder = nn.Sequential(*decoder)

    def extra_repr(self) -> str:
        return f"code_size={self.code_size}, channels={self.channels}"


# ---------------------------------------------------------------------------------------- denoising


def corrupt(x: Tensor, noise: str = "gaussian", level: float = 0.3) -> Tensor:
    """A corrupted copy of images x (grey levels in [0, 1]), drawn from scratchgen's seeded generator.

    * ``"gaussian"``: x + level·ε with ε ~ N(0, 1), clipped back to [0, 1];
    * ``"masking"``: each pixel set to 0 with probability ``level`` (Vincent et al. 2008's masking noise);
    * ``"salt_and_pepper"``: each pixel, with probability ``level``, replaced by a fair coin's 0 or 1 (the
      corruption of Bengio et al. 2013's binary MNIST chains, :mod:`scratchgen.models.gsn`). Unlike masking
      it can switch pixels on, so a chain built on it can reach every binary image.

    Args:
        x: (N, ...) images. noise: one of :data:`NOISE_KINDS`. level: the noise's standard deviation, or the
            share of pixels masked or replaced.

    Returns:
        A constant tensor of x's shape and dtype (no gradient flows into the noise).
    """
    if noise not in NOISE_KINDS:
        raise ValueError(f"corrupt: unknown noise {noise!r}; expected one of {NOISE_KINDS}")
    if level < 0 or (noise != "gaussian" and level > 1):
        raise ValueError(f"corrupt: level {level} is out of range for {noise} noise")
    data = x.data
    if noise == "gaussian":
        eps = backend.rng().standard_normal(data.shape, dtype=data.dtype)
        noisy = backend.xp.clip(data + eps * data.dtype.type(level), 0, 1)
    elif noise == "masking":
        noisy = data * (backend.rng().random(data.shape, dtype=data.dtype) >= level)
    else:
        replaced = backend.rng().random(data.shape, dtype=data.dtype) < level
        coins = (backend.rng().random(data.shape, dtype=data.dtype) < 0.5).astype(data.dtype)
        noisy = backend.xp.where(replaced, coins, data)
    return Tensor(noisy)


class DenoisingAutoencoder(Autoencoder):
    """An autoencoder that sees corrupted images in training and must rebuild the clean ones.

    Like dropout, the corruption happens only in training mode: ``model(x)`` corrupts x first when
    ``model.training`` is set, so the ordinary loop ``loss(model(x), x)`` trains it to denoise; in
    evaluation mode it is a plain autoencoder. Feed it noisy images yourself (from :meth:`corrupt`)
    to watch it clean them.

    Args:
        autoencoder: the network to train (a :class:`ConvAutoencoder` with a 32-number code by default).
        noise: "gaussian", "masking" or "salt_and_pepper" (see :func:`corrupt`).
        level: the Gaussian noise's standard deviation, or the share of pixels masked or replaced.
    """

    def __init__(self, autoencoder: Autoencoder | None = None, noise: str = "gaussian", level: float = 0.3):
        autoencoder = ConvAutoencoder() if autoencoder is None else autoencoder
        super().__init__(autoencoder.code_size, autoencoder.image_shape)
        if noise not in NOISE_KINDS:
            raise ValueError(f"DenoisingAutoencoder: unknown noise {noise!r}; expected one of {NOISE_KINDS}")
        self.autoencoder, self.noise, self.level = autoencoder, noise, level

    def encode(self, x: Tensor) -> Tensor:
        return self.autoencoder.encode(x)

    def decode(self, z: Tensor) -> Tensor:
        return self.autoencoder.decode(z)

    def corrupt(self, x: Tensor) -> Tensor:
        """x with this model's noise: see :func:`corrupt`."""
        return corrupt(x, self.noise, self.level)

    def forward(self, x: Tensor) -> Tensor:
        """Logits of the reconstruction of x, corrupted first in training mode."""
        return self.decode(self.encode(self.corrupt(x) if self.training else x))

    def extra_repr(self) -> str:
        return f"noise={self.noise!r}, level={self.level}"


# ---------------------------------------------------------------------------------------- the loss


def reconstruction_loss(logits: Tensor, target: Tensor, loss: str = "bce") -> Tensor:
    """How far the reconstruction is from the target, averaged over pixels and images.

    * ``"bce"``: the per-pixel binary cross-entropy -[x·log x̂ + (1-x)·log(1-x̂)] with x̂ = σ(logits),
      computed from the logits (stable for any logit). Grey levels in [0, 1] are allowed as targets;
      the loss is then smallest, not zero, at x̂ = x.
    * ``"mse"``: the mean squared error (x̂ - x)² of the grey levels x̂ = σ(logits).

    Args:
        logits: (N, C, H, W), a decoder's output. target: (N, C, H, W) grey levels in [0, 1].
        loss: "bce" or "mse".
    """
    if loss == "bce":
        return F.binary_cross_entropy_with_logits(logits, target)
    if loss == "mse":
        return F.mse_loss(logits.sigmoid(), target)
    raise ValueError(f"reconstruction_loss: loss must be 'bce' or 'mse', got {loss!r}")

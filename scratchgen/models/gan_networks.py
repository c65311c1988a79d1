"""The generators and discriminators that :class:`scratchgen.models.gan.GANTrainer` trains.

Two pairs, each unconditional or class-conditional:

* :class:`MLPGenerator` and :class:`MLPDiscriminator`: dense networks for the 2-D toy mixtures and for
  MNIST (ReLU in G, LeakyReLU(0.2) in D, as DCGAN advises);
* :class:`DCGANGenerator` and :class:`DCGANDiscriminator`: the small DCGAN for 28×28 images (Radford et
  al. 2016): transposed convolutions with batch norm in G, strided convolutions with LeakyReLU in D,
  initialised as that paper prescribes (:func:`dcgan_init_`).

**Conditional GANs** (Mirza and Osindero, "Conditional Generative Adversarial Nets", 2014) model p(x | y)
for a label y: built with ``classes=C``, G(z, y) reads the label as a one-hot row beside the noise, and
D(x, y) is a *projection discriminator* (Miyato and Koyama, "cGANs with Projection Discriminator",
2018). D's features h(x) give an unconditional logit ψ(h) = w·h + b, and the label adds the inner product
of its embedding with the features:

    D(x, y) = ψ(h(x)) + ⟨embed(y), h(x)⟩,

the form the paper derives from the log-ratio log p(y|x) q(x) / (q(y|x) p(x)) of a softmax model of the
labels. The embedding is a bias-free Linear layer on the one-hot row, so a label may also be a row of
probabilities: the blend of two digits, or the soft label of :class:`JointGenerator`, which draws a
label and an image together, modelling the joint p(x, y) as the lecture's generative models do.

Builds on :mod:`scratchgen.nn`; :mod:`scratchgen.models.gan` re-exports everything here.
"""

from __future__ import annotations

from scratchgen import nn
from scratchgen.nn import functional as F
from scratchgen.nn import init
from scratchgen.tensor import Tensor

__all__ = [
    "pack", "MLPGenerator", "MLPDiscriminator", "DCGANGenerator", "DCGANDiscriminator", "JointGenerator",
    "dcgan_init_",
]


def pack(x: Tensor, packing: int) -> Tensor:
    """Group p = ``packing`` consecutive samples into one: (N, C, ...) -> (N/p, p·C, ...) (PacGAN).

    Samples i·p ... i·p + p − 1 become pack i, their features (or channels) side by side.

    Raises:
        ValueError: N is not a multiple of p.
    """
    if packing == 1:
        return x
    if x.shape[0] % packing:
        raise ValueError(f"pack: a batch of {x.shape[0]} samples (shape {x.shape}) cannot be split into packs of "
                         f"{packing}; use a batch size that is a multiple of the packing")
    return x.reshape((x.shape[0] // packing, packing * x.shape[1]) + x.shape[2:])


class _ProjectionDiscriminator(nn.Module):
    """D(x) = head(features(x)), plus ⟨embed(y), features(x)⟩ for a conditional D: the forward of both
    discriminators, which define ``body`` (samples -> features h, (N / packing, F)) and ``head``."""

    def _conditioning(self, classes: int, features: int, packing: int) -> None:
        self.classes = classes
        if classes:
            if packing != 1:
                raise ValueError(f"{type(self).__name__}: a conditional discriminator judges (sample, label) pairs "
                                 f"one at a time; packing={packing} is for unconditional ones")
            self.embed = nn.Linear(classes, features, bias=False)  # row y of embed.weight.T is embed(y)

    def features(self, x: Tensor) -> Tensor:
        """h(x), D's last hidden layer: (N / packing, F)."""
        return self.body(pack(x, self.packing))

    def forward(self, x: Tensor, y=None) -> Tensor:
        """Logits (N / packing, 1); with ``classes``, y: (N,) integer labels or (N, classes) label rows."""
        h = self.features(x)
        labels = F.label_rows(y, self.classes, len(h), type(self).__name__, h.dtype)
        if labels is None:
            return self.head(h)
        return self.head(h) + (self.embed(labels) * h).sum(axis=1, keepdims=True)  # ψ(h) + <embed(y), h>


class MLPGenerator(nn.Module):
    """z (N, latent_dim) [and labels y] -> samples (N, *out_shape) through hidden ReLU layers.

    Args:
        latent_dim: dimension of the noise z.
        out_shape: shape of one sample: (2,) for the toy mixtures, (1, 28, 28) for MNIST.
        hidden: widths of the hidden layers.
        tanh: squash the output into (−1, 1), for images scaled to that range.
        classes: 0 for p(x); C > 0 for p(x | y), y in 0..C−1 entering as a one-hot row beside z.
    """

    def __init__(self, latent_dim: int = 2, out_shape=(2,), hidden=(128, 128, 128), tanh: bool = False,
                 classes: int = 0):
        super().__init__()
        self.latent_dim, self.out_shape, self.classes = latent_dim, tuple(out_shape), classes
        out_features = 1
        for size in self.out_shape:
            out_features *= size
        layers, width = [], latent_dim + classes
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, out_features))
        if tanh:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z, y=None):
        return self.net(F.with_labels(z, y, self.classes, "MLPGenerator")).reshape((z.shape[0],) + self.out_shape)


class MLPDiscriminator(_ProjectionDiscriminator):
    """Samples (N, *in_shape) [and labels y] -> logits (N/packing, 1) through hidden LeakyReLU layers.

    Args:
        in_shape: shape of one sample.
        hidden: widths of the hidden layers.
        negative_slope: the LeakyReLU slope for negative inputs.
        packing: samples judged together (PacGAN); the batch must be a multiple of it.
        classes: 0 for an unconditional D; C > 0 for a projection discriminator D(x, y).
    """

    def __init__(self, in_shape=(2,), hidden=(128, 128, 128), negative_slope: float = 0.2, packing: int = 1,
                 classes: int = 0):
        super().__init__()
        self.packing = packing
        width = packing
        for size in in_shape:
            width *= size
        layers = [nn.Flatten()]
        for size in hidden:
            layers += [nn.Linear(width, size), nn.LeakyReLU(negative_slope)]
            width = size
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)
        self._conditioning(classes, width, packing)


def dcgan_init_(module: nn.Module) -> nn.Module:
    """DCGAN's initialisation, in place (Radford et al. 2016, section 4): every linear and convolution
    weight from N(0, 0.02²), biases 0; batch norm's scale γ from N(1, 0.02²), its shift β 0.

    Far smaller weights than PyTorch's default (U(±1/√fan_in)); on MNIST, with this pair of networks,
    the generator reaches a given Inception Score in about two thirds of the iterations.
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            init.normal_(layer.weight, 0.0, 0.02)
            if layer.bias is not None:
                init.zeros_(layer.bias)
        elif isinstance(layer, (nn.BatchNorm1d, nn.BatchNorm2d)) and layer.weight is not None:
            init.normal_(layer.weight, 1.0, 0.02)
            init.zeros_(layer.bias)
    return module


class DCGANGenerator(nn.Module):
    """z (N, latent_dim) [and labels y] -> images (N, 1, 28, 28) in (−1, 1), the small DCGAN of the lecture:

    Linear to 128×7×7, BatchNorm, ReLU; ConvTranspose 128→64 (k4 s2 p1) to 14×14, BatchNorm, ReLU;
    ConvTranspose 64→1 (k4 s2 p1) to 28×28, tanh. Each transposed convolution doubles the image's side.
    With ``classes=C`` the first layer reads the one-hot label beside z.
    """

    def __init__(self, latent_dim: int = 100, channels: int = 1, classes: int = 0):
        super().__init__()
        self.latent_dim, self.classes = latent_dim, classes
        self.net = nn.Sequential(
            nn.Linear(latent_dim + classes, 128 * 7 * 7), nn.BatchNorm1d(128 * 7 * 7), nn.ReLU(),
            nn.Unflatten((128, 7, 7)),
            nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
            nn.ConvTranspose2d(64, channels, 4, stride=2, padding=1), nn.Tanh(),
        )
        dcgan_init_(self)

    def forward(self, z, y=None):
        return self.net(F.with_labels(z, y, self.classes, "DCGANGenerator"))


class DCGANDiscriminator(_ProjectionDiscriminator):
    """Images (N, 1, 28, 28) [and labels y] -> logits (N/packing, 1): Conv 1→32 (k4 s2 p1) to 14×14,
    LeakyReLU(0.2); Conv 32→64 (k4 s2 p1) to 7×7, LeakyReLU(0.2); features h of 64·7·7; Linear h → 1.

    With ``packing=p`` the p images of a pack are stacked as p channels of one input; with ``classes=C``
    the label's embedding (64·7·7 numbers, one per feature) is projected on h.
    """

    def __init__(self, channels: int = 1, packing: int = 1, negative_slope: float = 0.2, classes: int = 0):
        super().__init__()
        self.packing = packing
        self.body = nn.Sequential(
            nn.Conv2d(packing * channels, 32, 4, stride=2, padding=1), nn.LeakyReLU(negative_slope),
            nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.LeakyReLU(negative_slope), nn.Flatten(),
        )
        self.head = nn.Linear(64 * 7 * 7, 1)
        self._conditioning(classes, 64 * 7 * 7, packing)
        dcgan_init_(self)


class JointGenerator(nn.Module):
    """z -> a pair (image, label distribution): a generator of the joint p(x, y).

    A small head maps z to label logits and their softmax p(y | z); the image comes from a conditional
    generator given that soft label, G(z, p(y | z)), so image and label are drawn together and agree. The
    discriminator judges the pair (x, p(y | z)) as it judges a real pair (x, one-hot y), so the generator
    learns both the label prior (as the share of each label) and the images of each label; a drawn pair's
    label is the most probable one.

    Args:
        generator: a conditional generator (``classes`` > 0) taking (z, label rows).
        hidden: width of the label head's hidden layer.
    """

    def __init__(self, generator: nn.Module, hidden: int = 64):
        super().__init__()
        if not getattr(generator, "classes", 0):
            raise ValueError("JointGenerator: needs a conditional generator (built with classes=C), which reads a label")
        self.generator, self.latent_dim, self.classes = generator, generator.latent_dim, generator.classes
        self.label_head = nn.Sequential(nn.Linear(self.latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, self.classes))

    def forward(self, z):
        """(images, label probabilities (N, classes)), both differentiable in G's parameters."""
        labels = F.softmax(self.label_head(z), axis=1)
        return self.generator(z, labels), labels

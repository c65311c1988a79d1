"""A small U-Net ε_θ(x_t, t) for images: the network of Ho et al.'s diffusion models, cut to 28×28 digits.

The image goes down through a few resolutions and back up (Ronneberger et al. 2015); on the way up every
block also reads, by channel concatenation, the activations of the same resolution on the way down, so
fine detail need not squeeze through the coarsest level. Ho, Jain & Abbeel (2020, appendix B) build it
from the wide ResNet's residual block (Zagoruyko & Komodakis 2016) with group norm in place of batch norm,
and tell each block the step t by adding a projection of t's sinusoidal code to every channel:

    h = conv₃ₓ₃(SiLU(GroupNorm(x)))
    h = h + Linear(SiLU(emb))               one number per channel, the same at every pixel
    h = conv₃ₓ₃(SiLU(GroupNorm(h)))
    out = h + skip(x)                       skip: a 1×1 conv when the channels change, else x itself

Here, for 28×28 with ``channel_mults=(1, 2, 2)``: 28 → 14 → 7 by stride-2 convolutions and back by
nearest-neighbour upsampling and a convolution (``Upsample`` then ``Conv2d``: no checkerboard, unlike a
transposed convolution). Ho et al. also have self-attention at 16×16 and dropout; this one has neither,
to stay small enough for a CPU. Images of any size divisible by 2^(levels − 1) work: 8×8 in the tests.

Class conditioning (``classes`` > 0) adds a learned embedding of the label y to the step's embedding, as
in Dhariwal & Nichol (2021). One extra label, index ``classes``, means "no label": classifier-free
guidance (Ho & Salimans 2022) trains one network with the label dropped to it some of the time, and
reads the unconditional ε_θ(x_t, t, ∅) from the same weights.

Builds on :mod:`scratchgen.nn` (Conv2d, GroupNorm, SiLU, Upsample, Linear) and the step code
:func:`scratchgen.models.diffusion.sinusoidal_embedding`; called by :class:`~scratchgen.models.diffusion.Diffusion`
as ``net(x_t, t)``.
"""

from __future__ import annotations

from scratchgen import backend, nn
from scratchgen.models.diffusion import sinusoidal_embedding
from scratchgen.nn import functional as F
from scratchgen.nn._checks import positive_int, positive_ints
from scratchgen.ops import concatenate
from scratchgen.tensor import Tensor

__all__ = ["ResidualBlock", "UNet"]


class ResidualBlock(nn.Module):
    """The residual block above: (N, in_channels, H, W) and the step embedding (N, embedding_dim) ->
    (N, out_channels, H, W).

    Args:
        in_channels, out_channels: channels in and out; both must be divisible by ``groups``.
        embedding_dim: width of the step (and label) embedding the block reads.
        groups: the group norms' number of groups.
    """

    def __init__(self, in_channels: int, out_channels: int, embedding_dim: int, groups: int = 8):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.embedding = nn.Linear(embedding_dim, out_channels)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.step_shift(embedding)
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)

    def step_shift(self, embedding: Tensor) -> Tensor:
        """Linear(SiLU(embedding)), one number per sample and channel, as (N, out_channels, 1, 1).

        It is computed as W·SiLU(embedding)ᵀ + b, a (C, N) array, and viewed transposed, so that in memory
        the batch runs fastest, as in a convolution's output (see :mod:`scratchgen.ops.conv_shifted`). The
        layer's own (N, C) product, broadcast over an activation laid out the other way, would make the
        sum, and every op after it up to the next convolution, run in the other order: 6× slower per add,
        measured on 256 × 16 × 28 × 28.
        """
        layer = self.embedding
        shift = layer.weight @ F.silu(embedding).transpose(1, 0) + layer.bias.reshape(-1, 1)  # (C, N)
        return shift.transpose(1, 0).reshape(len(embedding), -1, 1, 1)


class UNet(nn.Module):
    """ε_θ(x_t, t), or ε_θ(x_t, t, y) with ``classes``: images (N, in_channels, H, W) -> the predicted noise.

    Args:
        in_channels: the images' channels (1 for digits).
        base_channels: channels at full resolution; level i has base_channels·channel_mults[i].
        channel_mults: one multiplier per resolution, halving it between levels: (1, 2, 2) is 28, 14, 7.
        blocks_per_level: residual blocks per level on the way down (one more on the way up, for the
            skip from the downsampling), 1 or 2 in practice.
        groups: the group norms' number of groups; it must divide every level's channels.
        classes: 0 for an unconditional network; else the number of labels, with one more, ``classes``
            itself, for "no label" (:attr:`null_label`).

    Attributes:
        embedding_dim: width of the step embedding, 4·base_channels as in Ho et al.
    """

    def __init__(self, in_channels: int = 1, base_channels: int = 16, channel_mults=(1, 2, 2),
                 blocks_per_level: int = 2, groups: int = 8, classes: int = 0):
        super().__init__()
        self.in_channels = positive_int(self, "in_channels", in_channels)
        self.base_channels = positive_int(self, "base_channels", base_channels)
        self.channel_mults = positive_ints(self, "channel_mults", channel_mults)
        self.blocks_per_level = positive_int(self, "blocks_per_level", blocks_per_level)
        self.groups = positive_int(self, "groups", groups)
        self.classes = 0 if classes == 0 else positive_int(self, "classes", classes)
        widths = [base_channels * m for m in self.channel_mults]
        if any(w % groups for w in widths):
            raise ValueError(f"UNet: groups = {groups} must divide every level's channels, got {widths}")
        self.embedding_dim = dim = 4 * base_channels
        self.time_embedding = nn.Sequential(nn.Linear(base_channels, dim), nn.SiLU(), nn.Linear(dim, dim))
        # A Linear map of a one-hot row is a lookup table: row y of its weight is label y's embedding.
        self.label_embedding = nn.Linear(self.classes + 1, dim, bias=False) if self.classes else None

        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        skips, channels = [base_channels], base_channels  # the channels of every activation kept for the way up
        for level, width in enumerate(widths):
            for _ in range(blocks_per_level):
                self.down.append(ResidualBlock(channels, width, dim, groups))
                channels = width
                skips.append(channels)
            if level < len(widths) - 1:
                self.downsample.append(nn.Conv2d(channels, channels, 3, stride=2, padding=1))
                skips.append(channels)
        self.middle = nn.ModuleList([ResidualBlock(channels, channels, dim, groups),
                                     ResidualBlock(channels, channels, dim, groups)])
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for level, width in reversed(list(enumerate(widths))):
            for _ in range(blocks_per_level + 1):
                self.up.append(ResidualBlock(channels + skips.pop(), width, dim, groups))
                channels = width
            if level > 0:
                self.upsample.append(nn.Sequential(nn.Upsample(2), nn.Conv2d(channels, channels, 3, padding=1)))
        self.norm_out = nn.GroupNorm(groups, channels)
        self.conv_out = nn.Conv2d(channels, in_channels, 3, padding=1)

    @property
    def null_label(self) -> int:
        """The label index that means "no label" (classifier-free guidance's ∅): ``classes``."""
        return self.classes

    def embed(self, t, y, dtype) -> Tensor:
        """The embedding every block reads, (N, embedding_dim): MLP(sinusoidal code of t), plus the label's.

        Args:
            t: (N,) integer steps. y: (N,) integer labels in 0..classes (``classes`` = no label), or None:
                no label for every row of a conditional network, and the only choice for an unconditional one.
        """
        code = Tensor(sinusoidal_embedding(t, self.base_channels, dtype=dtype))
        embedding = self.time_embedding(code)
        if not self.classes:
            if y is not None:
                raise ValueError("UNet: an unconditional network (classes=0) was given labels y")
            return embedding
        if y is None:
            y = backend.xp.full(len(code), self.null_label)
        return embedding + self.label_embedding(F.one_hot(y, self.classes + 1, dtype=dtype))

    def forward(self, x: Tensor, t, y=None) -> Tensor:
        """x: (N, in_channels, H, W) noisy images, H and W divisible by 2^(levels − 1); t: (N,) integer
        steps; y: (N,) labels or None (see :meth:`embed`). Returns ε_θ, (N, in_channels, H, W)."""
        # Checked here rather than by check_input, whose message would hold the whole network's repr.
        if not isinstance(x, Tensor):
            raise TypeError(f"UNet: expected a Tensor of images, got {type(x).__name__}")
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"UNet: expected images (N, {self.in_channels}, H, W), got shape {x.shape}")
        factor = 2 ** (len(self.channel_mults) - 1)
        if x.shape[2] % factor or x.shape[3] % factor:
            raise ValueError(f"UNet: the image size {x.shape[2:]} must be divisible by {factor}, to halve it "
                             f"{len(self.channel_mults) - 1} times and come back to the same size")
        embedding = self.embed(t, y, x.dtype)
        h = self.conv_in(x)
        skips, blocks = [h], iter(self.down)
        for level in range(len(self.channel_mults)):
            for _ in range(self.blocks_per_level):
                h = next(blocks)(h, embedding)
                skips.append(h)
            if level < len(self.downsample):
                h = self.downsample[level](h)
                skips.append(h)
        for block in self.middle:
            h = block(h, embedding)
        blocks = iter(self.up)
        for level in range(len(self.channel_mults)):
            for _ in range(self.blocks_per_level + 1):
                h = next(blocks)(concatenate([h, skips.pop()], axis=1), embedding)
            if level < len(self.upsample):
                h = self.upsample[level](h)
        return self.conv_out(F.silu(self.norm_out(h)))

    def extra_repr(self) -> str:
        return (f"in_channels={self.in_channels}, base_channels={self.base_channels}, channel_mults={self.channel_mults}, "
                f"blocks_per_level={self.blocks_per_level}, groups={self.groups}, classes={self.classes}")

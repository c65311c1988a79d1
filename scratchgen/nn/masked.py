"""Masked layers: a Linear or Conv2d some of whose weights are held at zero, for autoregressive models.

An autoregressive model factorises p(x) = Π_i p(x_i | x_<i) and computes every conditional in one pass of
one network. That is only honest if output i cannot see inputs i, i+1, ...; the masked layers enforce it
by multiplying the weight by a fixed 0/1 mask in every forward,

    y = x · (W ⊙ M)ᵀ + b,

so a masked weight has no effect on the output *and* receives exactly zero gradient (the product rule
gives dL/dW = M ⊙ (dL/d(W ⊙ M))). The weight itself keeps its values where the mask is zero; they are
simply never used. The mask is a buffer: saved in ``state_dict``, never trained.

* :class:`MaskedLinear` takes any mask (MADE builds its masks from unit degrees, Germain et al. 2015,
  "MADE: Masked Autoencoder for Distribution Estimation"; a strictly lower-triangular mask makes a fully
  visible sigmoid belief net).
* :class:`MaskedConv2d` builds the spatial masks of PixelCNN (van den Oord et al. 2016, "Pixel Recurrent
  Neural Networks", section 3.4) for raster order, left to right and top to bottom. Type "A" sees only
  the pixels strictly before the centre (the first layer, which must not see the pixel it predicts);
  type "B" sees the centre too (later layers, whose centre holds features of pixels before it)::

        type A (5×5)        type B (5×5)
        1 1 1 1 1           1 1 1 1 1
        1 1 1 1 1           1 1 1 1 1
        1 1 0 0 0           1 1 1 0 0
        0 0 0 0 0           0 0 0 0 0
        0 0 0 0 0           0 0 0 0 0

  The mask is the same for every pair of channels, which is right for one-channel (binary or grey)
  images; colour images would also split the channels into R, G and B groups (the paper's figure 4).
  Such a mask keeps or drops whole kernel positions ("taps"), so the layer does not multiply at all:
  it passes the taps it keeps to the convolution, which computes only those (5 of a 3×3 kernel's 9 for
  type B) and gives the others zero gradient, the same numbers as W ⊙ M for less work
  (:func:`mask_taps`). A mask that differs between channels is multiplied in, as MaskedLinear's is.
"""

from __future__ import annotations

from scratchgen import backend
from scratchgen.nn import functional as F
from scratchgen.nn._checks import int_pair
from scratchgen.nn.conv import Conv2d, _call
from scratchgen.nn.layers import Linear

__all__ = ["MaskedLinear", "MaskedConv2d", "conv_mask", "mask_taps"]


class MaskedLinear(Linear):
    """y = x·(W ⊙ M)ᵀ + b: a Linear layer whose weight is multiplied by a 0/1 mask in every forward.

    Args:
        in_features, out_features, bias: as :class:`~scratchgen.nn.Linear`.
        mask: (out_features, in_features) of zeros and ones; all ones (a plain Linear) if None. Change it
            later with :meth:`set_mask` (MADE draws new masks during training).

    Attributes:
        mask: the mask, a constant Tensor of the weight's dtype, kept in ``state_dict`` as a buffer.
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, mask=None):
        super().__init__(in_features, out_features, bias)
        self.set_mask(backend.xp.ones((out_features, in_features)) if mask is None else mask)

    def set_mask(self, mask) -> None:
        """Use ``mask`` (an array, list or Tensor of shape (out_features, in_features), zeros and ones)
        from the next forward on.

        Raises:
            ValueError: the mask has the wrong shape or holds values other than 0 and 1.
        """
        mask = backend.asarray(getattr(mask, "data", mask), dtype=self.weight.dtype)
        if mask.shape != self.weight.shape:
            raise ValueError(f"MaskedLinear({self.in_features}, {self.out_features}): mask of shape "
                             f"{tuple(mask.shape)}, expected the weight's shape {self.weight.shape}")
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise ValueError(f"MaskedLinear({self.in_features}, {self.out_features}): the mask must hold only 0 and 1")
        self.register_buffer("mask", mask)

    def forward(self, x):
        self._check_features(x)
        return F.linear(x, self.weight * self.mask, self.bias)


def conv_mask(mask_type: str, kernel_size, out_channels: int = 1, in_channels: int = 1):
    """The PixelCNN mask (out_channels, in_channels, kh, kw) for raster order, as a 0/1 float32 array.

    Rows above the centre are 1; in the centre row the taps left of the centre are 1, the centre is 1 for
    type "B" and 0 for type "A", and everything to its right is 0; rows below are 0.

    Raises:
        ValueError: ``mask_type`` is not "A" or "B", or the kernel has an even side (no centre).
    """
    if mask_type not in ("A", "B"):
        raise ValueError(f"conv_mask: mask_type must be 'A' (centre excluded) or 'B' (centre included), "
                         f"got {mask_type!r}")
    kh, kw = kernel_size
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"conv_mask: the kernel {kh}×{kw} needs odd sides so that it has a centre pixel")
    mask = backend.xp.zeros((out_channels, in_channels, kh, kw), dtype=backend.DEFAULT_DTYPE)
    mask[:, :, : kh // 2, :] = 1  # every row above the centre
    mask[:, :, kh // 2, : kw // 2 + (mask_type == "B")] = 1  # left of the centre, and the centre for B
    return mask


def mask_taps(mask):
    """The kernel positions (i, j) a 0/1 mask (O, C, kh, kw) keeps, if it keeps or drops each position for
    every pair of channels alike; None if it does not (then only multiplying by it will do)."""
    flat = backend.to_numpy(getattr(mask, "data", mask)).reshape(-1, mask.shape[2] * mask.shape[3])
    kept, dropped = (flat == 1).all(axis=0), (flat == 0).all(axis=0)
    if not (kept | dropped).all() or not kept.any():
        return None
    return [divmod(int(position), mask.shape[3]) for position in kept.nonzero()[0]]


class MaskedConv2d(Conv2d):
    """A Conv2d whose kernel sees only pixels before the centre in raster order ("A") or up to it ("B").

    The padding defaults to half the kernel, so the output has the input's height and width and output
    pixel (r, c) is the prediction for input pixel (r, c).

    Args:
        in_channels, out_channels, kernel_size: as :class:`~scratchgen.nn.Conv2d` (odd kernel sides).
        mask_type: "A" for the first layer (centre excluded), "B" for the layers after it.
        padding: None for "same" padding (kernel_size // 2), else as Conv2d.
        bias, stride, dilation: as Conv2d.

    Attributes:
        mask: (out_channels, in_channels, kh, kw) buffer, see :func:`conv_mask`.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, mask_type: str = "B", padding=None,
                 bias: bool = True, stride=1, dilation=1):
        kh, kw = int_pair(self, "kernel_size", kernel_size, minimum=1)
        dh, dw = int_pair(self, "dilation", dilation, minimum=1)
        if padding is None:
            padding = (dh * (kh // 2), dw * (kw // 2))
        super().__init__(in_channels, out_channels, (kh, kw), stride=stride, padding=padding, dilation=dilation,
                         bias=bias)
        self.mask_type = mask_type
        try:
            mask = conv_mask(mask_type, self.kernel_size, self.out_channels, self.in_channels)
        except ValueError as err:
            raise ValueError(f"{type(self).__name__}: {err}") from err
        self.register_buffer("mask", mask)

    def forward(self, x):
        self._check_images(x)
        taps = self._taps()
        # A mask that is constant over channels, as every PixelCNN mask is, names the taps in use: the
        # convolution skips the others, and there is nothing to multiply. Any other mask multiplies.
        weight = self.weight if taps is not None else self.weight * self.mask
        return _call(self, F.conv2d, x, weight, self.bias, stride=self.stride, padding=self.padding,
                     dilation=self.dilation, taps=taps)

    def _taps(self):
        """:func:`mask_taps` of the mask, found once per version of it: reading the mask to the host on
        every forward would wait for the GPU each time (sampling runs the layer H·W times)."""
        key = (id(self.mask), self.mask._version)
        if vars(self).get("_taps_of") is None or vars(self)["_taps_of"][0] != key:
            vars(self)["_taps_of"] = (key, mask_taps(self.mask))
        return vars(self)["_taps_of"][1]

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mask_type={self.mask_type!r}"

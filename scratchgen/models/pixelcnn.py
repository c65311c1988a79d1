"""PixelCNN for binary images: masked convolutions give every pixel's conditional in one pass.

van den Oord, Kalchbrenner and Kavukcuoglu (2016), "Pixel Recurrent Neural Networks", section 3.4 and
table 4 (binarised MNIST).

An image of H×W binary pixels is modelled in raster order (left to right, top to bottom),

    p(x) = Π_{r, c} p(x_rc | the pixels above row r, and those left of c in row r),

each conditional a Bernoulli whose logit is output pixel (r, c) of a convolutional network. The network
must not let output (r, c) see input (r, c) or anything after it, and convolutions are masked to make
sure (:class:`~scratchgen.nn.MaskedConv2d`):

* a 7×7 type-"A" masked conv first: it sees the pixels strictly before the centre;
* residual blocks h ← h + conv_B(ReLU(h)) of 3×3 type-"B" masked convs: the centre is allowed now,
  since after the first layer the features at (r, c) summarise only pixels before (r, c), and so is the
  identity path of the residual connection, for the same reason (the paper's block also narrows and
  widens the channels with 1×1 convs around the 3×3 one; at 32 channels we leave that out);
* ReLU, 1×1 conv, ReLU, 1×1 conv to one logit per pixel: 1×1 convs mix channels of one pixel only.

Training is maximum likelihood of all pixels at once (teacher forcing: the true pixels are the input).
Sampling cannot be parallel: pixel (r, c) needs the pixels drawn before it, so an image takes H·W passes.
Each pass needs only the rows the last output row can see, the receptive field above it, so we run the
network on that band of rows instead of the whole image (:meth:`PixelCNN.sample`), which gives the same
logits for a fraction of the work.
"""

from __future__ import annotations

from scratchgen import backend, nn
from scratchgen.autograd import no_grad
from scratchgen.nn import functional as F
from scratchgen.ops.elementwise import logistic
from scratchgen.tensor import Tensor

__all__ = ["PixelCNN"]


class PixelCNN(nn.Module):
    """Bernoulli logits (N, 1, H, W) for binary images (N, 1, H, W), each from the pixels before it.

    Args:
        channels: feature maps in every hidden layer (32 for MNIST here).
        layers: residual blocks of 3×3 type-B masked convolutions (5 here).
        first_kernel: side of the first, type-A masked convolution (7 in the paper).
        kernel_size: side of the type-B convolutions.
    """

    def __init__(self, channels: int = 32, layers: int = 5, first_kernel: int = 7, kernel_size: int = 3):
        super().__init__()
        self.channels, self.num_layers = channels, layers
        self.input_conv = nn.MaskedConv2d(1, channels, first_kernel, "A")
        self.blocks = nn.ModuleList(nn.MaskedConv2d(channels, channels, kernel_size, "B") for _ in range(layers))
        self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(channels, channels, 1), nn.ReLU(), nn.Conv2d(channels, 1, 1))
        # How many rows above its own an output pixel sees: each masked conv reaches kernel // 2 rows up.
        self.rows_above = first_kernel // 2 + layers * (kernel_size // 2)

    def forward(self, x: Tensor) -> Tensor:
        """Logits (N, 1, H, W) of p(x_rc = 1 | pixels before (r, c)) for images x (N, 1, H, W) of zeros and ones."""
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"PixelCNN: expected binary images (N, 1, H, W), got shape {x.shape}")
        h = self.input_conv(x)
        for block in self.blocks:
            h = h + block(F.relu(h))
        return self.head(h)

    def log_prob(self, x: Tensor) -> Tensor:
        """The exact log-likelihood log p(x) in nats, (N,): the sum of the pixels' Bernoulli log-probabilities."""
        return -F.binary_cross_entropy_with_logits(self(x), x, reduction="none").sum(axis=(1, 2, 3))

    def sample(self, n: int = 1, size=(28, 28), x=None, start_row: int = 0) -> Tensor:
        """Draw images pixel by pixel in raster order, each from its conditional given those before it.

        Args:
            n: number of images (ignored when ``x`` is given).
            size: (H, W) of the images.
            x: (N, 1, H, W) images whose rows above ``start_row`` are kept (a completion); the rest is drawn.
            start_row: the first row to draw.

        Returns:
            (N, 1, H, W) binary images, not requiring grad.
        """
        xp = backend.xp
        dtype = self.input_conv.weight.dtype
        if x is None:
            images = xp.zeros((n, 1) + tuple(size), dtype=dtype)
        else:
            images = backend.asarray(getattr(x, "data", x), dtype=dtype).copy()
        height, width = images.shape[2:]
        with no_grad():
            for r in range(start_row, height):
                # Row r's logits depend on rows r - rows_above .. r only; zeros padded above this band
                # reach no further down than the rows we discard, so the band's last row is exact.
                top = max(0, r - self.rows_above)
                for c in range(width):
                    logits = self(Tensor(images[:, :, top:r + 1]))  # (N, 1, r + 1 - top, W)
                    p = logistic(logits.data[:, 0, -1, c])
                    images[:, 0, r, c] = backend.rng().random(p.shape, dtype=dtype) < p
        return Tensor(images)

    def complete(self, x, given_rows: int) -> Tensor:
        """Keep the first ``given_rows`` rows of the images x (N, 1, H, W) and sample the rest."""
        return self.sample(x=x, start_row=given_rows)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, layers={self.num_layers}, sees {self.rows_above} rows above"


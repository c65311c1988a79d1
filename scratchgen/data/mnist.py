"""MNIST-style image datasets, and the three ways models here want the pixels.

:func:`load_mnist` returns images as uint8 arrays ``(N, 28, 28)`` in 0..255 and labels as int64
``(N,)`` (PyTorch's label type, which :func:`scratchgen.nn.functional.cross_entropy` accepts), from

* ``"embedded"`` (the default): 5,000 MNIST digits shipped inside the package (``mnist_5k.npz``,
  see ``README.md`` beside it), 400 per class for training and 100 per class for testing. Every demo
  and test runs on it offline;
* ``"mnist"``: the full 60,000 + 10,000 digits of LeCun, Cortes and Burges;
* ``"fashion_mnist"``: Zalando's 60,000 + 10,000 clothing images (Xiao, Rasul and Vollgraf 2017),
  the same format with harder images.

The two full datasets are downloaded once (see :mod:`scratchgen.data.download`) and parsed from the
IDX files by :mod:`scratchgen.data.idx`.

Models read pixels in one of three forms: :func:`to_float` (intensities in [0, 1], for Gaussian or
continuous Bernoulli decoders and GANs), :func:`binarize` (fixed threshold ``x > 127``, the
"binarised MNIST" of the autoencoder and MADE issues) and :func:`binarize_stochastic` (each pixel
drawn as a Bernoulli with its intensity as probability). :func:`bernoulli_pixels` picks between them
for the demos' ``--binarize threshold | dynamic``.

Which binarisation the papers use. Salakhutdinov & Murray (2008) drew each MNIST pixel once as a Bernoulli
of its intensity and kept that draw; Larochelle & Murray (2011, NADE) published the draw, and it became
"the binarised MNIST" of MADE (Germain et al. 2015) and PixelRNN/PixelCNN (van den Oord et al. 2016).
Burda et al. (2016, IWAE) instead drew the training images afresh every time they were used ("dynamic"
binarisation), as much VAE work since; a fresh draw acts as more training data (and against
overfitting), so test NLLs under the two settings are not directly comparable.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy

from scratchgen import backend
from scratchgen.data.download import ChecksumError, fetch, sha256_of
from scratchgen.data.idx import read_idx
from scratchgen.tensor import Tensor

__all__ = ["load_mnist", "to_float", "binarize", "binarize_stochastic", "bernoulli_pixels", "scored_pixels",
           "BINARIZATIONS",
           "TEST_DRAW_SEED", "DATASET_NAMES",
           "FASHION_MNIST_CLASSES", "EMBEDDED_PATH", "EMBEDDED_SHA256"]

DATASET_NAMES = ("embedded", "mnist", "fashion_mnist")

EMBEDDED_PATH = Path(__file__).with_name("mnist_5k.npz")
EMBEDDED_SHA256 = "bbe2f0f7ba51aaf766c97e62b2316a027e91502a842c8abdbe45fde632c8f756"

FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
"""Fashion-MNIST's label names, by label (MNIST's labels are the digits themselves)."""

_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def load_mnist(name: str = "embedded", split: str = "train", cache_dir: str | os.PathLike | None = None,
               download: bool = True, base_url: str | None = None):
    """Load an MNIST-style dataset as host NumPy arrays.

    Args:
        name: "embedded" (the shipped 5,000-digit subset, no network), "mnist" or "fashion_mnist"
            (downloaded on first use).
        split: "train" or "test".
        cache_dir: where downloads are kept; by default ``$SCRATCHGEN_DATA_DIR`` or
            ``~/.cache/scratchgen`` (see :mod:`scratchgen.data.download`). Unused for "embedded".
        download: if False, a full dataset must already be in the cache (or placed there by hand).
        base_url: download from this server directory instead of the standard mirror.

    Returns:
        ``(images, labels)``: images ``(N, 28, 28)`` uint8 in 0..255 and labels ``(N,)`` int64 in
        0..9, with N = 4,000 / 1,000 (embedded), 60,000 / 10,000 (full) for train / test.

    Raises:
        ValueError: unknown ``name`` or ``split``, or files whose arrays do not fit together.
        scratchgen.data.DownloadError: a download failed, or the files are missing offline (the
            message says which files to place where).
        scratchgen.data.ChecksumError: a file is not the published one (the embedded one included).
    """
    if name not in DATASET_NAMES:
        raise ValueError(f"load_mnist: unknown dataset {name!r}; expected one of {DATASET_NAMES}")
    if split not in _SPLIT_FILES:
        raise ValueError(f"load_mnist: unknown split {split!r}; expected 'train' or 'test'")

    if name == "embedded":
        _check_embedded(EMBEDDED_PATH)
        with numpy.load(EMBEDDED_PATH) as archive:
            images, labels = archive[f"x_{split}"], archive[f"y_{split}"]
    else:
        image_file, label_file = _SPLIT_FILES[split]
        paths = fetch(name, [image_file, label_file], cache_dir=cache_dir, base_url=base_url, download=download)
        images, labels = read_idx(paths[image_file]), read_idx(paths[label_file])

    if images.ndim != 3 or images.dtype != numpy.uint8 or labels.shape != images.shape[:1]:
        raise ValueError(f"load_mnist: {name}/{split} has images {images.shape} {images.dtype} and labels "
                         f"{labels.shape}; expected (N, H, W) uint8 and (N,)")
    return images, labels.astype(numpy.int64)


def _check_embedded(path: Path) -> None:
    """Refuse an embedded subset that is not the shipped file: a damaged or replaced file would otherwise
    train every demo on other data, silently. The hash is computed once per file per process."""
    stat = path.stat()
    actual = _sha256_cached(str(path), stat.st_size, stat.st_mtime_ns)
    if actual != EMBEDDED_SHA256:
        raise ChecksumError(f"load_mnist: the embedded subset {path} has SHA-256 {actual}, expected "
                            f"{EMBEDDED_SHA256}; the file is damaged or was replaced: restore it from the "
                            f"scratchgen repository or reinstall scratchgen")


@functools.lru_cache(maxsize=None)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    """The file's SHA-256; its size and time are part of the key, so a file replaced meanwhile is hashed again."""
    return sha256_of(path)


# ------------------------------------------------------------------------------------- pixel forms


def to_float(images):
    """Pixel intensities as float32 in [0, 1]: ``images / 255``.

    Args:
        images: uint8 array (NumPy or CuPy) or Tensor of any shape.

    Returns:
        The same kind of object (array or Tensor, on the same device), float32.
    """
    data = _raw(images)
    return _like(images, data.astype(numpy.float32) / numpy.float32(255))


def binarize(images, threshold: int = 127):
    """Fixed binarisation: 1.0 where ``images > threshold``, else 0.0, as float32.

    The threshold 127 is this library's "binarised MNIST" (about 13% of MNIST pixels are on).

    Args:
        images: uint8 array (NumPy or CuPy) or Tensor, values 0..255 (or floats in [0, 1] with a
            threshold below 1).
        threshold: pixels strictly above it become 1.

    Returns:
        The same kind of object, float32 of zeros and ones.
    """
    data = _raw(images)
    if data.dtype.kind == "f" and threshold >= 1:
        raise ValueError(f"binarize: threshold {threshold} is on the 0..255 scale but the images are {data.dtype}, "
                         f"presumably in [0, 1]; pass the uint8 images, or a threshold such as 0.5")
    return _like(images, (data > threshold).astype(numpy.float32))


def binarize_stochastic(images, rng=None):
    """Dynamic binarisation: each pixel is 1 with probability equal to its intensity.

    Calling it afresh on every minibatch gives the model a new binary image each epoch, a regulariser
    that the fixed threshold does not have. The expected value of the output equals the input.

    Args:
        images: float array or Tensor with values in [0, 1] (e.g. from :func:`to_float`).
        rng: None to draw from scratchgen's generator on the active backend (reproducible with
            :func:`scratchgen.manual_seed`; the result lives on the active backend); or an int seed or
            ``numpy.random.Generator`` to draw on the host (the result is a NumPy array or host Tensor).

    Returns:
        The same kind of object as ``images``, float32 of zeros and ones.
    """
    data = _raw(images)
    if data.dtype.kind != "f":
        raise TypeError(f"binarize_stochastic: expected intensities as floats in [0, 1], got dtype {data.dtype}; "
                        f"convert with to_float first")
    if rng is None:
        generator, data = backend.rng(), backend.asarray(data)
    else:
        generator, data = numpy.random.default_rng(rng), backend.to_numpy(data)
    uniform = generator.random(data.shape, dtype=numpy.float32)
    return _like(images, (uniform < data).astype(numpy.float32))


BINARIZATIONS = ("threshold", "dynamic")
TEST_DRAW_SEED = 0
"""The seed of the one fixed draw of the test images under dynamic binarisation, the same in every run
(whatever its ``--seed``), so that all runs are tested on the same binary images."""


def bernoulli_pixels(images, split: str, binarization: str = "threshold"):
    """The pixels a model of binary images trains or is tested on, for ``--binarize threshold | dynamic``.

    * "threshold": :func:`binarize` at 127, for either split (this library's "binarised MNIST");
    * "dynamic", training split: the intensities (:func:`to_float`), from which the training loop draws
      each batch afresh with :func:`binarize_stochastic` (from scratchgen's seeded generator, so a
      resumed run repeats its draws), a new binary image every epoch (Burda et al. 2016);
    * "dynamic", test split: one draw x ~ Bernoulli(intensity) with seed :data:`TEST_DRAW_SEED`, kept
      fixed like Salakhutdinov & Murray's (2008) binarised test set, so test NLLs are comparable between
      epochs and runs.

    Args:
        images: uint8 (N, ...) in 0..255, as :func:`load_mnist` gives them.
        split: "train" or "test".
        binarization: "threshold" or "dynamic".

    Returns:
        float32 host array of images' shape: zeros and ones, or intensities in [0, 1] for dynamic training.
    """
    if binarization not in BINARIZATIONS or split not in _SPLIT_FILES:
        raise ValueError(f"bernoulli_pixels: binarization {binarization!r} of split {split!r}; expected one of "
                         f"{BINARIZATIONS} and 'train' or 'test'")
    if binarization == "threshold":
        return binarize(images)
    intensities = to_float(images)
    return intensities if split == "train" else scored_pixels(intensities, binarization)


def scored_pixels(pixels, binarization: str = "threshold"):
    """The binary pixels a likelihood is measured on, from :func:`bernoulli_pixels`' output: under
    "dynamic", one draw x ~ Bernoulli(intensity) with seed :data:`TEST_DRAW_SEED` (the test split's own,
    and the training digits' when their NLL is measured the same way); else the pixels, already binary."""
    return binarize_stochastic(pixels, rng=TEST_DRAW_SEED) if binarization == "dynamic" else pixels


def _raw(images):
    """The array inside a Tensor, or the array itself."""
    return images.data if isinstance(images, Tensor) else images


def _like(original, array):
    """Wrap ``array`` as a Tensor if ``original`` was one, so each helper returns what it was given."""
    return Tensor(array) if isinstance(original, Tensor) else array

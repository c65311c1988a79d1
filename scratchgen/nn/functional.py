"""Functional forms of the layers, and the losses, as PyTorch's ``torch.nn.functional`` names them.

Every function here composes ops from :mod:`scratchgen.ops`; none writes a backward of its own. The
losses work on logits, in forms that stay finite for logits of any size:

* log σ(x) = -softplus(-x), and softplus(x) = log(1 + eˣ) is computed as ``logaddexp(x, 0)``;
* log softmax(x)_i = x_i - logsumexp(x), computed after subtracting max(x).

A loss of an empty batch is an error rather than NaN (the mean of nothing) or 0 (the sum of nothing):
training on it learns nothing, and it almost always means a batch went missing upstream.
Settings (strides, paddings, p) are checked as the layers check them, with :mod:`scratchgen.nn._checks`.
"""

from __future__ import annotations

import numpy

from scratchgen import backend, ops
from scratchgen.nn._checks import check_dtype, int_pair, positive_int, real_number
from scratchgen.ops import conv, pool
from scratchgen.tensor import Tensor

__all__ = [
    "linear", "relu", "leaky_relu", "sigmoid", "tanh", "softplus", "silu", "log_softmax", "softmax", "dropout",
    "binary_cross_entropy_with_logits", "cross_entropy", "mse_loss", "gaussian_kl", "one_hot", "label_vectors", "label_rows", "with_labels",
    "conv2d", "conv_transpose2d", "max_pool2d", "avg_pool2d", "interpolate", "batch_norm",
    "group_norm",
]


# ---------------------------------------------------------------------------------------- layers


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x·Wᵀ + b.

    Args:
        x: (..., in_features). weight: (out_features, in_features). bias: (out_features,) or None.

    Returns:
        (..., out_features).
    """
    if bias is None:
        return ops.Affine.apply(x, weight)
    return ops.Affine.apply(x, weight, bias)


def relu(x: Tensor) -> Tensor:
    return ops.Rectifier.apply(x)


def leaky_relu(x: Tensor, negative_slope: float = 0.01) -> Tensor:
    return ops.Rectifier.apply(x, negative_slope=negative_slope)


def sigmoid(x: Tensor) -> Tensor:
    return ops.Logistic.apply(x)


def tanh(x: Tensor) -> Tensor:
    return ops.HyperbolicTangent.apply(x)


def softplus(x: Tensor) -> Tensor:
    return ops.LogOnePlusExp.apply(x)


def silu(x: Tensor) -> Tensor:
    """x·σ(x), the sigmoid-weighted linear unit (PyTorch's ``F.silu``)."""
    return ops.SigmoidWeightedLinear.apply(x)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    return ops.LogSoftmax.apply(x, axis=axis)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return log_softmax(x, axis).exp()


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) ("inverted dropout"), so that
    nothing changes at evaluation time, when the input passes through untouched."""
    p = real_number("dropout", "p", p, 0, 1, high_open=True)
    check_dtype("dropout", x)  # the generator draws float32 and float64 only
    if not training or p == 0:
        return x
    keep = backend.rng().random(x.shape, dtype=x.dtype) >= p
    return x * Tensor(keep.astype(x.dtype) / x.dtype.type(1 - p))


# ---------------------------------------------------------------------------------------- losses


def _reduce(loss: Tensor, reduction: str, op: str, input_shape: tuple) -> Tensor:
    """The loss's mean, sum, or itself ("none"); an empty batch has no mean or sum worth training on."""
    if reduction in ("mean", "sum") and loss.size == 0:
        raise ValueError(f"{op}: the input of shape {input_shape} is empty, so there is no loss to "
                         f"{'average' if reduction == 'mean' else 'sum'}; is the batch empty?")
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _as_target(target, like: Tensor, op: str) -> Tensor:
    target = target if isinstance(target, Tensor) else Tensor(backend.asarray(target, dtype=like.dtype))
    if target.shape != like.shape:
        raise ValueError(f"{op}: target shape {target.shape} differs from input shape {like.shape}")
    return target


def binary_cross_entropy_with_logits(logits: Tensor, target, reduction: str = "mean") -> Tensor:
    """Bernoulli negative log-likelihood from logits: -[y·log σ(x) + (1-y)·log(1-σ(x))].

    Written as softplus(x) - x·y, which is the same quantity and never takes the log of 0.
    Its gradient is σ(x) - y.

    Args:
        logits: any shape. target: same shape, values in [0, 1].
        reduction: "mean" over all elements (PyTorch's default), "sum", or "none".
    """
    target = _as_target(target, logits, "binary_cross_entropy_with_logits")
    return _reduce(softplus(logits) - logits * target, reduction, "binary_cross_entropy_with_logits", logits.shape)


def cross_entropy(logits: Tensor, labels, reduction: str = "mean") -> Tensor:
    """Categorical negative log-likelihood -log softmax(x)[y] from logits and integer class labels.

    Labels on the host (a NumPy array or a list, and every label on the NumPy backend) are checked
    there before they are used. Labels already on the GPU are not read back to be checked, which would
    make every step wait for the GPU: an out-of-range one makes its example's loss NaN instead, so a
    training loop stops at its next finiteness check (PyTorch's CUDA kernel stops at a device-side assert).

    Args:
        logits: (N, C). labels: (N,) integers in [0, C), as a Tensor or array.
        reduction: "mean" over the batch, "sum", or "none" for one loss per example.

    Raises:
        ValueError: wrong shapes, or host labels outside [0, C). TypeError: labels are not integers.
    """
    labels = labels.data if isinstance(labels, Tensor) else labels
    on_device = _on_device(labels)
    if not on_device:
        labels = numpy.asarray(backend.to_numpy(labels))
    if logits.ndim != 2 or labels.shape != (logits.shape[0],):
        raise ValueError(
            f"cross_entropy: expected logits (N, C) and labels (N,), got {logits.shape} and {tuple(labels.shape)}"
        )
    if labels.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: labels must be integers, got dtype {labels.dtype}")
    classes = logits.shape[1]
    if not on_device:
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            raise ValueError(f"cross_entropy: labels must lie in [0, {classes}), got values from {labels.min()} to {labels.max()}")
        labels = backend.asarray(labels)
    one_hot = (labels[:, None] == backend.xp.arange(classes)[None, :]).astype(logits.dtype)
    nll = -(log_softmax(logits, axis=1) * Tensor(one_hot)).sum(axis=1)
    if on_device:  # an out-of-range label has a row of zeros in one_hot, a loss of 0: make it NaN
        nll = nll + Tensor(backend.xp.where(one_hot.any(axis=1), 0, numpy.nan).astype(nll.dtype))
    return _reduce(nll, reduction, "cross_entropy", logits.shape)


def one_hot(labels, classes: int, dtype=None) -> Tensor:
    """Integer labels (N,) -> (N, classes), a row of zeros with a 1 in column ``labels[i]``; no gradient.

    The way a class label enters a network: a one-hot row times a weight matrix W (classes, F) is row y
    of W, a learned *embedding* of the label, so a Linear layer on one-hot labels is an embedding table.

    Host labels are checked as :func:`cross_entropy` checks them; labels on the GPU are not read back, and
    one outside [0, classes) gets a row of zeros.

    Raises:
        ValueError: labels not of shape (N,), or host labels outside [0, classes). TypeError: not integers.
    """
    labels = labels.data if isinstance(labels, Tensor) else labels
    on_device = _on_device(labels)
    if not on_device:
        labels = numpy.asarray(backend.to_numpy(labels))
    if labels.ndim != 1:
        raise ValueError(f"one_hot: expected labels of shape (N,), got {tuple(labels.shape)}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"one_hot: labels must be integers, got dtype {labels.dtype}")
    if not on_device:
        if labels.size and (labels.min() < 0 or labels.max() >= classes):
            raise ValueError(f"one_hot: labels must lie in [0, {classes}), got values from {labels.min()} to {labels.max()}")
        labels = backend.asarray(labels)
    dtype = backend.DEFAULT_DTYPE if dtype is None else dtype
    return Tensor((labels[:, None] == backend.xp.arange(classes)[None, :]).astype(dtype))


def label_vectors(labels, classes: int, dtype=None) -> Tensor:
    """What a conditional network reads as its label: integer labels (N,) become one-hot rows (N, classes),
    and rows of class probabilities (N, classes), such as a generator's soft labels or a blend of two
    one-hot rows, are used as they are (a Tensor keeps its graph).

    Raises:
        ValueError: a float array whose shape is not (N, classes).
    """
    data = labels.data if isinstance(labels, Tensor) else labels
    if not hasattr(data, "dtype"):
        data = numpy.asarray(data)
    if data.dtype.kind in "iu":
        return one_hot(data, classes, dtype)
    if data.ndim != 2 or data.shape[1] != classes:
        raise ValueError(f"label_vectors: expected integer labels (N,) or label rows (N, {classes}), "
                         f"got {data.dtype} of shape {tuple(data.shape)}")
    return labels if isinstance(labels, Tensor) else Tensor(backend.asarray(data, dtype=dtype or backend.DEFAULT_DTYPE))


def label_rows(labels, classes: int, n: int, who: str, dtype=None, inputs: str | None = None):
    """The label rows (n, C) that a conditional network reads, or None for an unconditional one
    (``classes`` = 0): the checks every conditional network makes, in one place.

    Args:
        labels: (n,) integers, (n, C) label rows, or None. classes: C, or 0. n: the number of inputs.
        who: the network, for the messages. inputs: how the messages describe the inputs ("n inputs").

    Raises:
        ValueError: labels given to an unconditional network, none to a conditional one, or not n of them.
    """
    if not classes:
        if labels is not None:
            raise ValueError(f"{who}: an unconditional network (classes=0) was given labels")
        return None
    if labels is None:
        raise ValueError(f"{who}: a conditional network (classes={classes}) needs labels y beside its input")
    rows = label_vectors(labels, classes, dtype)
    if len(rows) != n:
        raise ValueError(f"{who}: {inputs or f'{n} inputs'} but {len(rows)} labels; expected one label per input")
    return rows


def with_labels(x: Tensor, labels, classes: int, who: str = "with_labels") -> Tensor:
    """A conditional network's input: x (..., N, F) with each row's label vector beside it, (..., N, F + C).

    The labels are given once per row of the last batch axis, (N,) integers or (N, C) label rows, and
    repeated along any leading axes (the k importance samples of a VAE's codes, say). With ``classes`` = 0
    (an unconditional network) x is returned as it is.

    Raises:
        ValueError: as :func:`label_rows`, or x without a batch axis of rows; ``who`` names the network.
    """
    if classes and x.ndim < 2:
        raise ValueError(f"{who}: input of shape {x.shape}; expected rows with features, (..., N, F)")
    rows = label_rows(labels, classes, x.shape[-2] if x.ndim >= 2 else 0, who, x.dtype,
                      inputs=f"input of shape {x.shape}")
    if rows is None:
        return x
    if x.ndim > 2:
        rows = ops.BroadcastTo.apply(rows, shape=x.shape[:-1] + (classes,))
    return ops.concatenate([x, rows], axis=-1)


def _on_device(array) -> bool:
    """True for an array on the GPU (CuPy), whose values are not read back for a check on every call."""
    return backend.get_backend() != "numpy" and backend.is_array(array)


def mse_loss(input: Tensor, target, reduction: str = "mean") -> Tensor:
    """Mean squared error (x - y)², averaged over all elements by default."""
    target = _as_target(target, input, "mse_loss")
    diff = input - target
    return _reduce(diff * diff, reduction, "mse_loss", input.shape)


def gaussian_kl(mu: Tensor, logvar: Tensor, reduction: str = "none") -> Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) of a diagonal Gaussian, with σ² = exp(logvar) (Kingma & Welling 2014, App. B):

        KL = ½ Σ_j (μ_j² + σ_j² - 1 - log σ_j²)

    summed over every axis but the first (the latent dimensions).

    Args:
        mu, logvar: (N, ...) of the same shape.
        reduction: "none" for one KL per example, shape (N,); "mean" over the batch; "sum".
    """
    if mu.shape != logvar.shape:
        raise ValueError(f"gaussian_kl: mu {mu.shape} and logvar {logvar.shape} must have the same shape")
    terms = 0.5 * (mu * mu + logvar.exp() - 1.0 - logvar)
    per_example = terms.sum(axis=tuple(range(1, mu.ndim))) if mu.ndim > 1 else terms
    return _reduce(per_example, reduction, "gaussian_kl", mu.shape)


# ------------------------------------------------------------------- convolution, pooling, normalisation


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0, dilation=1, taps=None,
           method: str = "auto") -> Tensor:
    """2-D convolution (cross-correlation, as in every DL library): see :func:`scratchgen.ops.conv.conv2d`.

    Args:
        x: (N, C_in, H, W). weight: (C_out, C_in, kh, kw). bias: (C_out,) or None.
        stride, padding, dilation: an int or a (height, width) pair.
        taps: the kernel positions (i, j) in use, None for all; the others count as zero.
        method: "auto", "im2col" or "shifted": see :func:`scratchgen.ops.conv.choose_method`.

    Returns:
        (N, C_out, OH, OW) with OH = ⌊(H + 2·padding - dilation·(kh-1) - 1) / stride⌋ + 1.

    Raises:
        ValueError: x is not 4-D, its channels differ from the weight's, or the kernel is larger than the
            padded input.
    """
    return conv.conv2d(x, weight, bias, stride=int_pair("conv2d", "stride", stride, minimum=1),
                       padding=int_pair("conv2d", "padding", padding, minimum=0),
                       dilation=int_pair("conv2d", "dilation", dilation, minimum=1), taps=taps, method=method)


def conv_transpose2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0,
                     output_padding=0, dilation=1, method: str = "auto") -> Tensor:
    """Transposed convolution, the input gradient of :func:`conv2d`: see :func:`scratchgen.ops.conv.conv_transpose2d`.

    Args:
        x: (N, C_in, H, W). weight: (C_in, C_out, kh, kw), as PyTorch's. bias: (C_out,) or None.
        stride, padding, output_padding, dilation: an int or a (height, width) pair.
        method: "auto", "im2col" or "shifted": see :func:`scratchgen.ops.conv.choose_method`.

    Returns:
        (N, C_out, OH, OW) with OH = (H-1)·stride - 2·padding + dilation·(kh-1) + output_padding + 1.
    """
    return conv.conv_transpose2d(x, weight, bias, stride=int_pair("conv_transpose2d", "stride", stride, minimum=1),
                                 padding=int_pair("conv_transpose2d", "padding", padding, minimum=0),
                                 output_padding=int_pair("conv_transpose2d", "output_padding", output_padding,
                                                         minimum=0),
                                 dilation=int_pair("conv_transpose2d", "dilation", dilation, minimum=1),
                                 method=method)


def max_pool2d(x: Tensor, kernel_size, stride=None, padding=0, dilation=1) -> Tensor:
    """The maximum of each kernel_size window (N, C, H, W) -> (N, C, OH, OW); stride defaults to kernel_size."""
    kernel_size = int_pair("max_pool2d", "kernel_size", kernel_size, minimum=1)
    stride = kernel_size if stride is None else int_pair("max_pool2d", "stride", stride, minimum=1)
    return pool.max_pool2d(x, kernel_size, stride, padding=int_pair("max_pool2d", "padding", padding, minimum=0),
                           dilation=int_pair("max_pool2d", "dilation", dilation, minimum=1))


def avg_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    """The mean of each kernel_size window, padding zeros included; stride defaults to kernel_size."""
    kernel_size = int_pair("avg_pool2d", "kernel_size", kernel_size, minimum=1)
    stride = kernel_size if stride is None else int_pair("avg_pool2d", "stride", stride, minimum=1)
    return pool.avg_pool2d(x, kernel_size, stride, padding=int_pair("avg_pool2d", "padding", padding, minimum=0))


def interpolate(x: Tensor, scale_factor, mode: str = "nearest") -> Tensor:
    """Upsample (N, C, H, W) -> (N, C, sh·H, sw·W) by an integer factor (or pair), copying each pixel.

    Only ``mode="nearest"`` is implemented.
    """
    if mode != "nearest":
        raise ValueError(f"interpolate: only mode='nearest' is implemented, got {mode!r}")
    scale = int_pair("interpolate", "scale_factor", scale_factor, minimum=1)
    return ops.UpsampleNearest2d.apply(x, scale_factor=scale)


def batch_norm(x: Tensor, running_mean, running_var, weight: Tensor | None = None, bias: Tensor | None = None,
               training: bool = False, momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Batch normalisation of x (N, C, ...) per channel: see :mod:`scratchgen.ops.norm` for the math.

    Args:
        x: (N, C) or (N, C, L) or (N, C, H, W).
        running_mean, running_var: (C,) arrays or tensors, or None. In training mode they are updated in
            place; in evaluation mode they are used instead of the batch statistics.
        weight, bias: γ and β, (C,) each, or both None.
        training: normalise with the batch's statistics (True) or the running ones (False).
        momentum: α in running ← (1-α)·running + α·batch, a number or a 0-d array of the backend.
            eps: ε added to the variance.
    """
    if (weight is None) != (bias is None):
        raise ValueError("batch_norm: give both weight and bias, or neither")
    running = [r.data if isinstance(r, Tensor) else r for r in (running_mean, running_var)]
    inputs = (x,) if weight is None else (x, weight, bias)
    return ops.BatchNorm.apply(*inputs, running_mean=running[0], running_var=running[1], training=training,
                               momentum=momentum, eps=eps)


def group_norm(x: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Group normalisation (Wu & He 2018): each sample's channels in ``num_groups`` groups of C/G, each
    group normalised over its channels and every position, then a per-channel γ and β:

        μ = mean of the group,   σ² = mean of (x - μ)²   (biased),   y = γ·(x - μ)/√(σ² + ε) + β.

    Unlike batch norm, nothing is shared between the samples of a batch, so training and evaluation
    compute the same thing and there are no running statistics. G = 1 is layer norm over (C, H, W);
    G = C is instance norm. One fused op, :class:`scratchgen.ops.norm.GroupNormalisation` (named so as not
    to be confused with the layer), whose module docstring has the gradient; its backward is written with
    Tensor ops, so it can be differentiated again.

    Args:
        x: (N, C, ...), e.g. (N, C, H, W).
        num_groups: G, which must divide C.
        weight, bias: γ and β, (C,) each, or both None.
        eps: ε added to the variance.

    Returns:
        x's shape and dtype.

    Raises:
        ValueError: x of fewer than 2 dimensions, C not divisible by G, or γ, β not of shape (C,).
    """
    num_groups = positive_int("group_norm", "num_groups", num_groups)
    eps = real_number("group_norm", "eps", eps, 0, low_open=True)
    if (weight is None) != (bias is None):
        raise ValueError("group_norm: give both weight and bias, or neither")
    if x.ndim < 2:
        raise ValueError(f"group_norm: expected an input (N, C, ...) of at least 2 dimensions, got shape {x.shape}")
    channels = x.shape[1]
    if channels % num_groups:
        raise ValueError(f"group_norm: the input's {channels} channels (shape {x.shape}) do not divide into "
                         f"{num_groups} groups")
    for name, value in (("weight", weight), ("bias", bias)):
        if value is not None and value.shape != (channels,):
            raise ValueError(f"group_norm: {name} has shape {value.shape} but the input {x.shape} has {channels} channels")
    inputs = (x,) if weight is None else (x, weight, bias)
    return ops.GroupNormalisation.apply(*inputs, num_groups=num_groups, eps=eps)

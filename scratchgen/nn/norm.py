"""Normalisation layers: BatchNorm1d and BatchNorm2d (Ioffe & Szegedy 2015), GroupNorm (Wu & He 2018).

Batch norm normalises each channel to zero mean and unit variance over the batch, then scales and
shifts it by learned γ (``weight``) and β (``bias``); the math and its gradient are in
:mod:`scratchgen.ops.norm`.

In training mode a batch-norm layer normalises with the statistics of the batch in front of it and
keeps running averages of them; in evaluation mode (``model.eval()``) it uses those running averages
instead, so that a single example's output does not depend on the rest of its batch. State and names are
PyTorch's: ``weight`` (ones), ``bias`` (zeros), and the buffers ``running_mean`` (zeros), ``running_var``
(ones) and ``num_batches_tracked``, so a state dict loads into either library.

GroupNorm normalises each sample on its own, over groups of channels, so it has no running statistics
and behaves the same in both modes: the normalisation of diffusion models' U-Nets, whose batches are
small and whose every sample sits at its own noise level. It is one fused op, whose math and gradient are
in :mod:`scratchgen.ops.norm` too; its state is ``weight`` (ones) and ``bias`` (zeros).
"""

from __future__ import annotations

import numpy

from scratchgen import backend
from scratchgen.nn import functional as F
from scratchgen.nn._checks import check_input, flag, positive_int, real_number
from scratchgen.nn.module import Module, Parameter

__all__ = ["BatchNorm1d", "BatchNorm2d", "GroupNorm"]


class _BatchNorm(Module):
    """Shared by BatchNorm1d and BatchNorm2d, which differ only in the input shapes they accept."""

    input_dims: tuple = ()  #: the numbers of dimensions a subclass accepts
    input_layout: str = ""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True):
        super().__init__()
        self.num_features = positive_int(self, "num_features", num_features)
        self.eps = real_number(self, "eps", eps, 0, low_open=True)
        self.momentum = None if momentum is None else real_number(self, "momentum", momentum, 0, 1)
        self.affine = flag(self, "affine", affine)
        self.track_running_stats = flag(self, "track_running_stats", track_running_stats)
        num_features, xp, dtype = self.num_features, backend.xp, backend.DEFAULT_DTYPE
        self.weight = Parameter(xp.ones((num_features,), dtype=dtype)) if affine else None
        self.bias = Parameter(xp.zeros((num_features,), dtype=dtype)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", xp.zeros((num_features,), dtype=dtype))
            self.register_buffer("running_var", xp.ones((num_features,), dtype=dtype))
            self.register_buffer("num_batches_tracked", xp.zeros((), dtype=numpy.int64))
        else:
            self.running_mean = self.running_var = None

    def forward(self, x):
        layout = f"{self.input_layout} with C = {self.num_features}"
        check_input(self, x, layout, ranks=self.input_dims)
        if x.shape[1] != self.num_features:
            raise ValueError(f"{self!r}: expected an input {layout}, got shape {x.shape}")
        use_batch_statistics = self.training or not self.track_running_stats
        momentum = self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if momentum is None:  # PyTorch's option: a plain average over all batches seen so far
                # 1/count as a 0-d array on the counter's device: int() would wait for the GPU every step
                momentum = (1.0 / self.num_batches_tracked.data).astype(self.running_mean.dtype)
        running = (self.running_mean, self.running_var) if self.track_running_stats else (None, None)
        try:
            return F.batch_norm(x, *running, self.weight, self.bias, training=use_batch_statistics,
                                momentum=momentum if momentum is not None else 0.0, eps=self.eps)
        except ValueError as err:
            raise ValueError(f"{self!r}: {err}") from err

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch norm of features (N, C) or sequences (N, C, L), per channel C."""

    input_dims = (2, 3)
    input_layout = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch norm of images (N, C, H, W), per channel C, over the batch and every pixel."""

    input_dims = (4,)
    input_layout = "(N, C, H, W)"


class GroupNorm(Module):
    """Group norm of (N, C, ...): each sample's C channels in ``num_groups`` groups, each group normalised
    over its C/G channels and every position, then scaled and shifted per channel; see :func:`F.group_norm`.

    Args:
        num_groups: G, which must divide ``num_channels``; 1 is layer norm over (C, H, W), C instance norm.
        num_channels: C.
        eps: ε added to the variance.
        affine: learn a per-channel ``weight`` γ (ones) and ``bias`` β (zeros).
    """

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.num_groups = positive_int(self, "num_groups", num_groups)
        self.num_channels = positive_int(self, "num_channels", num_channels)
        if self.num_channels % self.num_groups:
            raise ValueError(f"GroupNorm: num_channels must be divisible by num_groups, got {num_channels} "
                             f"channels and {num_groups} groups")
        self.eps = real_number(self, "eps", eps, 0, low_open=True)
        self.affine = flag(self, "affine", affine)
        xp, dtype = backend.xp, backend.DEFAULT_DTYPE
        self.weight = Parameter(xp.ones((num_channels,), dtype=dtype)) if affine else None
        self.bias = Parameter(xp.zeros((num_channels,), dtype=dtype)) if affine else None

    def forward(self, x):
        check_input(self, x, f"(N, C, ...) with C = {self.num_channels}", min_rank=2, axis=1,
                    size=self.num_channels, what="channels")
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}, affine={self.affine}"

"""DataLoader: minibatches of arrays as tensors, shuffled reproducibly, resumable mid-epoch.

Training with stochastic gradients visits the data in minibatches, in a new random order each epoch.
:class:`DataLoader` does that for arrays held in memory (MNIST and the toy sets fit easily)::

    images, labels = load_mnist()
    loader = DataLoader(to_float(images).reshape(-1, 784), labels, batch_size=128, shuffle=True, seed=0)
    for epoch in range(10):
        for x, y in loader:          # x: (128, 784) float32 Tensor, y: (128,) int64 Tensor
            ...

The name and arguments follow PyTorch's ``torch.utils.data.DataLoader`` over a ``TensorDataset``.

Reproducibility. The order comes from the loader's own ``numpy.random.Generator`` seeded with
``seed``, not from the global one, so initialising a model or drawing noise never changes which batches
come next. Each epoch draws one permutation from it, so two loaders with the same seed give the same
batches, and each epoch a different order. The permutation is drawn on the host whatever the backend,
so the NumPy and CuPy backends see identical batches.

Resuming. :meth:`DataLoader.state_dict` records the generator's state at the start of the current
epoch and how many of its batches were handed out; :meth:`DataLoader.load_state_dict` restores both,
and the next iteration redraws that epoch's permutation and continues after the last batch handed out.
A run checkpointed and resumed thus sees exactly the batches of a run that was never interrupted,
provided it counts epochs with ``loader.epoch`` (epochs completed)::

    loader.load_state_dict(checkpoint["loader"])      # saved with loader.state_dict(), JSON-ready
    while loader.epoch < epochs:
        for x, y in loader:                           # the first pass finishes the interrupted epoch
            ...

Sharding. With ``shard=(rank, size)`` the loader is one of ``size`` data-parallel workers
(:mod:`scratchgen.distributed`): every worker draws the same permutation from the same seed, and worker
``rank`` keeps every ``size``-th row of it, starting at row ``rank`` (PyTorch's ``DistributedSampler``
takes the same stride). The shares are disjoint, and batch ``i`` of all the workers together is exactly
batch ``i`` of one loader with ``size`` times the batch size, in another row order. So that every
worker takes the same number of steps, the last ``N mod size`` rows of each epoch's permutation (a
different few each epoch) are left out.

A loop that counts steps rather than epochs (a GAN's) takes batches from :meth:`DataLoader.endless`,
epoch after epoch. A loader whose epoch holds no batch (fewer rows than ``batch_size`` with
``drop_last``) would make such a stream wait forever for its first batch, so it is refused.
"""

from __future__ import annotations

import copy

import numpy

from scratchgen import backend
from scratchgen.tensor import Tensor

__all__ = ["DataLoader"]


class DataLoader:
    """Iterate over minibatches of equally long arrays, as tuples of Tensors on the active backend.

    Args:
        *arrays: one or more arrays (NumPy, or anything ``numpy.asarray`` takes) with the same first
            dimension N; batch ``i`` holds the same rows of each.
        batch_size: rows per batch.
        shuffle: visit the rows in a new random order each epoch (else in order 0..N-1).
        seed: seed of the loader's own random generator.
        drop_last: drop the last batch if it has fewer than ``batch_size`` rows.
        device: copy the arrays to the active backend once, here, so that batches are cut on the GPU
            instead of being copied over one by one (faster with CuPy, if the data fit in GPU memory).
        shard: ``(rank, size)`` to hand out only worker ``rank``'s share of each epoch, of
            ``N // size`` rows (see the module docstring); None for all N rows. ``batch_size`` is then
            per worker.

    Yields:
        A tuple with one Tensor per array, of shape ``(B, *array.shape[1:])`` and the array's dtype,
        not requiring grad (a tuple even for one array: ``for (x,) in loader``).

    One loader serves one loop at a time: two simultaneous iterations would share its position.
    """

    def __init__(self, *arrays, batch_size: int = 64, shuffle: bool = False, seed: int = 0,
                 drop_last: bool = False, device: bool = False, shard: tuple[int, int] | None = None):
        if not arrays:
            raise ValueError("DataLoader: give at least one array")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, numpy.integer)) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive integer, got {batch_size!r}")
        arrays = [a.data if isinstance(a, Tensor) else a for a in arrays]
        arrays = [backend.asarray(a) if device else numpy.asarray(backend.to_numpy(a)) for a in arrays]
        lengths = [a.shape[0] if a.ndim else None for a in arrays]
        if None in lengths or len(set(lengths)) != 1:
            shapes = ", ".join(str(tuple(a.shape)) for a in arrays)
            raise ValueError(f"DataLoader: all arrays need the same first dimension, got shapes {shapes}")
        self.arrays = arrays
        self.num_samples = lengths[0]
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.device = device
        self.shard = _checked_shard(shard)
        self._generator = numpy.random.default_rng(seed)
        self.epoch = 0  # epochs completed
        self._epoch_start_state = self._generator.bit_generator.state  # before this epoch's permutation
        self._batches_done = 0  # batches of the current epoch handed out
        self._resume = False  # the next iteration continues the current epoch (after load_state_dict)

    @property
    def rows_per_epoch(self) -> int:
        """Rows this loader hands out per epoch: N, or ``N // size`` with a shard."""
        return self.num_samples if self.shard is None else self.num_samples // self.shard[1]

    def __len__(self) -> int:
        """Number of batches per epoch."""
        full, rest = divmod(self.rows_per_epoch, self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self):
        if self._resume:
            self._generator.bit_generator.state = self._epoch_start_state
            self._resume = False
        else:  # a new epoch (a loop left early by `break` is abandoned, as in PyTorch)
            self._epoch_start_state = self._generator.bit_generator.state
            self._batches_done = 0
        order = self._generator.permutation(self.num_samples) if self.shuffle else numpy.arange(self.num_samples)
        if self.shard is not None:
            rank, size = self.shard
            order = order[rank:self.rows_per_epoch * size:size]
        if self.device:
            order = backend.asarray(order)

        for i in range(self._batches_done, len(self)):
            # Indexing with an index array copies the rows, so changing a batch never changes the data.
            rows = order[i * self.batch_size:(i + 1) * self.batch_size]
            batch = tuple(Tensor(backend.asarray(a[rows])) for a in self.arrays)
            self._batches_done = i + 1  # counted before the yield: a checkpoint in the loop body includes it
            yield batch

        self.epoch += 1
        self._epoch_start_state = self._generator.bit_generator.state
        self._batches_done = 0

    def endless(self):
        """The batches epoch after epoch, without end, each epoch in a new order: for loops that count steps.

        Use ``next()`` on the result; the loader's position and epoch count advance as with ``for``.

        Raises:
            ValueError: an epoch holds no batch, so the stream would never yield one (raised here, at
                the call, not at the first ``next()``).
        """
        if len(self) == 0:
            fix = (f"use a batch_size of at most {self.rows_per_epoch}" if self.rows_per_epoch
                   else "the arrays have too few rows")
            raise ValueError(f"DataLoader.endless: with batch_size={self.batch_size} and drop_last={self.drop_last}, "
                             f"an epoch of {self.rows_per_epoch} samples holds no batch, so the stream would never "
                             f"yield one; {fix}")
        return self._batches_forever()

    def _batches_forever(self):
        while True:
            yield from self

    def state_dict(self) -> dict:
        """Where the loader stands, as JSON-ready data: enough to resume bit for bit.

        Returns:
            ``{"epoch": epochs completed, "batch": batches of the current epoch handed out,
            "generator": the numpy bit-generator state at the start of the current epoch}``.
        """
        return {"epoch": self.epoch, "batch": self._batches_done,
                "generator": copy.deepcopy(self._epoch_start_state)}

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict`; the next iteration continues from there.

        Raises:
            ValueError: the state has a batch position beyond this loader's number of batches.
        """
        if not 0 <= state["batch"] <= len(self):
            raise ValueError(f"DataLoader.load_state_dict: batch position {state['batch']} is outside this "
                             f"loader's 0..{len(self)} batches per epoch (different data or batch_size?)")
        self.epoch = int(state["epoch"])
        self._batches_done = int(state["batch"])
        self._epoch_start_state = copy.deepcopy(state["generator"])  # the caller's dict stays theirs
        self._resume = True

    def __repr__(self) -> str:
        shapes = ", ".join(f"{tuple(a.shape)} {a.dtype}" for a in self.arrays)
        shard = "" if self.shard is None else f", shard={self.shard}"
        return (f"DataLoader({shapes}; batch_size={self.batch_size}, shuffle={self.shuffle}, seed={self.seed}, "
                f"drop_last={self.drop_last}{shard}, {len(self)} batches)")


def _checked_shard(shard):
    """``shard`` as a pair of ints ``(rank, size)`` with 0 <= rank < size, or None."""
    if shard is None:
        return None
    is_int = lambda n: isinstance(n, (int, numpy.integer)) and not isinstance(n, bool)  # noqa: E731
    if not (isinstance(shard, (tuple, list)) and len(shard) == 2 and all(map(is_int, shard))
            and 0 <= shard[0] < shard[1]):
        raise ValueError(f"DataLoader: shard must be a pair of ints (rank, size) with 0 <= rank < size, got {shard!r}")
    return int(shard[0]), int(shard[1])

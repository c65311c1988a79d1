"""Data-parallel training over MPI: every process holds the whole model and learns from its share of each batch.

Run a script as ``mpiexec -n N python script.py``: N processes (ranks 0 to N-1) start, each with the
same model. In every step each rank takes its own B/N rows of the global batch of B (a sharded
:class:`~scratchgen.data.DataLoader`), runs forward and backward on them, and the ranks then average
their gradients with one Allreduce before every rank takes the same optimiser step. The parameters
therefore stay identical on all ranks, and since a loss that is a mean over the batch has as gradient the
mean of its parts' gradients,

    ∇ (1/B) Σ_{all B rows} ℓ  =  (1/N) Σ_ranks ∇ (1/(B/N)) Σ_{the rank's B/N rows} ℓ,

N ranks with batch B/N take the same steps as one process with batch B (up to rounding; the tests check
it to 1e-10 in float64). The recipe, as the demos' ``--distributed`` follows it::

    comm = distributed.init()                                       # rank, size
    loader = DataLoader(x, batch_size=B // comm.size, shuffle=True, seed=seed,
                        shard=(comm.rank, comm.size))
    model = build(); distributed.broadcast_parameters(model, comm)  # rank 0's initial weights everywhere
    opt = distributed.DistributedOptimizer(optim.Adam(model.parameters()), comm)
    distributed.seed_ranks(seed, comm)                              # each rank its own noise

What is averaged: the gradients, every step; batch norm's running statistics, when asked
(:func:`average_batch_norm_statistics`, which the demos call at the end of each epoch, so that the
evaluation and the checkpoint see one mean on every rank). What is not: batch norm's *batch* statistics in the forward pass
(each rank normalises with its own B/N rows, as PyTorch's DDP does without SyncBatchNorm), the random
draws (each rank has its own stream) and the training loss each rank reports (rank 0 reports its share's).

How the sum travels (:class:`Communicator`): NumPy arrays go to MPI as they are. CuPy arrays go through
host memory by default; with ``transport="cuda-aware"`` they go to an MPI built with CUDA support as
device buffers, after the CUDA stream is synchronised (MPI knows nothing of streams, and would otherwise
read a gradient the GPU is still writing); with ``transport="nccl"`` they are summed by NCCL, GPU to GPU,
on the current stream, the NCCL id passed to the ranks over MPI.

Builds on mpi4py (the optional extra ``pip install -e ".[mpi]"``, imported here alone, and only when a
communicator is made), :mod:`scratchgen.optim` and :mod:`scratchgen.nn`. It follows Horovod's
``DistributedOptimizer`` (Sergeev & Del Balso 2018) and PyTorch's DDP (Li et al. 2020); the cost of a
ring Allreduce is Patarasuk & Yuan (2009).
"""

from __future__ import annotations

import os
import time

import numpy

from scratchgen import backend
from scratchgen.nn.norm import _BatchNorm

__all__ = ["init", "Communicator", "broadcast_parameters", "DistributedOptimizer", "average_batch_norm_statistics",
           "seed_ranks", "TRANSPORTS"]

TRANSPORTS = ("host", "cuda-aware", "nccl")


def _mpi():
    """mpi4py's MPI module, or an ImportError that says how to install it."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        raise ImportError('scratchgen.distributed needs mpi4py and an MPI: pip install -e ".[mpi]" '
                          "(mpi4py and the mpich wheel, which brings mpiexec)") from err
    return MPI


def init(transport: str | None = None) -> "Communicator":
    """The communicator of every process ``mpiexec`` started (MPI's COMM_WORLD), wrapped.

    With the CuPy backend active, each rank also takes a GPU of its own machine: the one numbered by its
    rank among the ranks on that machine (modulo the number of GPUs). Call it after ``set_backend``.

    Args:
        transport: how CuPy arrays are summed, one of :data:`TRANSPORTS`; by default the environment
            variable ``SCRATCHGEN_MPI_TRANSPORT``, else "host". NumPy arrays always go to MPI directly.

    Raises:
        ImportError: mpi4py is not installed.
    """
    MPI = _mpi()
    transport = transport or os.environ.get("SCRATCHGEN_MPI_TRANSPORT", "host")
    if backend.get_backend() == "cupy":
        local_rank = MPI.COMM_WORLD.Split_type(MPI.COMM_TYPE_SHARED).Get_rank()
        backend.xp.cuda.Device(local_rank % backend.xp.cuda.runtime.getDeviceCount()).use()
    return Communicator(MPI.COMM_WORLD, transport)


class Communicator:
    """An mpi4py communicator with the three collectives data-parallel training needs, for both backends.

    Args:
        mpi_comm: an ``mpi4py.MPI.Comm`` (``MPI.COMM_WORLD``; ``MPI.COMM_SELF`` for one process).
        transport: one of :data:`TRANSPORTS`, for CuPy arrays (see the module docstring).

    Attributes:
        rank: this process's number, 0 to size - 1. size: the number of processes.
        mpi: the mpi4py communicator itself.
    """

    def __init__(self, mpi_comm, transport: str = "host"):
        if transport not in TRANSPORTS:
            raise ValueError(f"Communicator: transport must be one of {TRANSPORTS}, got {transport!r}")
        self._MPI = _mpi()
        self.mpi, self.transport = mpi_comm, transport
        self.rank, self.size = mpi_comm.Get_rank(), mpi_comm.Get_size()
        self._nccl = _Nccl(mpi_comm) if transport == "nccl" else None

    def allreduce_sum(self, array) -> None:
        """Replace ``array`` (contiguous, of either backend), on every rank, by the sum over all ranks, in place."""
        if isinstance(array, numpy.ndarray):
            self.mpi.Allreduce(self._MPI.IN_PLACE, array, op=self._MPI.SUM)
        elif self._nccl is not None:
            self._nccl.allreduce_sum(array)
        elif self.transport == "cuda-aware":
            backend.synchronize()  # the kernels that wrote `array` must finish before MPI reads it
            self.mpi.Allreduce(self._MPI.IN_PLACE, array, op=self._MPI.SUM)
        else:
            host = backend.to_numpy(array)  # a new host array, as contiguous as `array`
            self.mpi.Allreduce(self._MPI.IN_PLACE, host, op=self._MPI.SUM)
            array[...] = backend.asarray(host)

    def broadcast(self, array, root: int = 0) -> None:
        """Replace ``array`` (contiguous, of either backend), on every rank, by rank ``root``'s, in place.

        Used once, at the start; CuPy arrays go through the host unless MPI is CUDA-aware."""
        if isinstance(array, numpy.ndarray) or self.transport == "cuda-aware":
            backend.synchronize()
            self.mpi.Bcast(array, root=root)
        else:
            host = backend.to_numpy(array)  # a new host array, as contiguous as `array`
            self.mpi.Bcast(host, root=root)
            array[...] = backend.asarray(host)

    def allgather(self, value) -> list:
        """Every rank's ``value`` (plain data: numbers, strings, lists, dicts), in rank order, on every rank.

        mpi4py pickles such values on their way between the job's own processes; nothing pickled is
        written to a file (checkpoints hold the result as JSON and arrays)."""
        return self.mpi.allgather(value)

    def __repr__(self) -> str:
        return f"Communicator(rank={self.rank}, size={self.size}, transport={self.transport!r})"


class _Nccl:
    """Sums CuPy arrays over the ranks with NCCL, on the current CUDA stream (no host round trip).

    NCCL needs an id made on one rank and known to all; MPI passes it, so no TCP rendezvous (as
    ``cupyx.distributed.init_process_group`` would start) is needed. ``backend.nccl()`` hands over
    CuPy's NCCL binding, since :mod:`scratchgen.backend` is the one module that imports CuPy.
    """

    def __init__(self, mpi_comm):
        if backend.get_backend() != "cupy":
            raise backend.BackendError("transport='nccl' sums CuPy arrays: set_backend('cupy') before init()")
        self.nccl = nccl = backend.nccl()
        unique_id = mpi_comm.bcast(nccl.get_unique_id() if mpi_comm.Get_rank() == 0 else None, root=0)
        self.comm = nccl.NcclCommunicator(mpi_comm.Get_size(), unique_id, mpi_comm.Get_rank())
        self.types = {"float32": nccl.NCCL_FLOAT32, "float64": nccl.NCCL_FLOAT64}

    def allreduce_sum(self, array) -> None:
        stream = backend.xp.cuda.get_current_stream()
        self.comm.allReduce(array.data.ptr, array.data.ptr, array.size, self.types[array.dtype.name],
                            self.nccl.NCCL_SUM, stream.ptr)


def broadcast_parameters(module, comm: Communicator, root: int = 0) -> None:
    """Give every rank rank ``root``'s parameters and buffers, so that all start from the same weights.

    Raises:
        ValueError: the ranks' modules differ in a name, shape or dtype (they built different models),
            naming the first rank and entry that differ; nothing is loaded then.
    """
    state = module.state_dict()
    layout = [(name, tuple(a.shape), str(a.dtype)) for name, a in state.items()]
    for rank, theirs in enumerate(comm.allgather(layout)):
        if theirs != layout:
            first = next((mine, other) for mine, other in zip(layout + [None], theirs + [None]) if mine != other)
            raise ValueError(f"broadcast_parameters: rank {rank}'s {type(module).__name__} differs from rank "
                             f"{comm.rank}'s (name, shape, dtype): {first[1]} against {first[0]}; every rank must "
                             f"build the same model")
    received = {}
    for name, array in state.items():
        received[name] = array.copy()  # a contiguous buffer of our own to receive into
        comm.broadcast(received[name], root)
    module.load_state_dict(received)


def average_batch_norm_statistics(module, comm: Communicator) -> None:
    """Average every batch-norm layer's running mean and variance over the ranks, in place.

    Each rank's running statistics follow its own shards, so they drift apart; the mean of the ranks'
    means is the running mean of all the data. (The mean of their variances leaves out the spread
    between the ranks' means, which is small when each shard is a fair sample.)
    """
    for layer in module.modules():
        if isinstance(layer, _BatchNorm) and layer.track_running_stats:
            for statistic in (layer.running_mean, layer.running_var):
                summed = statistic.data.copy()
                comm.allreduce_sum(summed)
                statistic.data = summed / comm.size


def seed_ranks(seed: int, comm: Communicator) -> None:
    """Give each rank a random stream of its own, for the noise and sampling of training.

    Rank 0 keeps the stream it has, so that ``mpiexec -n 1`` repeats a run without MPI bit for bit;
    rank r > 0 seeds :func:`scratchgen.backend.manual_seed` with a number NumPy's ``SeedSequence``
    derives from ``(seed, r)``, so that the ranks' streams are independent. Call it after building the
    model (whose initial weights :func:`broadcast_parameters` makes rank 0's anyway).
    """
    if comm.rank > 0:
        backend.manual_seed(int(numpy.random.SeedSequence([int(seed), comm.rank]).generate_state(1)[0]))


class DistributedOptimizer:
    """Wraps any scratchgen optimiser: :meth:`step` averages the gradients over the ranks, then steps.

    All gradients travel in one flat buffer and one Allreduce (sum, then divided by the number of
    ranks): one message per step costs one latency instead of one per parameter. A count of the ranks
    that have each parameter's gradient travels in the same buffer, so a parameter that some ranks
    trained and others did not (different code paths: a bug) stops the run instead of averaging a
    gradient with missing ones; a parameter no rank has a gradient for is left alone, as
    ``Optimizer.step`` leaves it.

    Everything else (``zero_grad``, ``lr``, ``state_dict``, ``load_state_dict``, ``params``) is the
    wrapped optimiser's, so the wrapper takes its place in a training loop or a ``GANTrainer``.

    Args:
        optimizer: a :class:`scratchgen.optim.Optimizer` over parameters of one floating dtype.
        comm: the :class:`Communicator` of the ranks.
    """

    def __init__(self, optimizer, comm: Communicator):
        dtypes = {str(p.data.dtype) for p in optimizer.params}
        if len(dtypes) != 1:
            raise TypeError(f"DistributedOptimizer: the parameters have dtypes {sorted(dtypes)}; they travel in one "
                            f"buffer, so convert them to one dtype")
        self.optimizer, self.comm = optimizer, comm
        self.allreduce_seconds = 0.0  # time spent in the Allreduce, for the benchmark

    @property
    def params(self) -> list:
        return self.optimizer.params

    @property
    def lr(self) -> float:
        return self.optimizer.lr

    @lr.setter
    def lr(self, value: float) -> None:
        self.optimizer.lr = value

    def zero_grad(self) -> None:
        self.optimizer.zero_grad()

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state_dict: dict) -> None:
        self.optimizer.load_state_dict(state_dict)

    def step(self) -> None:
        """Average the gradients over the ranks (:meth:`average_gradients`), then take the wrapped step."""
        self.average_gradients()
        self.optimizer.step()

    def average_gradients(self) -> None:
        """Replace each parameter's gradient by its mean over the ranks, with one Allreduce.

        Raises:
            RuntimeError: some ranks have a gradient for a parameter and others not.
        """
        xp, params = backend.xp, self.optimizer.params
        dtype = params[0].data.dtype
        pieces = [p.grad.reshape(-1) if p.grad is not None else xp.zeros(p.data.size, dtype=dtype) for p in params]
        pieces.append(xp.asarray([p.grad is not None for p in params], dtype=dtype))  # one count per parameter
        flat = xp.concatenate(pieces)
        began = time.perf_counter()
        self.comm.allreduce_sum(flat)
        backend.synchronize()
        self.allreduce_seconds += time.perf_counter() - began
        counts = backend.to_numpy(flat[-len(params):]).copy()
        for i, (p, count) in enumerate(zip(params, counts)):
            if count not in (0, self.comm.size):
                raise RuntimeError(f"DistributedOptimizer: parameter {i} (shape {p.shape}) has a gradient on "
                                   f"{int(count)} of {self.comm.size} ranks; every rank must run the same "
                                   f"forward and backward")
        flat /= self.comm.size
        offset = 0
        for p, count in zip(params, counts):
            # Views into one buffer: optimisers read gradients and never write them (see scratchgen.optim).
            p.grad = flat[offset:offset + p.data.size].reshape(p.data.shape) if count else None
            offset += p.data.size

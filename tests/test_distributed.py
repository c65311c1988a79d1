"""Tests of scratchgen.distributed and the sharded DataLoader: data-parallel training over MPI.

Three kinds: the shard's arithmetic (no MPI needed); the pieces in this process with a one-rank
communicator (``MPI.COMM_SELF``), with stand-in communicators for the failures one rank cannot show;
and two ranks for real, ``mpiexec -n 2`` in a subprocess: equivalence with one process of twice the
batch (tests/mpi_scripts/data_parallel.py), and the demos' ``--distributed`` runs and resumption. Tests
that need MPI are skipped, saying so, where mpi4py is not installed (``pip install -e ".[mpi]"``).
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from scratchgen import backend, nn, optim, tensor
from scratchgen.checkpoint import load
from scratchgen.data import DataLoader
from conftest import load_demo

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "tests", "mpi_scripts", "data_parallel.py")


def _mpi():
    """mpi4py's MPI, which the test extra installs: its absence is a broken install, not a reason to skip."""
    try:
        from mpi4py import MPI
    except ImportError as err:
        pytest.fail(f'mpi4py is not installed ({err}): pip install -e ".[test]" brings it and MPICH')
    return MPI


def _mpiexec() -> str:
    """mpiexec beside this Python (the mpich wheel puts it there), else on the PATH."""
    _mpi()
    found = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")
    if found is None:
        pytest.fail("mpi4py is installed but no mpiexec was found beside python or on the PATH: "
                    "pip install mpich (the test extra does) or install an MPI")
    return found


def run_ranks(n: int, *args, env=None, timeout: int = 120) -> str:
    """``mpiexec -n n python <args>`` from the repository root, one BLAS thread per rank; its stdout.
    A failure shows the command's output."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", **(env or {})}
    done = subprocess.run([_mpiexec(), "-n", str(n), sys.executable, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"mpiexec -n {n} {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


# --------------------------------------------------------------------------------------------- shard


@pytest.mark.parametrize("size", [2, 3])
def test_shards_are_disjoint_cover_the_epoch_and_make_up_the_global_batches(size):
    rows, batch = 23, 2
    whole = DataLoader(np.arange(rows), batch_size=batch * size, shuffle=True, seed=4)
    shards = [DataLoader(np.arange(rows), batch_size=batch, shuffle=True, seed=4, shard=(r, size)) for r in range(size)]
    for _ in range(2):  # two epochs: a new order each, the same on every rank
        global_batches = [set(x.numpy()) for (x,) in whole]
        per_rank = [[set(x.numpy()) for (x,) in loader] for loader in shards]
        assert len({len(batches) for batches in per_rank}) == 1  # every rank takes the same number of steps
        seen = [i for batches in per_rank for b in batches for i in b]
        assert len(seen) == len(set(seen)) == rows // size * size  # disjoint; N mod size rows left out
        left_out = set(range(rows)) - set(seen)
        for i, parts in enumerate(zip(*per_rank)):  # step i of all ranks together is batch i of one process
            assert set().union(*parts) == global_batches[i] - left_out


def test_a_shard_is_reproducible_and_resumes_mid_epoch():
    make = lambda: DataLoader(np.arange(40), batch_size=3, shuffle=True, seed=9, shard=(1, 2))  # noqa: E731
    first = [x.numpy().tolist() for (x,) in make()]
    assert first == [x.numpy().tolist() for (x,) in make()]
    loader = make()
    stream = iter(loader)
    next(stream), next(stream)
    resumed = make()
    resumed.load_state_dict(loader.state_dict())
    assert [x.numpy().tolist() for (x,) in resumed] == first[2:]


@pytest.mark.parametrize("shard", [(2, 2), (-1, 2), (0, 0), (0.5, 2), (1,), "01", (True, 2)])
def test_a_bad_shard_is_refused(shard):
    with pytest.raises(ValueError, match="shard must be a pair of ints"):
        DataLoader(np.arange(4), shard=shard)


# --------------------------------------------------------------------------------------------- one rank


@pytest.fixture
def comm():
    from scratchgen import distributed

    return distributed.Communicator(_mpi().COMM_SELF)


def _mlp():
    return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2))


def _inputs(rows=16, features=4):
    return tensor(np.random.default_rng(0).standard_normal((rows, features), dtype=np.float32))


def _train(model, opt, steps=5):
    x = _inputs()
    for _ in range(steps):
        opt.zero_grad()
        (model(x) ** 2).mean().backward()
        opt.step()


def test_one_rank_steps_exactly_as_the_wrapped_optimiser(comm):
    from scratchgen import distributed

    backend.manual_seed(0)
    plain, wrapped = _mlp(), _mlp()
    wrapped.load_state_dict(plain.state_dict())
    _train(plain, optim.Adam(plain.parameters(), lr=1e-2))
    opt = distributed.DistributedOptimizer(optim.Adam(wrapped.parameters(), lr=1e-2), comm)
    _train(wrapped, opt)
    for p, q in zip(plain.parameters(), wrapped.parameters()):
        assert np.array_equal(p.numpy(), q.numpy())
    opt.lr = 5e-3  # the wrapped optimiser's, read and written through the wrapper (a GAN's schedule does)
    assert opt.optimizer.lr == opt.lr == 5e-3
    assert opt.state_dict()["state"]["0"]["step"] == 5


def test_a_parameter_no_rank_has_a_gradient_for_is_left_alone(comm):
    from scratchgen import distributed

    model = _mlp()
    frozen = model[2].bias
    frozen_before = frozen.numpy().copy()
    opt = distributed.DistributedOptimizer(optim.Adam(model.parameters(), lr=1e-2), comm)
    opt.zero_grad()
    (model[0](_inputs()) ** 2).sum().backward()  # the first layer only
    opt.step()
    assert frozen.grad is None and np.array_equal(frozen.numpy(), frozen_before)


class _Stub:
    """A stand-in communicator of two ranks, for failures one real rank cannot produce."""

    rank, size = 0, 2

    def __init__(self, layouts=None, counts=None):
        self.layouts, self.counts = layouts, counts

    def allgather(self, value):
        return self.layouts(value)

    def allreduce_sum(self, array):
        array *= 2  # as if the other rank had sent the same
        if self.counts is not None:
            array[-len(self.counts):] = self.counts


def test_a_gradient_on_some_ranks_only_stops_the_step():
    from scratchgen import distributed

    model = _mlp()
    opt = distributed.DistributedOptimizer(optim.SGD(model.parameters(), lr=0.1), _Stub(counts=[2, 2, 1, 2]))
    model(_inputs()).sum().backward()
    with pytest.raises(RuntimeError, match=r"parameter 2 \(shape \(2, 8\)\) has a gradient on 1 of 2 ranks"):
        opt.step()


def test_broadcast_refuses_ranks_that_built_different_models():
    from scratchgen import distributed

    model = _mlp()
    other = lambda layout: [layout, layout[:-1] + [("1.bias", (3,), "float32")]]  # noqa: E731
    before = [p.numpy().copy() for p in model.parameters()]
    with pytest.raises(ValueError, match=r"rank 1's Sequential differs.*\('1.bias', \(3,\), 'float32'\)"):
        distributed.broadcast_parameters(model, _Stub(layouts=other))
    assert all(np.array_equal(p.numpy(), b) for p, b in zip(model.parameters(), before))


def test_one_rank_pieces_change_nothing(comm):
    from scratchgen import distributed

    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model(_inputs(8, 3))  # running statistics that differ from their initial values
    state = {name: backend.to_numpy(a).copy() for name, a in model.state_dict().items()}
    distributed.broadcast_parameters(model, comm)
    distributed.average_batch_norm_statistics(model, comm)
    for name, array in model.state_dict().items():
        assert np.array_equal(backend.to_numpy(array), state[name]), name
    backend.manual_seed(5)
    uninterrupted = backend.to_numpy(backend.rng().random(4))
    backend.manual_seed(5)
    distributed.seed_ranks(17, comm)
    assert np.array_equal(backend.to_numpy(backend.rng().random(4)), uninterrupted)  # rank 0 keeps its stream
    with pytest.raises(ValueError, match="transport must be one of"):
        distributed.Communicator(_mpi().COMM_SELF, transport="carrier pigeon")


def test_distributed_demo_on_one_rank_repeats_the_plain_run(tmp_path, capsys):
    _mpi()
    demo = load_demo("vae")  # its training draws noise: the stream must continue as without MPI
    common = ["--epochs", "1", "--limit", "200", "--hidden", "32", "--k", "2", "--quiet"]
    plain = demo.main(common + ["--out", str(tmp_path / "plain")])
    one_rank = demo.main(common + ["--out", str(tmp_path / "one"), "--distributed"])
    assert plain["history"] == one_rank["history"]


# --------------------------------------------------------------------------------------------- two ranks


def test_two_ranks_with_half_the_batch_train_as_one_process_with_all_of_it():
    results = json.loads(run_ranks(2, "-m", "mpi4py", SCRIPT).strip().splitlines()[-1])
    assert results["size"] == 2
    assert results["mlp"] < 1e-10 and results["vae"] < 1e-10  # float64, 20 Adam steps
    gan = results["gan"]
    assert gan["losses_finite"] and gan["samples_moved"] > 1e-3
    assert gan["weights_equal_on_all_ranks"] and gan["noise_differs_between_ranks"]


@pytest.mark.numpy_only("a bit-for-bit resume restores each rank's saved random state, which only NumPy's "
                        "generator can save (the ranks are told so by --backend numpy)")
def test_two_rank_vae_demo_resumes_bit_for_bit_and_only_rank_0_writes(tmp_path):
    vae = ["demos/vae.py", "--distributed", "--limit", "200", "--hidden", "32", "--batch-size", "25", "--k", "2",
           "--quiet", "--backend", "numpy"]
    whole, halves = str(tmp_path / "whole"), str(tmp_path / "halves")
    run_ranks(2, *vae, "--epochs", "2", "--out", whole)
    run_ranks(2, *vae, "--epochs", "1", "--out", halves)
    printed = run_ranks(2, *vae, "--epochs", "2", "--out", halves, "--resume")
    assert len(printed.strip().splitlines()) == 1  # rank 0's final JSON line alone
    reports = [json.load(open(os.path.join(folder, "metrics.json"))) for folder in (whole, halves)]
    for key in ("train_loss", "test_neg_elbo"):  # the random draws of both ranks continued exactly
        assert [r[key] for r in reports[0]["history"]] == [r[key] for r in reports[1]["history"]]
    checkpoint = load(os.path.join(halves, "checkpoint.npz"))
    assert checkpoint["world_size"] == 2 and len(checkpoint["rng_by_rank"]) == 2
    assert checkpoint["rng_by_rank"][0] != checkpoint["rng_by_rank"][1]
    assert not [name for name in os.listdir(halves) if name.endswith(".tmp")]

    # This process is one rank: resuming two ranks' checkpoint here is refused, saying how to resume it.
    with pytest.raises(ValueError, match=r"saved by 2 rank\(s\), and this run has 1.*mpiexec -n 2"):
        load_demo("vae").main(vae[1:] + ["--epochs", "3", "--out", halves, "--resume"])


def test_two_rank_gan_demo_trains(tmp_path):
    out = str(tmp_path / "gan")
    printed = run_ranks(2, "demos/gan.py", "--distributed", "--dataset", "ring8", "--epochs", "2",
                        "--iterations-per-epoch", "40", "--batch-size", "50", "--eval-samples", "500",
                        "--quiet", "--out", out)
    final = json.loads(printed.strip().splitlines()[-1])
    report = json.load(open(os.path.join(out, "metrics.json")))
    assert final["iterations"] == 80 and "modes" in final
    assert all(np.isfinite([r["d_loss"], r["g_loss"]]).all() for r in report["history"])


# --------------------------------------------------------------------------------------------- CuPy


def _gpus() -> int:
    try:
        with backend.use_backend("cupy"):
            return backend.xp.cuda.runtime.getDeviceCount()
    except backend.BackendError:
        return 0


@pytest.mark.parametrize("transport", ["host", "cuda-aware", "nccl"])
def test_two_ranks_on_cupy_train_as_one_process(transport):
    gpus = _gpus()
    if gpus == 0:
        pytest.skip(f"no usable GPU for the cupy backend, so the {transport} transport of CuPy arrays is not tested")
    if transport == "cuda-aware" and os.environ.get("SCRATCHGEN_MPI_CUDA_AWARE") != "1":
        pytest.skip("set SCRATCHGEN_MPI_CUDA_AWARE=1 where MPI is built with CUDA support (the mpich wheel is not)")
    # NCCL refuses two ranks on one GPU: with one GPU its communicator and Allreduce run on one rank.
    ranks = 1 if transport == "nccl" and gpus < 2 else 2
    results = json.loads(run_ranks(ranks, "-m", "mpi4py", SCRIPT, env={
        "SCRATCHGEN_BACKEND": "cupy", "SCRATCHGEN_MPI_TRANSPORT": transport}).strip().splitlines()[-1])
    assert results["mlp"] < 1e-10 and results["vae"] < 1e-10
    assert results["gan"]["losses_finite"] and results["gan"]["weights_equal_on_all_ranks"]

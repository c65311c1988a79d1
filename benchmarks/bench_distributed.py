"""Data-parallel throughput on one machine: N ranks of one BLAS thread against one process of N threads.

Two measurements, both on the embedded MNIST subset, float32:

1. The VAE demo's time per epoch (``train_seconds`` of its metrics.json over ``--epochs``: the training
   steps alone, without evaluation), run as one process with ``--threads`` BLAS threads and batch 100,
   and as ``mpiexec -n N`` ranks of one thread each with batch 100/N (the same steps: see
   scratchgen.distributed). The ratio says what MPI buys over BLAS threads on this machine; one process
   of one thread is timed too, as the baseline of both.
2. Under ``mpiexec -n N``, for the dense VAE (784-400-20), the conv VAE and the DCGAN pair: the time of a
   training step per rank, the share of it spent in the Allreduce (``DistributedOptimizer``'s own
   clock, which includes waiting for the slowest rank), the parameter count, and the compute time per
   example (the step less its Allreduce, over the rank's batch). The projection for N machines in
   docs/distributed.md uses these.

With ``--backend cupy`` the demo and the worker run on the GPU (each rank takes the GPU numbered by its
rank on the machine, modulo the GPUs there: ranks share one GPU when there is only one), and the
Allreduce goes the way ``SCRATCHGEN_MPI_TRANSPORT`` says (host, cuda-aware or nccl; host by default).

    python benchmarks/bench_distributed.py --ranks 2 --epochs 3
    python benchmarks/bench_distributed.py --ranks 2 --backend cupy
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_backend_flag, apply_backend, configure_threads, machine, synchronize  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--ranks", type=int, default=2)
parser.add_argument("--threads", type=int, default=2, help="BLAS threads of the single process")
parser.add_argument("--epochs", type=int, default=3, help="VAE demo epochs per run")
parser.add_argument("--steps", type=int, default=30, help="timed steps per model in the worker")
parser.add_argument("--worker", action="store_true", help="(internal) measure the steps under mpiexec")
add_backend_flag(parser)
args = parser.parse_args()


def mpiexec() -> str:
    """mpiexec beside this Python (the mpich wheel puts it there), else the one on the PATH."""
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else "mpiexec"


def vae_epoch_seconds(ranks: int, threads: int) -> float:
    """The VAE demo's training seconds per epoch, with ``ranks`` ranks (1: no MPI) of ``threads`` threads."""
    with tempfile.TemporaryDirectory() as out:
        demo = [sys.executable, "demos/vae.py", "--epochs", str(args.epochs), "--k", "1", "--quiet", "--out", out,
                "--backend", args.backend]
        if ranks > 1:
            demo = [mpiexec(), "-n", str(ranks)] + demo + ["--distributed", "--batch-size", str(100 // ranks)]
        env = {**os.environ, "OPENBLAS_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}
        subprocess.run(demo, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(out, "metrics.json")) as file:
            return json.load(file)["final"]["train_seconds"] / args.epochs


def worker() -> None:
    """Time training steps of three models with a DistributedOptimizer; rank 0 prints a JSON line."""
    configure_threads(1)
    apply_backend(args.backend, args.malloc)  # before distributed.init, which gives each rank its GPU
    import numpy as np

    import scratchgen as sg
    from scratchgen import distributed, optim
    from scratchgen.models.gan import DCGANDiscriminator, DCGANGenerator, GANTrainer
    from scratchgen.models.vae import ConvVAE, DenseVAE

    comm = distributed.init()
    batch = 64 // comm.size
    host = np.random.default_rng(comm.rank).random((batch, 1, 28, 28), dtype=np.float32)
    binary = sg.tensor((host < 0.3).astype(np.float32))  # made in NumPy, then copied to the active backend once
    results = {}

    def measure(name, step, optimizers, parameters):
        for _ in range(3):
            step()
        synchronize()
        for opt in optimizers:
            opt.allreduce_seconds = 0.0
        began = time.perf_counter()
        for _ in range(args.steps):
            step()
        synchronize()  # on a GPU the last steps' kernels may still be running
        seconds = (time.perf_counter() - began) / args.steps
        allreduce = sum(opt.allreduce_seconds for opt in optimizers) / args.steps
        results[name] = {"step_ms": 1e3 * seconds, "allreduce_ms": 1e3 * allreduce,
                         "allreduce_share": allreduce / seconds, "parameters": parameters,
                         "compute_ms_per_example": 1e3 * (seconds - allreduce) / batch}

    for name, model in (("dense VAE", DenseVAE()), ("conv VAE", ConvVAE())):
        distributed.broadcast_parameters(model, comm)
        opt = distributed.DistributedOptimizer(optim.Adam(model.parameters(), lr=1e-3), comm)

        def vae_step(model=model, opt=opt):
            opt.zero_grad()
            model.loss(binary).loss.backward()
            opt.step()

        measure(name, vae_step, [opt], model.num_parameters())

    generator, discriminator = DCGANGenerator(100), DCGANDiscriminator()
    players = []
    for network in (generator, discriminator):
        distributed.broadcast_parameters(network, comm)
        adam = optim.Adam(network.parameters(), 2e-4, betas=(0.5, 0.999))
        players.append(distributed.DistributedOptimizer(adam, comm))
    trainer = GANTrainer(generator, discriminator, *players)
    real = sg.tensor(host * 2 - 1)
    measure("DCGAN (D step + G step)", lambda: trainer.train_iteration(lambda: real), players,
            generator.num_parameters() + discriminator.num_parameters())
    if comm.rank == 0:
        print(json.dumps({"ranks": comm.size, "batch_per_rank": batch, "models": results}))


def main() -> None:
    one_thread = vae_epoch_seconds(1, 1)
    single = vae_epoch_seconds(1, args.threads)
    parallel = vae_epoch_seconds(args.ranks, 1)
    print(f"{machine()}; float32; backend {args.backend}; {time.strftime('%Y-%m-%d')}")
    print(f"VAE demo (dense 784-400-20, embedded MNIST, batch 100), training seconds per epoch over {args.epochs}:")
    print(f"  1 process, 1 BLAS thread:        {one_thread:.2f} s")
    print(f"  1 process, {args.threads} BLAS threads:      {single:.2f} s")
    print(f"  {args.ranks} ranks x 1 thread, batch {100 // args.ranks} each: {parallel:.2f} s   "
          f"({single / parallel:.2f}x the {args.threads}-thread process, "
          f"{one_thread / parallel:.2f}x the 1-thread one)")
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([mpiexec(), "-n", str(args.ranks), sys.executable, __file__, "--worker",
                           "--steps", str(args.steps), "--backend", args.backend], cwd=ROOT, env=env, check=True, capture_output=True, text=True)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"\nOne step on {report['ranks']} ranks, global batch 64 ({report['batch_per_rank']} per rank), "
          f"1 thread each:")
    print(f"  {'model':26s} {'parameters':>10s} {'step ms':>8s} {'Allreduce ms':>12s} {'share':>6s} "
          f"{'compute ms/example':>18s}")
    for name, r in report["models"].items():
        print(f"  {name:26s} {r['parameters']:10,d} {r['step_ms']:8.1f} {r['allreduce_ms']:12.2f} "
              f"{100 * r['allreduce_share']:5.1f}% {r['compute_ms_per_example']:18.2f}")


if __name__ == "__main__":
    worker() if args.worker else main()

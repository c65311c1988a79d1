"""The checks of scratchgen.distributed that need several ranks, run by tests/test_distributed.py as

    mpiexec -n 2 python -m mpi4py tests/mpi_scripts/data_parallel.py

(``-m mpi4py`` makes an exception on one rank abort them all, instead of leaving the others waiting in a
collective). Rank 0 prints one JSON line, which the test reads:

* ``mlp``, ``vae``: the largest difference between the parameters of N ranks with batch B/N each and of
  one process with batch B, after 20 Adam steps in float64 (the reference is trained on every rank,
  without MPI, from the same broadcast weights and on the same rows);
* ``gan``: a two-rank GAN's losses (finite?), whether its samples moved, and whether the ranks' weights
  are still identical.
"""

import json

import numpy as np

from scratchgen import backend, distributed, nn, optim, tensor
from scratchgen.data import DataLoader, ring8_mixture
from scratchgen.models.gan import GANTrainer, MLPDiscriminator, MLPGenerator
from scratchgen.models.vae import DenseVAE

BATCH, STEPS, ROWS = 16, 20, 100  # 100 rows: 7 batches an epoch, the last of 4 (2 on each of 2 ranks)


def as_float64(module):
    for _, p in module.named_parameters():
        p.data = p.data.astype(np.float64)
    return module


def batches(loader):
    """``loader``'s batches for STEPS steps, over as many epochs as it takes."""
    stream = loader.endless()
    return [next(stream) for _ in range(STEPS)]


def max_difference_to_one_process(comm, build, loss, arrays) -> float:
    """Train ``build()`` for STEPS Adam steps data-parallel, and a copy of it in this process alone on the
    whole batches; the largest difference between their parameters.

    Args:
        loss: (model, batch tensors, step, rows) -> scalar loss; ``rows`` picks this part's rows of the
            step's global batch (for noise drawn per global row).
    """
    backend.manual_seed(100 + comm.rank)  # different initial weights on each rank, until the broadcast
    model = as_float64(build())
    distributed.broadcast_parameters(model, comm)
    reference = as_float64(build())
    reference.load_state_dict(model.state_dict())

    opt = distributed.DistributedOptimizer(optim.Adam(model.parameters(), lr=1e-2), comm)
    sharded = DataLoader(*arrays, batch_size=BATCH // comm.size, shuffle=True, seed=7, shard=(comm.rank, comm.size))
    for step, batch in enumerate(batches(sharded)):
        opt.zero_grad()
        loss(model, batch, step, slice(comm.rank, None, comm.size)).backward()
        opt.step()

    reference_opt = optim.Adam(reference.parameters(), lr=1e-2)
    for step, batch in enumerate(batches(DataLoader(*arrays, batch_size=BATCH, shuffle=True, seed=7))):
        reference_opt.zero_grad()
        loss(reference, batch, step, slice(None)).backward()
        reference_opt.step()
    return max(float(np.abs(p.numpy() - q.numpy()).max())
               for p, q in zip(model.parameters(), reference.parameters()))


def check_mlp(comm) -> float:
    data = np.random.default_rng(0)
    x, y = data.standard_normal((ROWS, 8)), data.standard_normal((ROWS, 1))

    def build():
        return nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1))

    def loss(model, batch, step, rows):
        x, y = batch
        return ((model(x) - y) ** 2).mean()

    return max_difference_to_one_process(comm, build, loss, (x, y))


def check_vae(comm) -> float:
    x = (np.random.default_rng(1).random((ROWS, 1, 28, 28)) < 0.3).astype(np.float64)

    def build():
        return DenseVAE(hidden=32, latent_dim=4)

    def loss(model, batch, step, rows):
        # The noise of the whole global batch, drawn alike everywhere; each part takes its rows of it,
        # as the sharded loader takes its rows of the global batch (every size-th, from its rank).
        (x,) = batch
        global_rows = len(x) * (rows.step or 1)
        eps = np.random.default_rng(step).standard_normal((global_rows, 4))[rows]
        return model.loss(x, eps=eps).loss

    return max_difference_to_one_process(comm, build, loss, (x,))


def check_gan(comm) -> dict:
    backend.manual_seed(0)
    generator, discriminator = MLPGenerator(2, (2,)), MLPDiscriminator((2,))
    for network in (generator, discriminator):
        distributed.broadcast_parameters(network, comm)
    players = [distributed.DistributedOptimizer(optim.Adam(network.parameters(), 1e-3, betas=(0.5, 0.999)), comm)
               for network in (generator, discriminator)]  # one per player
    trainer = GANTrainer(generator, discriminator, *players)
    distributed.seed_ranks(0, comm)  # each rank its own noise and real samples
    mixture = ring8_mixture()
    fixed = tensor(np.random.default_rng(5).standard_normal((64, 2), dtype=np.float32))
    before = trainer.sample(64, noise=fixed).numpy()
    losses = []
    for _ in range(30):
        stats = trainer.train_iteration(lambda: tensor(mixture.sample(32)))
        losses += [stats["d_loss"].item(), stats["g_loss"].item()]
    after = trainer.sample(64, noise=fixed).numpy()
    weights = float(sum(np.abs(p.numpy()).sum() for p in generator.parameters() + discriminator.parameters()))
    return {"losses_finite": bool(np.isfinite(losses).all()), "samples_moved": float(np.abs(after - before).max()),
            "weights_equal_on_all_ranks": len(set(comm.allgather(weights))) == 1,
            "noise_differs_between_ranks": len(set(comm.allgather(float(trainer.noise(1).numpy()[0, 0])))) == comm.size}


if __name__ == "__main__":
    comm = distributed.init()
    results = {"size": comm.size, "mlp": check_mlp(comm), "vae": check_vae(comm), "gan": check_gan(comm)}
    if comm.rank == 0:
        print(json.dumps(results), flush=True)

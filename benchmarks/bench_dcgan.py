"""One DCGAN training step on 28×28 images (forward, backward, Adam), batch 64, float32.

The models are the small DCGAN of the GAN lecture (Radford et al. 2016, sized for MNIST):

* discriminator: Conv 1→32 k4 s2 p1, LeakyReLU(0.2), Conv 32→64 k4 s2 p1, LeakyReLU(0.2), Flatten,
  Linear 64·7·7→1;
* generator: Linear 100→128·7·7, BatchNorm1d, ReLU, (128, 7, 7), ConvTranspose 128→64 k4 s2 p1,
  BatchNorm2d, ReLU, ConvTranspose 64→1 k4 s2 p1, tanh.

"D step": BCE-with-logits of D on a batch of 64 images against their labels, backward, Adam on D.
"G step": the generator's non-saturating loss, BCE-with-logits of D(G(z)) against "real", backward
through a frozen D into G, Adam on G.
"GP step": a WGAN-GP critic step with D as the critic (Gulrajani et al. 2017): E[D(fake)] − E[D(real)]
+ λ·E[(‖∇ₓD(x̂)‖ − 1)²] on 64 real and 64 fake images and 64 points x̂ between them, the input gradient
taken with create_graph, then backward through it (a double backward through both convolutions) and
Adam on D.

Each is timed for scratchgen and, when it is installed, for PyTorch on the CPU with the same model,
dtype and thread count. The table gives the median step time and the peak memory that scratchgen's
arrays take during a step (tracemalloc sees NumPy's allocations, not PyTorch's, and not a GPU's: with
``--backend cupy`` scratchgen runs on the GPU, PyTorch stays on the CPU, and memory is not measured).

    python benchmarks/bench_dcgan.py --threads 2
    python benchmarks/bench_dcgan.py --backend cupy
"""

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (HOST_MEMORY_NOTE, add_backend_flag, add_times_flag, apply_backend,  # noqa: E402
                    configure_threads, host_memory_measured, host_reads_line, interleaved_times, machine,
                    save_times, try_import_torch)

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--repeats", type=int, default=30)
parser.add_argument("--only", choices=("scratchgen", "pytorch"),
                    help="time one library alone (interleaving two in one process slows both unevenly)")
add_backend_flag(parser)
add_times_flag(parser)
args = parser.parse_args()
configure_threads(args.threads)
backend_line = apply_backend(args.backend, args.malloc)

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import scratchgen as sg  # noqa: E402
from scratchgen import nn  # noqa: E402
from scratchgen.nn import functional as F  # noqa: E402

BATCH, LATENT = 64, 100
rng = np.random.default_rng(0)
images_host = rng.uniform(-1, 1, (BATCH, 1, 28, 28)).astype(np.float32)
fakes_host = rng.uniform(-1, 1, (BATCH, 1, 28, 28)).astype(np.float32)
between = rng.random((BATCH, 1, 1, 1), dtype=np.float32)
mixed_host = between * images_host + (1 - between) * fakes_host  # x̂ = εx + (1 − ε)G(z)
labels_host = (rng.random((BATCH, 1)) < 0.5).astype(np.float32)
noise_host = rng.standard_normal((BATCH, LATENT), dtype=np.float32)


def build(nn, unflatten):
    """The two models, written once for both libraries (their layer names are the same; only
    Unflatten's arguments differ, so it comes made)."""
    discriminator = nn.Sequential(
        nn.Conv2d(1, 32, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
        nn.Conv2d(32, 64, 4, stride=2, padding=1), nn.LeakyReLU(0.2),
        nn.Flatten(), nn.Linear(64 * 7 * 7, 1),
    )
    generator = nn.Sequential(
        nn.Linear(LATENT, 128 * 7 * 7), nn.BatchNorm1d(128 * 7 * 7), nn.ReLU(), unflatten,
        nn.ConvTranspose2d(128, 64, 4, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.ConvTranspose2d(64, 1, 4, stride=2, padding=1), nn.Tanh(),
    )
    return discriminator, generator


def steps(nn_module, unflatten, tensor, bce, adam, grad, leaf):
    """(D step, G step, GP step) closures for one library; ``tensor`` makes one of its tensors from a NumPy
    array (for scratchgen, on the active backend: done once here, outside the timed steps), ``grad`` is its
    autograd.grad and ``leaf`` makes of such a tensor a new leaf that requires a gradient."""
    discriminator, generator = build(nn_module, unflatten)
    opt_d = adam(discriminator.parameters())
    opt_g = adam(generator.parameters())
    images, labels, noise, fakes = tensor(images_host), tensor(labels_host), tensor(noise_host), tensor(fakes_host)
    real, mixed_data = tensor(np.ones((BATCH, 1), np.float32)), tensor(mixed_host)

    def d_step():
        opt_d.zero_grad()
        loss = bce(discriminator(images), labels)
        loss.backward()
        opt_d.step()

    def g_step():
        for p in discriminator.parameters():  # D is a fixed judge here: no gradient for its weights
            p.requires_grad = False
        opt_g.zero_grad()
        loss = bce(discriminator(generator(noise)), real)
        loss.backward()
        opt_g.step()
        for p in discriminator.parameters():
            p.requires_grad = True

    def gp_step():
        opt_d.zero_grad()
        mixed = leaf(mixed_data)  # a fresh leaf on the same array: no copy from the host
        (slopes,) = grad(discriminator(mixed).sum(), mixed, create_graph=True)
        norms = ((slopes * slopes).sum((1, 2, 3)) + 1e-12) ** 0.5
        loss = discriminator(fakes).mean() - discriminator(images).mean() + 10.0 * ((norms - 1) ** 2).mean()
        loss.backward()
        opt_d.step()

    return d_step, g_step, gp_step


def peak_memory_mb(step) -> float:
    """Peak bytes allocated through Python's allocator (NumPy's arrays included) during one step, in MB."""
    step()
    tracemalloc.start()
    step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


sg.manual_seed(0)
results = {}
if args.only != "pytorch":
    results["scratchgen"] = steps(
        nn, nn.Unflatten((128, 7, 7)), sg.tensor, F.binary_cross_entropy_with_logits,
        lambda params: sg.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999)),
        sg.grad, lambda t: sg.Tensor(t.data, requires_grad=True),
    )
torch = None if args.only == "scratchgen" else try_import_torch(args.threads)
if torch is not None:
    torch.manual_seed(0)
    results[f"PyTorch {torch.__version__} CPU"] = steps(
        torch.nn, torch.nn.Unflatten(1, (128, 7, 7)), torch.from_numpy,
        torch.nn.functional.binary_cross_entropy_with_logits,
        lambda params: torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999)),
        torch.autograd.grad, lambda t: t.detach().requires_grad_(),
    )

STEPS = ("D", "G", "GP")
named_steps = {(library, which): step for library, all_steps in results.items() for which, step in zip(STEPS, all_steps)}
timings = interleaved_times(named_steps, warmup=5, repeats=args.repeats)
save_times(args.times_json, timings)
print(f"DCGAN training step, batch {BATCH}, 28×28, float32, {args.threads} threads, {machine()}, "
      f"backend {sg.get_backend()}, {time.strftime('%Y-%m-%d')}")
print(f"  {backend_line}")
if "scratchgen" in results and not host_memory_measured(args.backend):
    print(f"  {HOST_MEMORY_NOTE}")
print(f"  {'median (min) per step':<26} {'D step':>18} {'G step':>18} {'GP step':>18}   {'peak memory D / G / GP':>22}")
for library, all_steps in results.items():
    memory = "(not traced)"
    if library == "scratchgen" and host_memory_measured(args.backend):
        memory = " / ".join(f"{peak_memory_mb(step):.1f}" for step in all_steps) + " MB"
    cells = (f"{timings[library, which][0]:7.2f} ({timings[library, which][1]:6.2f}) ms" for which in STEPS)
    print(f"  {library:<26} " + " ".join(f"{cell:>18}" for cell in cells) + f"   {memory:>22}")
if len(results) == 2:  # both libraries
    theirs = list(results)[1]
    ratios = {which: [timings["scratchgen", which][i] / timings[theirs, which][i] for i in (0, 1)] for which in STEPS}
    print("  scratchgen / PyTorch, median (min): "
          + ", ".join(f"{which} {ratios[which][0]:.2f}x ({ratios[which][1]:.2f}x)" for which in STEPS))
if args.backend == "strict" and "scratchgen" in results:
    print(f"  {host_reads_line(dict(zip(STEPS, results['scratchgen'])))}")

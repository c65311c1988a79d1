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
dtype and thread count. The D step is also timed written out by hand in NumPy, every derivative by hand
and no autograd (the floor: as fast as this step runs on NumPy's operations), as ``bench_mlp.py`` does for
the MLP; its gradients are checked against scratchgen's before the timing. The table gives the median step
time and the peak memory that scratchgen's arrays take during a step (tracemalloc sees NumPy's
allocations, not PyTorch's, and not a GPU's: with ``--backend cupy`` scratchgen runs on the GPU, PyTorch
stays on the CPU, and memory is not measured).

    python benchmarks/bench_dcgan.py --threads 2
    python benchmarks/bench_dcgan.py --backend cupy
"""

import argparse
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (HOST_MEMORY_NOTE, adam_by_hand, add_backend_flag, add_times_flag,  # noqa: E402
                    apply_backend, configure_threads, floor_label, host_memory_measured, host_reads_line,
                    interleaved_times, machine, save_times, try_import_torch)

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--repeats", type=int, default=30)
parser.add_argument("--only", choices=("numpy", "scratchgen", "pytorch"),
                    help="time one contender alone (interleaving them in one process slows each unevenly); "
                         "numpy: the hand-written D step")
add_backend_flag(parser)
add_times_flag(parser)
args = parser.parse_args()
configure_threads(args.threads)
backend_line = apply_backend(args.backend, args.malloc)

import numpy as np  # noqa: E402
from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import scratchgen as sg  # noqa: E402
from scratchgen import backend, nn  # noqa: E402
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


FLOOR = floor_label(args.backend)


def numpy_d_step(discriminator):
    """The D step in plain NumPy, every derivative written by hand, from ``discriminator``'s weights (a
    scratchgen model of :func:`build`, on the CPU): what this step costs with no autograd, no checks and
    the layouts chosen for speed, so that scratchgen's time can be read against what NumPy itself allows.

    The images are kept channels-last, (N, H, W, C), so that a convolution's columns are one copy of a
    strided view (each row: the 4×4 window's pixels, C channels each) and its weight gradient and input
    gradient are one matrix product each, as in im2col; the input gradient is added back window tap by
    window tap (col2im). The linear layer's weight is permuted once to that flattening order. Returns
    ``step`` and ``gradients``: ``gradients()`` gives the loss and the gradients in scratchgen's layout,
    for the check against scratchgen's own backward.
    """
    conv1, _, conv2, _, _, linear = discriminator
    # Weights as matrices whose rows follow a window's (kh, kw, C) order: (kh·kw·C_in, C_out).
    w1 = np.ascontiguousarray(conv1.weight.data.transpose(2, 3, 1, 0).reshape(16, 32))
    w2 = np.ascontiguousarray(conv2.weight.data.transpose(2, 3, 1, 0).reshape(16 * 32, 64))
    w3 = np.ascontiguousarray(linear.weight.data.reshape(64, 7, 7).transpose(1, 2, 0).reshape(7 * 7 * 64, 1))
    b1, b2, b3 = (layer.bias.data.copy() for layer in (conv1, conv2, linear))
    params = [w1, b1, w2, b2, w3, b3]
    exp_avg = [np.zeros_like(p) for p in params]
    exp_avg_sq = [np.zeros_like(p) for p in params]
    count = [0]
    frame1 = np.zeros((BATCH, 30, 30, 1), np.float32)  # padded frames: the borders stay zero
    frame2 = np.zeros((BATCH, 16, 16, 32), np.float32)
    images = images_host.transpose(0, 2, 3, 1)

    def columns(frame):
        """(N·7·7 or N·14·14, 16·C): each row one 4×4 window of stride 2, in (kh, kw, C) order."""
        windows = sliding_window_view(frame, (4, 4), axis=(1, 2))[:, ::2, ::2]  # (N, OH, OW, C, 4, 4)
        n, oh, ow, c = windows.shape[:4]
        return windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * oh * ow, 16 * c)

    def slope(h):
        """LeakyReLU's derivative, 1 where h > 0 and 0.2 elsewhere (a product: NumPy's where() is slow)."""
        s = (h > 0).astype(np.float32)
        s *= 0.8
        s += 0.2
        return s

    def forward_backward():
        frame1[:, 1:29, 1:29] = images
        cols1 = columns(frame1)
        h1 = cols1 @ w1 + b1  # (N·14·14, 32)
        frame2[:, 1:15, 1:15] = np.maximum(h1, 0.2 * h1).reshape(BATCH, 14, 14, 32)
        cols2 = columns(frame2)
        h2 = cols2 @ w2 + b2  # (N·7·7, 64)
        a2 = np.maximum(h2, 0.2 * h2).reshape(BATCH, 7 * 7 * 64)
        z = a2 @ w3 + b3
        loss = (np.maximum(z, 0) + np.log(1 + np.exp(-np.abs(z))) - z * labels_host).mean()
        dz = (0.5 * (1 + np.tanh(0.5 * z)) - labels_host) / BATCH  # d loss / dz = (σ(z) − y) / N
        dh2 = (dz @ w3.T).reshape(BATCH * 49, 64) * slope(h2)
        dcols2 = (dh2 @ w2.T).reshape(BATCH, 7, 7, 4, 4, 32)
        dframe2 = np.zeros_like(frame2)
        for i in range(4):  # col2im: each window tap adds its share back where it was read
            for j in range(4):
                dframe2[:, i:i + 14:2, j:j + 14:2] += dcols2[:, :, :, i, j]
        dh1 = dframe2[:, 1:15, 1:15].reshape(BATCH * 196, 32) * slope(h1)
        grads = [cols1.T @ dh1, dh1.sum(0), cols2.T @ dh2, dh2.sum(0), a2.T @ dz, dz.sum(0)]
        return loss, grads

    def step():
        _, grads = forward_backward()
        count[0] += 1
        adam_by_hand(params, grads, exp_avg, exp_avg_sq, count[0], lr=2e-4, betas=(0.5, 0.999))

    def gradients():
        loss, (g1, gb1, g2, gb2, g3, gb3) = forward_backward()
        return loss, [g1.reshape(4, 4, 1, 32).transpose(3, 2, 0, 1), gb1,
                      g2.reshape(4, 4, 32, 64).transpose(3, 2, 0, 1), gb2,
                      g3.reshape(7, 7, 64).transpose(2, 0, 1).reshape(1, 7 * 7 * 64), gb3]

    return step, gradients


def checked_floor():
    """The hand-written D step, from the initial weights scratchgen's own contender starts from (seed 0),
    after checking that its loss and gradients are scratchgen's: else the floor would time some other
    computation."""
    sg.manual_seed(0)
    discriminator, _ = build(nn, nn.Unflatten((128, 7, 7)))
    step, gradients = numpy_d_step(discriminator)
    loss = F.binary_cross_entropy_with_logits(discriminator(sg.tensor(images_host)), sg.tensor(labels_host))
    loss.backward()
    by_library = [backend.to_numpy(loss), *(backend.to_numpy(p.grad) for p in discriminator.parameters())]
    hand_loss, hand_grads = gradients()
    names = ("loss", "conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "linear.weight", "linear.bias")
    for name, library, by_hand in zip(names, by_library, [hand_loss, *hand_grads]):
        error = np.abs(library - by_hand).max() / max(np.abs(library).max(), 1e-12)
        if error > 1e-4:
            sys.exit(f"the hand-written D step disagrees with scratchgen's on {name}: relative error {error:.1e}")
    return step


def peak_memory_mb(step) -> float:
    """Peak bytes allocated through Python's allocator (NumPy's arrays included) during one step, in MB."""
    step()
    tracemalloc.start()
    step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


results = {}  # library: its (D step, G step, GP step), or only its D step for the hand-written floor
if args.only in (None, "numpy"):
    with sg.use_backend("numpy"):  # the floor runs on the CPU whatever scratchgen's backend
        results[FLOOR] = (checked_floor(),)
sg.manual_seed(0)
if args.only in (None, "scratchgen"):
    results["scratchgen"] = steps(
        nn, nn.Unflatten((128, 7, 7)), sg.tensor, F.binary_cross_entropy_with_logits,
        lambda params: sg.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999)),
        sg.grad, lambda t: sg.Tensor(t.data, requires_grad=True),
    )
torch = try_import_torch(args.threads) if args.only in (None, "pytorch") else None
if torch is not None:
    torch.manual_seed(0)
    results[f"PyTorch {torch.__version__} CPU"] = steps(
        torch.nn, torch.nn.Unflatten(1, (128, 7, 7)), torch.from_numpy,
        torch.nn.functional.binary_cross_entropy_with_logits,
        lambda params: torch.optim.Adam(params, lr=2e-4, betas=(0.5, 0.999)),
        torch.autograd.grad, lambda t: t.detach().requires_grad_(),
    )

STEPS = ("D", "G", "GP")
named_steps = {(library, which): step
               for library, all_steps in results.items() for which, step in zip(STEPS, all_steps)}
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
    cells = (f"{timings[library, which][0]:7.2f} ({timings[library, which][1]:6.2f}) ms"
             if (library, which) in timings else "—" for which in STEPS)
    print(f"  {library:<26} " + " ".join(f"{cell:>18}" for cell in cells) + f"   {memory:>22}")


def ratio_line(ours: str, theirs: str, label: str) -> str:
    """'label, median (min): D 1.23x (1.31x), ...' over the steps that both contenders ran."""
    shared = [which for which in STEPS if (ours, which) in timings and (theirs, which) in timings]
    return f"  {label}, median (min): " + ", ".join(
        f"{which} {timings[ours, which][0] / timings[theirs, which][0]:.2f}x "
        f"({timings[ours, which][1] / timings[theirs, which][1]:.2f}x)" for which in shared)


pytorch = f"PyTorch {torch.__version__} CPU" if torch is not None else None
if "scratchgen" in results and pytorch:
    print(ratio_line("scratchgen", pytorch, "scratchgen / PyTorch"))
if FLOOR in results and pytorch:
    print(ratio_line(FLOOR, pytorch, "hand-written NumPy / PyTorch"))
if FLOOR in results and "scratchgen" in results:
    print(ratio_line("scratchgen", FLOOR, "scratchgen / hand-written NumPy"))
if args.backend == "strict" and "scratchgen" in results:
    print(f"  {host_reads_line(dict(zip(STEPS, results['scratchgen'])))}")

"""The convolutional models' steps beside PyTorch's: PixelCNN and conv autoencoder training, conv VAE evaluation.

* PixelCNN step: the demo's model (7×7 type-A masked conv 1→32, five residual 3×3 type-B masked convs
  32→32, ReLU, 1×1, ReLU, 1×1 head) on 64 binary 28×28 images: binary cross-entropy of every pixel,
  backward, Adam.
* conv AE step: :class:`~scratchgen.models.ConvAutoencoder` (conv 1→32 and 32→64, k3 s2, a 32-number
  code, transposed convs back) on 64 images: cross-entropy, backward, Adam.
* conv VAE evaluation: one chunk of the importance-sampled likelihood as
  :func:`~scratchgen.models.vae.importance_sampled_nll` cuts it, :meth:`ConvVAE.iwae_bound` of 5 test
  images with k = 500 codes each (2,500 decodes), no gradient; the demo's evaluation of 1,000 test images
  is 200 such chunks.

PyTorch's models are the same layers, initialised by its own defaults, with its masks applied as the
weight times the mask in every forward (the usual way to write a masked convolution in PyTorch).

For each step the table gives the median (min) time over interleaved rounds, the FLOPs of its
convolutions and linear layers (forward 2·N·O·OH·OW·C·kh·kw for a convolution; a training step adds the
input and weight gradients, twice that, except for the input gradient of the first layer), the time
those FLOPs take at this machine's measured float32 matrix-product speed (the "FLOP limit"), and the peak
memory one step adds to the process: by tracemalloc (NumPy's arrays, scratchgen only) and by the
resident-set high-water mark (both libraries, the same measure: Linux only). Last, scratchgen's PixelCNN
step on one 4×4 image: what its autograd, layers and NumPy calls cost per step, apart from the arithmetic.

With ``--backend cupy`` scratchgen's steps run on the GPU (PyTorch's stay on the CPU), the FLOP limit of
scratchgen's rows is the GPU's measured matrix-product speed, and scratchgen's memory is not measured
(both measures see host memory only).

    python benchmarks/bench_conv.py --threads 2
    python benchmarks/bench_conv.py --layers      # each conv layer on the im2col and the shifted path
    python benchmarks/bench_conv.py --backend cupy
"""

import argparse
import ctypes
import math
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (HOST_MEMORY_NOTE, add_backend_flag, add_times_flag, apply_backend,  # noqa: E402
                    configure_threads, host_memory_measured, host_reads_line, interleaved_times, machine,
                    save_times, synchronize, try_import_torch)

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--repeats", type=int, default=10)
parser.add_argument("--steps", default="pixelcnn,conv_ae,conv_vae_eval",
                    help="comma-separated subset of pixelcnn, conv_ae, conv_vae_eval")
parser.add_argument("--only", choices=("scratchgen", "pytorch"),
                    help="time one library alone (interleaving two in one process slows both unevenly)")
parser.add_argument("--layers", action="store_true",
                    help="instead: each layer of these models, forward and backward, on the im2col and the "
                         "shifted path (what conv2d's method='auto' chooses from)")
add_backend_flag(parser)
add_times_flag(parser)
args = parser.parse_args()
configure_threads(args.threads)
backend_line = apply_backend(args.backend, args.malloc)

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import scratchgen as sg  # noqa: E402
from scratchgen.models import ConvAutoencoder, ConvVAE, PixelCNN  # noqa: E402
from scratchgen.nn import functional as F  # noqa: E402
from scratchgen.nn.masked import conv_mask  # noqa: E402

BATCH, EVAL_IMAGES, K = 64, 5, 500
rng = np.random.default_rng(0)
binary = (rng.random((BATCH, 1, 28, 28)) < 0.2).astype(np.float32)
grey = rng.random((BATCH, 1, 28, 28), dtype=np.float32)
eval_images = (rng.random((EVAL_IMAGES, 1, 28, 28)) < 0.2).astype(np.float32)
eval_noise = rng.standard_normal((K, EVAL_IMAGES, 20), dtype=np.float32)


def conv_flops(n, c, o, out_hw, kernel):
    return 2 * n * o * out_hw[0] * out_hw[1] * c * kernel[0] * kernel[1]


def training_flops(layers):
    """Forward, input gradient (not for the first layer) and weight gradient of each layer's product."""
    return sum(f * (2 if i == 0 else 3) for i, f in enumerate(layers))


FLOPS = {
    "pixelcnn": training_flops(
        [conv_flops(BATCH, 1, 32, (28, 28), (7, 7))] + [conv_flops(BATCH, 32, 32, (28, 28), (3, 3))] * 5
        + [conv_flops(BATCH, 32, 32, (28, 28), (1, 1)), conv_flops(BATCH, 32, 1, (28, 28), (1, 1))]),
    "conv_ae": training_flops([
        conv_flops(BATCH, 1, 32, (14, 14), (3, 3)), conv_flops(BATCH, 32, 64, (7, 7), (3, 3)),
        2 * BATCH * 3136 * 32, 2 * BATCH * 32 * 3136,
        conv_flops(BATCH, 32, 64, (7, 7), (3, 3)), conv_flops(BATCH, 1, 32, (14, 14), (3, 3))]),  # transposed
    "conv_vae_eval": (conv_flops(EVAL_IMAGES, 1, 32, (14, 14), (4, 4)) + conv_flops(EVAL_IMAGES, 32, 64, (7, 7), (4, 4))
                      + 2 * EVAL_IMAGES * (3136 * 256 + 256 * 40)
                      + K * EVAL_IMAGES * 2 * (20 * 256 + 256 * 3136)
                      + conv_flops(K * EVAL_IMAGES, 32, 64, (7, 7), (4, 4))
                      + conv_flops(K * EVAL_IMAGES, 1, 32, (14, 14), (4, 4))),
}


# ---------------------------------------------------------------------------------------- scratchgen


def pixelcnn_training_step(images):
    """A PixelCNN of the demo's size and its Adam, and the step that trains it on ``images`` (a NumPy
    array of binary images, copied to the active backend once, here)."""
    pixelcnn = PixelCNN()
    opt = sg.optim.Adam(pixelcnn.parameters(), lr=1e-3)
    x = sg.tensor(images)

    def pixelcnn_step():
        opt.zero_grad()
        F.binary_cross_entropy_with_logits(pixelcnn(x), x).backward()
        opt.step()

    return pixelcnn_step


def scratchgen_steps():
    sg.manual_seed(0)
    pixelcnn_step = pixelcnn_training_step(binary)
    autoencoder, vae = ConvAutoencoder(), ConvVAE()
    opt_a = sg.optim.Adam(autoencoder.parameters(), lr=1e-3)
    x_grey = sg.tensor(grey)
    x_eval, noise = sg.tensor(eval_images), sg.tensor(eval_noise)
    vae.eval()

    def conv_ae_step():
        opt_a.zero_grad()
        F.binary_cross_entropy_with_logits(autoencoder(x_grey), x_grey).backward()
        opt_a.step()

    def conv_vae_eval():
        with sg.no_grad():
            vae.iwae_bound(x_eval, K, eps=noise).sum().item()

    return {"pixelcnn": pixelcnn_step, "conv_ae": conv_ae_step, "conv_vae_eval": conv_vae_eval}


def pixelcnn_fixed_cost_ms(repeats: int = 200) -> float:
    """Median ms of scratchgen's PixelCNN step on one 4×4 image, where the arithmetic costs next to nothing:
    what the autograd, the layers and NumPy's calls cost per step whatever the size of the arrays. The rest
    of a step's time is NumPy's own work on the arrays."""
    sg.manual_seed(0)
    step = pixelcnn_training_step(binary[:1, :, :4, :4])
    return interleaved_times({"tiny": step}, warmup=5, repeats=repeats)["tiny"][0]


# ---------------------------------------------------------------------------------------- PyTorch


def torch_steps(torch):
    nn, tF = torch.nn, torch.nn.functional
    torch.manual_seed(0)

    class MaskedConv2d(nn.Conv2d):
        def __init__(self, cin, cout, k, mask_type):
            super().__init__(cin, cout, k, padding=k // 2)
            self.register_buffer("mask", torch.from_numpy(conv_mask(mask_type, (k, k), cout, cin)))

        def forward(self, x):
            return tF.conv2d(x, self.weight * self.mask, self.bias, padding=self.padding)

    class TorchPixelCNN(nn.Module):
        def __init__(self):
            super().__init__()
            self.input_conv = MaskedConv2d(1, 32, 7, "A")
            self.blocks = nn.ModuleList(MaskedConv2d(32, 32, 3, "B") for _ in range(5))
            self.head = nn.Sequential(nn.ReLU(), nn.Conv2d(32, 32, 1), nn.ReLU(), nn.Conv2d(32, 1, 1))

        def forward(self, x):
            h = self.input_conv(x)
            for block in self.blocks:
                h = h + block(torch.relu(h))
            return self.head(h)

    pixelcnn = TorchPixelCNN()
    autoencoder = nn.Sequential(
        nn.Conv2d(1, 32, 3, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.ReLU(), nn.Flatten(), nn.Linear(3136, 32),
        nn.Linear(32, 3136), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
        nn.ConvTranspose2d(64, 32, 3, 2, 1, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 3, 2, 1, 1),
    )
    encoder = nn.Sequential(nn.Conv2d(1, 32, 4, 2, 1), nn.ReLU(), nn.Conv2d(32, 64, 4, 2, 1), nn.ReLU(),
                            nn.Flatten(), nn.Linear(3136, 256), nn.ReLU(), nn.Linear(256, 40))
    decoder = nn.Sequential(nn.Linear(20, 256), nn.ReLU(), nn.Linear(256, 3136), nn.ReLU(), nn.Unflatten(1, (64, 7, 7)),
                            nn.ConvTranspose2d(64, 32, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(32, 1, 4, 2, 1))
    opt_p = torch.optim.Adam(pixelcnn.parameters(), lr=1e-3)
    opt_a = torch.optim.Adam(autoencoder.parameters(), lr=1e-3)
    x_binary, x_grey = torch.from_numpy(binary), torch.from_numpy(grey)
    x_eval, noise = torch.from_numpy(eval_images), torch.from_numpy(eval_noise)

    def pixelcnn_step():
        opt_p.zero_grad()
        tF.binary_cross_entropy_with_logits(pixelcnn(x_binary), x_binary).backward()
        opt_p.step()

    def conv_ae_step():
        opt_a.zero_grad()
        tF.binary_cross_entropy_with_logits(autoencoder(x_grey), x_grey).backward()
        opt_a.step()

    def log_normal(z, mu, logvar):
        return (-0.5 * ((z - mu) ** 2 / logvar.exp() + logvar + math.log(2 * math.pi))).sum(-1)

    def conv_vae_eval():
        with torch.no_grad():
            mu, logvar = encoder(x_eval).chunk(2, dim=1)
            z = mu + (0.5 * logvar).exp() * noise  # (K, N, 20)
            logits = decoder(z.reshape(-1, 20)).reshape((K,) + x_eval.shape)
            target = x_eval.expand_as(logits)
            log_px = -tF.binary_cross_entropy_with_logits(logits, target, reduction="none").sum((2, 3, 4))
            log_w = log_px + log_normal(z, torch.zeros(()), torch.zeros(())) - log_normal(z, mu, logvar)
            (torch.logsumexp(log_w, 0) - math.log(K)).sum().item()

    return {"pixelcnn": pixelcnn_step, "conv_ae": conv_ae_step, "conv_vae_eval": conv_vae_eval}


# ---------------------------------------------------------------------------------------- measures


def sgemm_gflops(xp=np) -> float:
    """A float32 matrix-product speed: the best of five 2048² products with array module ``xp``, in
    GFLOP/s: NumPy's on the CPU, or scratchgen's active backend's (``sg.backend.xp``), the GPU's on cupy."""
    a = xp.asarray(rng.standard_normal((2048, 2048), dtype=np.float32))
    a @ a  # the first product on a GPU loads its kernel
    best = min(_timed(lambda: a @ a) for _ in range(5))
    return 2 * 2048**3 / best / 1e9


def _timed(step) -> float:
    start = time.perf_counter()
    step()
    synchronize()
    return time.perf_counter() - start


def traced_peak_mb(step) -> float:
    """Peak bytes allocated through Python's allocator (NumPy's arrays) during one step, in MB."""
    tracemalloc.start()
    step()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def _status_mb(key: str) -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith(key)) / 1024


def resident_peak_mb(step) -> float | None:
    """How far one step raises the resident set above where it started, in MB, for any library.

    Frees what the allocator holds (malloc_trim), resets the kernel's high-water mark (clear_refs 5), runs
    the step and reads the mark (VmHWM). None where /proc or glibc is missing.
    """
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
        start = _status_mb("VmRSS")
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        step()
        return _status_mb("VmHWM") - start
    except (OSError, StopIteration):
        return None


# ---------------------------------------------------------------------------------------- layers

B_TAPS = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
A_TAPS = [(i, j) for i in range(7) for j in range(7) if i < 3 or (i == 3 and j < 3)]
# name, transposed, (N, C_in, H, W), C_out, kernel, stride, padding, output_padding, taps
LAYERS = [
    ("PixelCNN 7x7 type A 1->32", False, (BATCH, 1, 28, 28), 32, 7, 1, 3, 0, A_TAPS),
    ("PixelCNN 3x3 type B 32->32", False, (BATCH, 32, 28, 28), 32, 3, 1, 1, 0, B_TAPS),
    ("PixelCNN 1x1 32->32", False, (BATCH, 32, 28, 28), 32, 1, 1, 0, 0, None),
    ("DCGAN D conv 32->64 k4 s2", False, (BATCH, 32, 14, 14), 64, 4, 2, 1, 0, None),
    ("DCGAN G convT 128->64 k4 s2", True, (BATCH, 128, 7, 7), 64, 4, 2, 1, 0, None),
    ("conv AE conv 32->64 k3 s2", False, (BATCH, 32, 14, 14), 64, 3, 2, 1, 0, None),
    ("conv AE convT 64->32 k3 s2", True, (BATCH, 64, 7, 7), 32, 3, 2, 1, 1, None),
]


def layer_times():
    """Forward and backward (input and weight gradients) of each layer on both paths: median (min) ms."""
    from scratchgen.ops import conv

    print(f"Convolution layers, forward + backward, float32, {args.threads} threads, {machine()}, "
          f"backend {sg.get_backend()}, {time.strftime('%Y-%m-%d')}; median (min) ms")
    print(f"  {backend_line}")
    for name, transposed, shape, out, k, s, p, op, taps in LAYERS:
        x = sg.tensor(rng.standard_normal(shape, dtype=np.float32), requires_grad=shape[1] > 1)
        w_shape = (shape[1], out, k, k) if transposed else (out, shape[1], k, k)
        w = sg.tensor(rng.standard_normal(w_shape, dtype=np.float32) * 0.1, requires_grad=True)
        b = sg.tensor(np.zeros(out, np.float32), requires_grad=True)

        def step(method):
            def run():
                if transposed:
                    y = conv.conv_transpose2d(x, w, b, (s, s), (p, p), (op, op), (1, 1), method=method)
                else:
                    y = conv.conv2d(x, w, b, (s, s), (p, p), (1, 1), taps=taps, method=method)
                y.backward(sg.ones_like(y))  # the seed made on the active backend, not in NumPy
            return run

        times = interleaved_times({m: step(m) for m in ("im2col", "shifted")}, warmup=2, repeats=args.repeats)
        cells = "   ".join(f"{m} {times[m][0]:6.2f} ({times[m][1]:6.2f})" for m in times)
        print(f"  {name:<30} {cells}   shifted / im2col {times['shifted'][0] / times['im2col'][0]:.2f}")


if args.layers:
    layer_times()
    sys.exit()

chosen = args.steps.split(",")
libraries = {} if args.only == "pytorch" else {"scratchgen": scratchgen_steps()}
torch = None if args.only == "scratchgen" else try_import_torch(args.threads)
if torch is not None:
    libraries[f"PyTorch {torch.__version__}"] = torch_steps(torch)
named = {(library, name): steps[name] for library, steps in libraries.items() for name in chosen}
timings = interleaved_times(named, warmup=2, repeats=args.repeats)
save_times(args.times_json, timings)
measure_scratchgen_memory = host_memory_measured(args.backend)


def step_memory(library, step):
    """(traced MB, RSS MB) of one step: tracemalloc for scratchgen only (it sees NumPy's arrays, not
    PyTorch's), the resident set for both; neither for scratchgen on cupy (they see host memory only)."""
    if library != "scratchgen":
        return None, resident_peak_mb(step)
    if not measure_scratchgen_memory:
        return None, None
    return traced_peak_mb(step), resident_peak_mb(step)


memory = {key: step_memory(key[0], step) for key, step in named.items()}
host_gflops = sgemm_gflops()
gflops = {library: host_gflops for library in libraries}  # PyTorch always runs on the CPU
device_sgemm = ""
if "scratchgen" in libraries and args.backend != "numpy":
    gflops["scratchgen"] = sgemm_gflops(sg.backend.xp)
    device_sgemm = f", {gflops['scratchgen']:.0f} on backend {args.backend} (scratchgen's FLOP limit)"

print(f"Convolutional steps, float32, {args.threads} threads, {machine()}, backend {sg.get_backend()}, "
      f"{time.strftime('%Y-%m-%d')}; sgemm {host_gflops:.0f} GFLOP/s on the CPU{device_sgemm}")
print(f"  {backend_line}")
if not measure_scratchgen_memory:
    print(f"  {HOST_MEMORY_NOTE}")
print(f"  {'step':<14} {'library':<16} {'median (min) ms':>18} {'GFLOP':>7} {'x FLOP limit':>13} "
      f"{'traced MB':>10} {'RSS MB':>8}")
for name in chosen:
    for library in libraries:
        limit_ms = FLOPS[name] / gflops[library] / 1e6
        median, best = timings[library, name]
        traced, resident = memory[library, name]
        print(f"  {name:<14} {library:<16} {f'{median:.1f} ({best:.1f})':>18} {FLOPS[name] / 1e9:7.2f} "
              f"{median / limit_ms:13.2f} {'' if traced is None else f'{traced:.0f}':>10} "
              f"{'n/a' if resident is None else f'{resident:.0f}':>8}")
    if len(libraries) == 2 and "scratchgen" in libraries:
        theirs = list(libraries)[1]
        ratio = [timings["scratchgen", name][i] / timings[theirs, name][i] for i in (0, 1)]
        print(f"  {name:<14} scratchgen / PyTorch: median {ratio[0]:.2f}x (min {ratio[1]:.2f}x)")
if "scratchgen" in libraries and "pixelcnn" in chosen:
    fixed = pixelcnn_fixed_cost_ms()
    print(f"  pixelcnn: scratchgen's step on one 4×4 image (arithmetic next to nothing: the autograd, the layers "
          f"and NumPy's calls) {fixed:.2f} ms, {fixed / timings['scratchgen', 'pixelcnn'][0]:.1%} of its median above")
if args.backend == "strict" and "scratchgen" in libraries:
    print(f"  {host_reads_line({name: libraries['scratchgen'][name] for name in chosen})}")

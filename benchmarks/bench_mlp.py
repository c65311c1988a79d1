"""One training step of a 784-500-784 MLP (forward, backward, Adam), batch 100, float32.

Compares scratchgen with the same step written by hand in NumPy (the floor: no autograd at all) and with
PyTorch on the CPU when it is installed, all on the same number of threads. Also measures the autograd's
own overhead per op on tiny arrays, where the arithmetic costs nothing. With ``--backend cupy`` scratchgen
runs on the GPU; the hand-written NumPy step and PyTorch stay on the CPU.

    python benchmarks/bench_mlp.py --threads 2
    python benchmarks/bench_mlp.py --backend cupy
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (adam_by_hand, add_backend_flag, add_times_flag, apply_backend,  # noqa: E402
                    configure_threads, floor_label, host_reads_line, interleaved_times, machine, save_times,
                    synchronize, try_import_torch)

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--repeats", type=int, default=50)
parser.add_argument("--only", choices=("numpy", "scratchgen", "pytorch"),
                    help="time one contender alone (interleaving them in one process slows each unevenly)")
add_backend_flag(parser)
add_times_flag(parser)
args = parser.parse_args()
configure_threads(args.threads)
backend_line = apply_backend(args.backend, args.malloc)

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import scratchgen as sg  # noqa: E402
from scratchgen.nn import functional as F  # noqa: E402

BATCH, SIZES = 100, (784, 500, 784)
rng = np.random.default_rng(0)
x_host = (rng.random((BATCH, SIZES[0])) > 0.5).astype(np.float32)


def scratchgen_step():
    sg.manual_seed(0)
    model = sg.nn.Sequential(sg.nn.Linear(784, 500), sg.nn.ReLU(), sg.nn.Linear(500, 784))
    opt = sg.optim.Adam(model.parameters(), lr=1e-3)
    x = sg.tensor(x_host)  # copied to the active backend once, outside the timed step

    def step():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(x), x)
        loss.backward()
        opt.step()

    return step


def numpy_step():
    """The same step with every derivative written out by hand: the fastest NumPy can do."""
    w1 = rng.uniform(-0.03, 0.03, (500, 784)).astype(np.float32)
    b1 = np.zeros(500, np.float32)
    w2 = rng.uniform(-0.04, 0.04, (784, 500)).astype(np.float32)
    b2 = np.zeros(784, np.float32)
    params = [w1, b1, w2, b2]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    t = [0]

    def step():
        h = x_host @ w1.T + b1
        a = np.maximum(h, 0)
        z = a @ w2.T + b2
        loss = (np.maximum(z, 0) + np.log(1 + np.exp(-np.abs(z))) - z * x_host).mean()
        dz = (0.5 * (1 + np.tanh(0.5 * z)) - x_host) / z.size
        grads = [None, None, dz.T @ a, dz.sum(0)]
        da = dz @ w2
        dh = da * (h > 0)
        grads[0], grads[1] = dh.T @ x_host, dh.sum(0)
        t[0] += 1
        adam_by_hand(params, grads, m, v, t[0], lr=1e-3)
        return loss

    return step


def torch_step(torch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 500), torch.nn.ReLU(), torch.nn.Linear(500, 784))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.from_numpy(x_host)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x), x)
        loss.backward()
        opt.step()

    return step


def op_overhead_us(repeats: int = 20000) -> tuple[float, float]:
    """Microseconds per op on 1-element tensors: forward only, and forward plus its share of backward."""
    import time

    a = sg.tensor(np.ones(1, np.float32), requires_grad=True)
    b = sg.tensor(np.ones(1, np.float32), requires_grad=True)
    (a * b).backward()  # a first run: on a GPU, loads the kernels
    synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a * b
    synchronize()
    forward = (time.perf_counter() - start) / repeats * 1e6
    start = time.perf_counter()
    y = a
    for _ in range(repeats):
        y = y * b
    y.backward()
    synchronize()
    both = (time.perf_counter() - start) / repeats * 1e6
    return forward, both


FLOOR = floor_label(args.backend)
steps = {}
if args.only in (None, "numpy"):
    steps[FLOOR] = numpy_step()
if args.only in (None, "scratchgen"):
    steps["scratchgen"] = scratchgen_step()
torch = try_import_torch(args.threads) if args.only in (None, "pytorch") else None
if torch is not None:
    steps[f"PyTorch {torch.__version__} CPU"] = torch_step(torch)
times = interleaved_times(steps, warmup=5, repeats=args.repeats)
save_times(args.times_json, {(name, "MLP"): value for name, value in times.items()})
rows = [(name, *times[name]) for name in steps]
print(f"MLP 784-500-784 training step, batch {BATCH}, float32, {args.threads} threads, {machine()}, "
      f"backend {sg.get_backend()}")
print(f"  {backend_line}")
print(f"  {'median (min) per step':<30} {'ms':>18}   vs hand NumPy")
for name, median, fastest in rows:
    floor = f"{median / rows[0][1]:5.2f}x" if FLOOR in steps else ""
    print(f"  {name:<30} {median:8.2f} ({fastest:6.2f})   {floor}")
if torch is not None and "scratchgen" in steps:
    t_median, t_min = times[f"PyTorch {torch.__version__} CPU"]
    s_median, s_min = times["scratchgen"]
    print(f"  scratchgen / PyTorch: {s_median / t_median:.2f}x by median, {s_min / t_min:.2f}x by minimum")
if args.backend == "strict" and "scratchgen" in steps:
    print(f"  {host_reads_line({'scratchgen': steps['scratchgen']})}")
if "scratchgen" in steps:
    fwd, both = op_overhead_us()
    print(f"autograd overhead per op (1-element tensors): {fwd:.1f} us forward, {both:.1f} us forward + backward")

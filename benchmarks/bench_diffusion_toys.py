"""Issue 20's PyTorch reference for denoising diffusion on the 2-D toys, with and without an EMA of the weights.

Trains, in PyTorch on the CPU, the model that ``demos/diffusion.py --dataset ring8|grid25`` trains in
scratchgen, detail for detail, and scores its samples the same way, so that the two can be compared:

* data: ``scratchgen.data.TOYS[name]``'s sampler; a fresh batch of 256 points every step, drawn with
  ``numpy.random.default_rng(seed)``; standardised (mean 0, std 1 per coordinate) by the mean and std of
  20,000 reference points ``sampler(20_000, rng=seed)``, as the demo does;
* network: ε_θ(x_t, t) = MLP([x_t, embedding(t)]), three hidden layers of 128 with ReLU, output 2, PyTorch's
  default initialisation (scratchgen's ``Linear`` uses the same); the embedding is
  ``scratchgen.models.diffusion.sinusoidal_embedding`` (64 numbers, [sin, cos], computed in float64 and
  cast to float32), tabulated once for t = 0..T;
* diffusion: T = 1000, linear schedule β_t from 1e-4 to 0.02 (``linear_schedule``), the simple loss
  mean((ε − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t))²) with t ~ U{1..T} and ε ~ N(0, I), drawn by PyTorch
  after ``torch.manual_seed(seed)``;
* optimiser: Adam at 1e-3 (PyTorch's defaults otherwise, as scratchgen's), constant, 20,000 steps;
* ``--ema D [D ...]``: after every step a bias-corrected moving average of the weights,
  θ̄ ← d_n θ̄ + (1 − d_n) θ with d_n = D (1 − D^(n−1)) / (1 − D^n), exactly ``scratchgen.optim.EMA``;
  sampling then uses θ̄. 0: no average.
  The average draws no random numbers, so several decays share one training run per seed, and each is
  sampled from the generator's state at the end of training: the same result as a run with that decay alone;
* sampling: 2,500 points by ancestral sampling over all 1,000 steps from x_T ~ N(0, I),
  x_{t−1} = (x_t − β_t/√(1 − ᾱ_t) ε_θ)/√α_t + √β̃_t z, with no noise on the last step (t = 1);
  mapped back to data units and scored by ``scratchgen.metrics.mode_coverage(samples, mixture)``
  (modes covered, and the share of samples within 3 std of a mode).

One JSON line per (seed, decay) (dataset, seed, ema, modes, high_quality, final loss, wall times; the
training time is the shared run's), then a table. Seeds run one after another, on ``--threads`` threads
(1 for issue 20's figures); about a minute of training and a few seconds of sampling each::

    python benchmarks/bench_diffusion_toys.py --dataset ring8 --seeds 0 1 --ema 0 0.999
    python benchmarks/bench_diffusion_toys.py --dataset grid25 --seeds 0 --ema 0 0.999

Needs PyTorch (the reference); scratchgen gives only the data, the schedule's numbers and the metric.
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import configure_threads, machine, require_torch  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--dataset", choices=("ring8", "grid25"), default="ring8")
parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
parser.add_argument("--ema", type=float, nargs="+", default=[0.0],
                    help="decay(s) of the bias-corrected weight average that samples; 0: the last weights. "
                         "Several values: one run each, per seed")
parser.add_argument("--steps", type=int, default=20_000)
parser.add_argument("--batch-size", type=int, default=256)
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--T", type=int, default=1000)
parser.add_argument("--eval-samples", type=int, default=2500)
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--json", type=Path, default=None, help="also append the JSON lines to this file")
args = parser.parse_args()
for decay in args.ema:
    if not 0 <= decay < 1:
        parser.error(f"--ema must be in [0, 1), got {decay}")
configure_threads(args.threads)

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scratchgen import metrics  # noqa: E402
from scratchgen.data import TOYS  # noqa: E402
from scratchgen.models.diffusion import linear_schedule, sinusoidal_embedding  # noqa: E402

torch = require_torch(args.threads)
nn = torch.nn

HIDDEN, EMBEDDING = (128, 128, 128), 64


class DenoisingMLP(nn.Module):
    """scratchgen's DenoisingMLP in PyTorch: [x_t, sinusoidal_embedding(t)] -> 128 -> 128 -> 128 -> 2, ReLU."""

    def __init__(self, T: int):
        super().__init__()
        layers, width = [], 2 + EMBEDDING
        for size in HIDDEN:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        self.net = nn.Sequential(*layers, nn.Linear(width, 2))
        # scratchgen's own function (float64, cast to float32), for every step at once.
        self.register_buffer("codes", torch.from_numpy(sinusoidal_embedding(np.arange(T + 1), EMBEDDING,
                                                                             dtype=np.float32)))

    def forward(self, x, t):
        return self.net(torch.cat([x, self.codes[t]], dim=1))


class EMA:
    """Bias-corrected average of the parameters, as scratchgen.optim.EMA (bias_correction=True)."""

    def __init__(self, model, decay: float):
        self.decay, self.num_updates = decay, 0
        self.params = list(model.parameters())
        self.shadow = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def update(self):
        n = self.num_updates + 1
        d = self.decay * (1 - self.decay ** (n - 1)) / (1 - self.decay ** n)
        for average, p in zip(self.shadow, self.params):
            average.mul_(d).add_(p, alpha=1 - d)
        self.num_updates = n


def run(dataset: str, seed: int, decays) -> list:
    """Train once for this seed and sample once per decay in ``decays`` (0: the last weights). The averages
    draw no random numbers, and each sampling starts from the generator's state at the end of training, so
    every result is the one a run with that decay alone would give."""
    sampler, mixture = TOYS[dataset]
    reference = sampler(20_000, rng=seed)
    mean, scale = reference.mean(axis=0), reference.std(axis=0)
    data_rng = np.random.default_rng(seed)
    torch.manual_seed(seed)

    betas = linear_schedule(args.T)  # (T,) float64, β_1..β_T
    betas = np.concatenate([[0.0], betas])  # indexed by t, β_0 = 0
    alphas = 1 - betas
    alpha_bars = np.cumprod(alphas)
    previous = np.concatenate([[1.0], alpha_bars[:-1]])
    posterior_variances = betas * (1 - previous) / np.maximum(1 - alpha_bars, 1e-20)
    sqrt_ab = torch.from_numpy(np.sqrt(alpha_bars)).float()
    sqrt_1mab = torch.from_numpy(np.sqrt(1 - alpha_bars)).float()

    model = DenoisingMLP(args.T)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    emas = {decay: EMA(model, decay) for decay in decays if decay}

    began = time.perf_counter()
    window = []
    for step in range(args.steps):
        x0 = torch.from_numpy(((sampler(args.batch_size, rng=data_rng) - mean) / scale).astype(np.float32))
        t = torch.randint(1, args.T + 1, (args.batch_size,))
        noise = torch.randn_like(x0)
        x_t = sqrt_ab[t, None] * x0 + sqrt_1mab[t, None] * noise
        loss = torch.nn.functional.mse_loss(model(x_t, t), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        for ema in emas.values():
            ema.update()
        window.append(loss.item())
    train_time = time.perf_counter() - began
    final_loss = float(np.mean(window[-1000:]))
    last = [p.detach().clone() for p in model.parameters()]
    rng_state = torch.get_rng_state()

    results = []
    for decay in decays:
        began = time.perf_counter()
        with torch.no_grad():
            for p, weights in zip(model.parameters(), emas[decay].shadow if decay else last):
                p.copy_(weights)
            torch.set_rng_state(rng_state)
            x = torch.randn(args.eval_samples, 2)
            for t in range(args.T, 0, -1):
                eps = model(x, torch.full((len(x),), t, dtype=torch.long))
                x = (x - (betas[t] / math.sqrt(1 - alpha_bars[t])) * eps) * (1 / math.sqrt(alphas[t]))
                if t > 1:
                    x = x + math.sqrt(posterior_variances[t]) * torch.randn_like(x)
        sample_time = time.perf_counter() - began
        samples = x.numpy().astype(np.float64) * scale + mean
        score = metrics.mode_coverage(samples, mixture)
        results.append({"dataset": dataset, "seed": seed, "ema": decay, "modes": score["modes"],
                        "modes_of": len(mixture.means), "high_quality": score["high_quality"],
                        "final_loss": final_loss, "steps": args.steps,
                        "train_wall_time_s": round(train_time, 1), "sample_wall_time_s": round(sample_time, 1),
                        "wall_time_s": round(train_time + sample_time, 1), "torch": torch.__version__,
                        "threads": args.threads})
    return results


print(f"# PyTorch {torch.__version__} CPU, {args.threads} thread(s), {machine()}", flush=True)
results = []
for seed in args.seeds:
    for result in run(args.dataset, seed, list(dict.fromkeys(args.ema))):
        results.append(result)
        line = json.dumps(result)
        print(line, flush=True)
        if args.json is not None:
            with open(args.json, "a") as f:
                f.write(line + "\n")

print(f"\nPyTorch reference, {args.dataset}: T = {args.T}, {args.steps:,} steps of batch {args.batch_size}, "
      f"Adam {args.lr:g}, ancestral sampling of {args.eval_samples:,} points")
print(f"  {'ema':>6} {'seed':>5} {'modes':>7} {'high quality':>13} {'loss':>7} {'train s':>8} {'sample s':>9}")
for r in results:
    print(f"  {r['ema']:>6g} {r['seed']:>5} {r['modes']:>3}/{r['modes_of']:<3} {100 * r['high_quality']:12.1f}% "
          f"{r['final_loss']:7.4f} {r['train_wall_time_s']:8.1f} {r['sample_wall_time_s']:9.1f}")
for decay in dict.fromkeys(args.ema):
    share = [r["high_quality"] for r in results if r["ema"] == decay]
    print(f"  ema {decay:g}: mean high quality {100 * np.mean(share):.1f}% over {len(share)} seed(s)")

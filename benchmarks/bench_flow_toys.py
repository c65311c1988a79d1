"""Issue 19's PyTorch reference for the flows on the 2-D toys: RealNVP and MAF, trained as demos/flow.py trains.

Trains, in PyTorch on the CPU, the flow that ``demos/flow.py --dataset D --flow F`` trains in scratchgen,
detail for detail, and scores it the same way, so that the two can be compared (issue 19's target: each
of our flows within 0.05 nats of PyTorch's same flow, or above):

* data: ``scratchgen.data.TOYS[name]``'s sampler, 20,000 training points ``sampler(20_000, rng=seed)`` and
  5,000 test points ``sampler(5_000, rng=seed + 1)`` (float32); the flow sees them standardised by the
  training points' mean and std per coordinate, z = (x − mean)/std, and the test log-likelihood is in nats
  per point in the original coordinates, log p(x) = log p_z(z) − Σ_d log std_d, as the demo reports it;
* RealNVP: 8 affine couplings, the kept half alternating (x_0 kept first), u_b = x_b ⊙ exp(s) + t with
  s = tanh(s_net(x_a)) and t = t_net(x_a), each net Linear-ReLU-Linear-ReLU-Linear with hidden layers of
  128 (``scratchgen.models.flow.AffineCoupling``);
* MAF: 5 layers u = (x − μ) ⊙ exp(−α), (μ, α) from a MADE 2-128-128 (ReLU), the ordering 0, 1 in the first
  layer and reversed in each next one; the masks are scratchgen's own ``made_degrees``/``made_masks`` with
  the generator ``MADE`` uses (``default_rng([seed + k, 0])`` for layer k), output row 2d + c being
  parameter c (μ, then α) of variable d. ``--max-log-scale C`` bounds α = C·tanh(a/C) as
  ``scratchgen.models.flow.MAFLayer`` does (3, the default here as there); 0 leaves α unbounded, as in
  the paper (the issue does not say which its reference used);
* PyTorch's default initialisation of every Linear, U(−1/√fan_in, 1/√fan_in) for weight and bias
  (scratchgen's ``Linear`` and ``MaskedLinear`` use the same; masks applied to the full weight);
* training: Adam at 1e-3 (PyTorch's defaults otherwise, as scratchgen's), batches of 100 in a new random
  order every epoch (``torch.randperm`` after ``torch.manual_seed(seed)``; scratchgen's loader draws its
  own order, so the two see the same points in different orders), 60 epochs, the loss the mean negative
  log-likelihood of the standardised batch; float32 throughout.

After every epoch the test log-likelihood is printed (nats per point, original coordinates), so that the
epoch-to-epoch spread is seen beside the last epoch's figure (no epoch is picked: the figure is the last).
One JSON line per run (dataset, flow, seed, last test log-likelihood, the per-epoch list, the true
density's on the same points for the mixtures, wall time); a NaN or infinite training loss stops the run, as
scratchgen's training loop does, with ``"diverged"`` its epoch (an unbounded MAF, ``--max-log-scale 0``, did
on grid25 with seed 2). About one to three minutes a run on one thread::

    python benchmarks/bench_flow_toys.py --dataset grid25 --flow maf --seed 0
    python benchmarks/bench_flow_toys.py --dataset swiss_roll --flow realnvp --seed 1 --json flows.jsonl

``--check`` trains nothing: it starts the PyTorch flow from scratchgen's initial weights and takes 20 Adam
steps with both on the same batches, printing the largest differences in log p, gradients and weights
(float32 rounding, about 1e-6, if the two are the same flow)::

    python benchmarks/bench_flow_toys.py --dataset grid25 --flow maf --check

The issue's own reference figures (PyTorch 2.13 CPU, seed 0) came from code that is not in the repository;
this file follows the issue's description and scratchgen's flows. It does not reproduce them to 0.05 nats,
nor does any single run: a flow's last-epoch test log-likelihood moves by tenths of a nat to nats between
epochs and between seeds on grid25 and swiss_roll (docs/flows_rbm.md has the figures of seeds 0, 1, 2).

Needs PyTorch (the reference); scratchgen gives only the data, the MADE masks and the true densities (and,
for ``--check``, its own flows; scratchgen never imports PyTorch).
"""

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import configure_threads, machine, require_torch  # noqa: E402

TOY_NAMES = ("ring8", "grid25", "two_moons", "swiss_roll")

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--dataset", choices=TOY_NAMES, default="ring8")
parser.add_argument("--flow", choices=("realnvp", "maf"), default="realnvp")
parser.add_argument("--seed", type=int, default=0)
parser.add_argument("--epochs", type=int, default=60)
parser.add_argument("--batch-size", type=int, default=100)
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--layers", type=int, default=None, help="couplings (default 8) or MAF layers (default 5)")
parser.add_argument("--hidden", type=int, nargs="+", default=[128, 128])
parser.add_argument("--max-log-scale", type=float, default=3.0,
                    help="MAF: bound C on |α|, α = C·tanh(a/C), as scratchgen's MAFLayer (default 3); 0: unbounded")
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--json", type=Path, default=None, help="also append the JSON line to this file")
parser.add_argument("--check", action="store_true",
                    help="instead of training: start the PyTorch flow from scratchgen's initial weights and compare "
                         "the two on the same batches (log p, gradients, 20 Adam steps); prints the largest "
                         "differences")
args = parser.parse_args()
configure_threads(args.threads)

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scratchgen.data import TOYS  # noqa: E402
from scratchgen.models.made import made_degrees, made_masks  # noqa: E402

torch = require_torch(args.threads)
nn = torch.nn


def mlp(n_in: int, n_out: int, hidden) -> nn.Sequential:
    """Linear layers with ReLU between them, as scratchgen.models.flow.mlp."""
    sizes = (n_in,) + tuple(hidden) + (n_out,)
    layers = []
    for a, b in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))


class AffineCoupling(nn.Module):
    """u_a = x_a, u_b = x_b ⊙ exp(tanh(s_net(x_a))) + t_net(x_a); ``flip`` keeps the second half instead."""

    def __init__(self, features: int, flip: bool, hidden):
        super().__init__()
        self.flip, self.half = flip, features // 2
        kept, moved = (features - self.half, self.half) if flip else (self.half, features - self.half)
        self.s_net, self.t_net = mlp(kept, moved, hidden), mlp(kept, moved, hidden)

    def forward(self, x):
        first, second = x[:, :self.half], x[:, self.half:]
        kept, moved = (second, first) if self.flip else (first, second)
        s, t = torch.tanh(self.s_net(kept)), self.t_net(kept)
        moved = moved * torch.exp(s) + t
        return torch.cat([moved, kept] if self.flip else [kept, moved], dim=1), s.sum(dim=1)


class MaskedLinear(nn.Linear):
    def __init__(self, n_in: int, n_out: int, mask: np.ndarray):
        super().__init__(n_in, n_out)  # PyTorch's default initialisation of the full weight
        self.register_buffer("mask", torch.from_numpy(mask))

    def forward(self, x):
        return nn.functional.linear(x, self.weight * self.mask, self.bias)


class MAFLayer(nn.Module):
    """u = (x − μ) ⊙ exp(−α), (μ, α) from a MADE with scratchgen's masks; log |det| = −Σ α."""

    def __init__(self, features: int, hidden, reverse: bool, seed: int, max_log_scale: float):
        super().__init__()
        ordering = np.arange(features)[::-1].copy() if reverse else np.arange(features)
        rng = np.random.default_rng([seed, 0])  # MADE.use_masks(0)'s generator
        masks = made_masks(made_degrees(ordering, hidden, rng), outputs_per_dim=2)
        sizes = (features,) + tuple(hidden) + (2 * features,)
        self.layers = nn.ModuleList(MaskedLinear(a, b, m) for a, b, m in zip(sizes[:-1], sizes[1:], masks))
        self.features, self.max_log_scale = features, max_log_scale

    def forward(self, x):
        h = x
        for index, layer in enumerate(self.layers):
            h = layer(h)
            if index < len(self.layers) - 1:
                h = torch.relu(h)
        params = h.reshape(len(x), self.features, 2)
        mu, alpha = params[:, :, 0], params[:, :, 1]
        if self.max_log_scale:
            alpha = torch.tanh(alpha / self.max_log_scale) * self.max_log_scale
        return (x - mu) * torch.exp(-alpha), -alpha.sum(dim=1)


class Flow(nn.Module):
    def __init__(self, bijections):
        super().__init__()
        self.bijections = nn.ModuleList(bijections)

    def log_prob(self, x):
        log_det = torch.zeros(len(x))
        for bijection in self.bijections:
            x, layer_log_det = bijection(x)
            log_det = log_det + layer_log_det
        return -0.5 * (x * x).sum(dim=1) - 0.5 * x.shape[1] * math.log(2 * math.pi) + log_det


def build(flow: str, seed: int) -> Flow:
    if flow == "realnvp":
        return Flow(AffineCoupling(2, k % 2 == 1, args.hidden) for k in range(args.layers or 8))
    return Flow(MAFLayer(2, args.hidden, k % 2 == 1, seed + k, args.max_log_scale) for k in range(args.layers or 5))


def mean_log_likelihood(flow: Flow, z: np.ndarray, batch_size: int = 1000) -> float:
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(z), batch_size):
            total += flow.log_prob(torch.from_numpy(z[start:start + batch_size])).sum().item()
    return total / len(z)


def run(dataset: str, flow_name: str, seed: int) -> dict:
    sampler, mixture = TOYS[dataset]
    train_x, test_x = sampler(20_000, rng=seed), sampler(5_000, rng=seed + 1)
    mean, scale = train_x.mean(axis=0), train_x.std(axis=0)  # float32, as the demo
    log_jacobian = float(np.log(scale).sum())
    train_z, test_z = (train_x - mean) / scale, (test_x - mean) / scale
    torch.manual_seed(seed)
    flow = build(flow_name, seed)
    opt = torch.optim.Adam(flow.parameters(), lr=args.lr)
    data = torch.from_numpy(train_z)

    began = time.perf_counter()
    history, diverged = [], None
    for epoch in range(1, args.epochs + 1):
        order, total = torch.randperm(len(data)), 0.0
        for start in range(0, len(data), args.batch_size):
            loss = -flow.log_prob(data[order[start:start + args.batch_size]]).mean()
            if not math.isfinite(loss.item()):  # as scratchgen's training loop: stop at a NaN or infinite loss
                diverged = epoch
                break
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(order[start:start + args.batch_size])
        if diverged:
            print(f"  epoch {epoch:3d}  diverged: a NaN or infinite loss; stopped", flush=True)
            break
        test = mean_log_likelihood(flow, test_z) - log_jacobian
        history.append(test)
        print(f"  epoch {epoch:3d}  train {-total / len(data) - log_jacobian:8.3f}  test {test:8.3f}", flush=True)
    result = {"dataset": dataset, "flow": flow_name, "seed": seed,
              "test_log_likelihood": float("nan") if diverged or not history else history[-1], "diverged": diverged,
              "test_log_likelihood_per_epoch": [round(v, 4) for v in history],
              "max_log_scale": args.max_log_scale if flow_name == "maf" else None,
              "epochs": args.epochs, "batch_size": args.batch_size, "lr": args.lr,
              "wall_time_s": round(time.perf_counter() - began, 1), "torch": torch.__version__,
              "threads": args.threads}
    if mixture is not None:
        result["true_test_log_likelihood"] = float(mixture.log_prob(test_x).mean())
    return result


def check(dataset: str, flow_name: str, seed: int, steps: int = 20) -> None:
    """The two flows are the same function with the same gradients: scratchgen's freshly initialised flow
    (``backend.manual_seed(seed)``, as the demo builds it) is copied into this file's, parameter by parameter
    (the two list them in the same order), and both take ``steps`` Adam steps on the first ``steps`` batches
    of the standardised training points, in order. What is left to differ in a training run is then only
    the random draws: the initial weights and the order of the batches."""
    import scratchgen
    from scratchgen.models.flow import MAF as ScratchMAF, RealNVP as ScratchRealNVP

    sampler, _ = TOYS[dataset]
    train_x = sampler(20_000, rng=seed)
    z = (train_x - train_x.mean(axis=0)) / train_x.std(axis=0)
    scratchgen.manual_seed(seed)
    if flow_name == "realnvp":
        ours = ScratchRealNVP(2, args.layers or 8, args.hidden)
    else:
        ours = ScratchMAF(2, args.layers or 5, args.hidden, seed=seed, max_log_scale=args.max_log_scale or None)
    theirs = build(flow_name, seed)
    ours_params, theirs_params = list(ours.parameters()), list(theirs.parameters())
    assert [tuple(p.shape) for p in ours_params] == [tuple(p.shape) for p in theirs_params], "parameter lists differ"
    with torch.no_grad():
        for a, b in zip(ours_params, theirs_params):
            b.copy_(torch.from_numpy(np.array(a.data)))

    def relative(a, b):
        return float(np.abs(np.asarray(a) - np.asarray(b)).max() / (np.abs(np.asarray(a)).max() + 1e-30))

    batch = z[:args.batch_size]
    ours_lp, theirs_lp = ours.log_prob(scratchgen.tensor(batch)), theirs.log_prob(torch.from_numpy(batch))
    (-ours_lp.mean()).backward()
    (-theirs_lp.mean()).backward()
    lp_diff = np.abs(ours_lp.numpy() - theirs_lp.detach().numpy()).max()
    print(f"  log p of {len(batch)} points: largest difference {lp_diff:.2e}"
          f" nats; gradients: largest relative difference "
          f"{max(relative(a.grad, b.grad.numpy()) for a, b in zip(ours_params, theirs_params)):.2e}")
    ours_opt = scratchgen.optim.Adam(ours_params, lr=args.lr)
    theirs_opt = torch.optim.Adam(theirs_params, lr=args.lr)
    for step in range(steps):
        batch = z[step * args.batch_size:(step + 1) * args.batch_size]
        ours_opt.zero_grad()
        (-ours.log_prob(scratchgen.tensor(batch)).mean()).backward()
        ours_opt.step()
        theirs_opt.zero_grad()
        (-theirs.log_prob(torch.from_numpy(batch)).mean()).backward()
        theirs_opt.step()
    with torch.no_grad():
        test = z[:1000]
        lp_diff = np.abs(ours.log_prob(scratchgen.tensor(test)).numpy()
                         - theirs.log_prob(torch.from_numpy(test)).numpy()).max()
    weight_diff = max(float(np.abs(np.array(a.data) - b.detach().numpy()).max())
                      for a, b in zip(ours_params, theirs_params))
    print(f"  after {steps} Adam steps on the same batches: parameters' largest difference "
          f"{weight_diff:.2e}, "
          f"log p of 1,000 points' {lp_diff:.2e} nats")


print(f"# PyTorch {torch.__version__} CPU, {args.threads} thread(s), {machine()}", flush=True)
if args.check:
    print(f"# --check: scratchgen's {args.flow} and PyTorch's on {args.dataset}, seed {args.seed}, "
          "from the same weights")
    check(args.dataset, args.flow, args.seed)
    sys.exit(0)
print(f"# {args.flow} on {args.dataset}, seed {args.seed}: test log-likelihood (nats per point) per epoch", flush=True)
result = run(args.dataset, args.flow, args.seed)
line = json.dumps(result)
print(line, flush=True)
if args.json is not None:
    with open(args.json, "a") as f:
        f.write(line + "\n")
last = result["test_log_likelihood_per_epoch"][-10:] or [float("nan")]
if result["diverged"]:
    print(f"\nPyTorch reference, {args.flow} on {args.dataset}, seed {args.seed}: "
          f"diverged in epoch {result['diverged']}")
    sys.exit(0)
print(f"\nPyTorch reference, {args.flow} on {args.dataset}, seed {args.seed}: last-epoch test log-likelihood "
      f"{result['test_log_likelihood']:.3f} nats/point (last 10 epochs: min {min(last):.3f}, max {max(last):.3f}, "
      f"mean {np.mean(last):.3f}), {result['wall_time_s']} s")

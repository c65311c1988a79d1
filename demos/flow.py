"""Train a normalising flow (RealNVP or MAF) by exact maximum likelihood on a 2-D toy density, or on MNIST.

The change-of-variables box of the lecture's map: log p(x) = log N(f(x); 0, I) + Σ log |det J| for a chain
of bijections f (:mod:`scratchgen.models.flow`), trained by maximising log p(x) directly.

    python demos/flow.py --dataset ring8 --flow realnvp     # 8 affine couplings, s and t 128-128 each
    python demos/flow.py --dataset grid25 --flow maf        # 5 MAF layers of MADE 2-128-128
                                                            # (also two_moons, swiss_roll)

The defaults are issue 19's reference configuration: 20,000 training and 5,000 test points from
scratchgen's samplers (seeds --seed and --seed + 1), 60 epochs, Adam 1e-3, batches of 100. The model sees
the points standardised (mean 0, variance 1 per coordinate); the test log-likelihood is reported for the
original points, corrected by the change of variables of the standardisation, as demos/made.py does.

Writes into --out (default runs/flow):

* ``density.png``: the true density (for the moons and the roll, a histogram of many points) beside the
  learned one: where the flow leaves mass on the bridges between sharp modes;
* ``samples.png``: 2,000 samples of the flow (by its inverse) over the true density;
* ``layers.png``: 2,000 test points pushed through the flow layer by layer, from the (standardised) data
  to the code u, which should look like N(0, I);
* ``learning_curve.png``, and ``metrics.json`` with ``test_log_likelihood`` per epoch in nats per point,
  (for ring8 and grid25) the true density's on the same points, and the wall time.

MNIST (``--dataset mnist``): a RealNVP for images (:class:`scratchgen.models.flow.ImageRealNVP`) with
Flow++'s mixture-of-logistics maps, on uniformly dequantised pixels x = (k + ν)/256, ν ~ U[0, 1) drawn
afresh for every batch: the logit transform (α = 0.05), a learned marginal per pixel (the CDF of a mixture
of 32 logistics, :class:`scratchgen.models.flow.LogisticMixtureCDF`), then three checkerboard couplings at
28×28, a squeeze, three channel couplings and three checkerboard couplings at 14×14, each coupling choosing
a mixture of 4 logistics for every moved pixel (:class:`scratchgen.models.flow.MaskedMixtureCoupling`)
with a 3×3-1×1-3×3 conv net of 32 channels:

    python demos/flow.py --dataset mnist                    # the embedded 4,000 training digits, 8 epochs
    python demos/flow.py --dataset mnist --components 0 --coupling-components 0
                                                            # RealNVP's affine couplings, no per-pixel marginal
    python demos/flow.py --dataset mnist --mnist-source mnist --channels 64 --epochs 20

Defaults: 8 epochs, Adam 1e-3, batches of 64. Test figures are in bits per dimension of the 8-bit pixels
(the literature's convention; see :class:`ImageRealNVP` for the bookkeeping) on the 1,000 test digits with
one fixed draw of ν. Writes into --out (default runs/flow_mnist) ``samples.png`` (temperature 1),
``samples_t0.7.png`` (the base's draws scaled by 0.7), ``bits_per_dim.png`` and ``metrics.json`` with
``train_bits_per_dim`` and ``test_bits_per_dim`` per epoch and, for scale, the independent-pixel baseline's
test bits per dimension under the same dequantisation (a histogram per pixel, add-one smoothing).

The last line printed is the final metrics as JSON.
"""

from __future__ import annotations

import numpy as np

from scratchgen import experiment, no_grad, optim, plot, tensor
from scratchgen.data import TOYS, DataLoader, load_mnist
from scratchgen.models.flow import MAF, ImageRealNVP, RealNVP, dequantize, independent_pixels_bits_per_dim
from scratchgen.train import minimise_epoch

# The defaults that differ between the toys (issue 19's reference configuration) and MNIST.
DEFAULTS = {
    "toy": {"epochs": 60, "batch_size": 100, "lr": 1e-3},
    "mnist": {"epochs": 8, "batch_size": 64, "lr": 1e-3},
}

def parse_args(argv=None):
    parser = experiment.demo_parser(__doc__.splitlines()[0], dataset="ring8", datasets=tuple(TOYS) + ("mnist",))
    # Flags whose default depends on the dataset are None here and filled in from DEFAULTS below.
    parser.set_defaults(epochs=None, batch_size=None, lr=None)
    parser.add_argument("--flow", choices=("realnvp", "maf"), default="realnvp",
                        help="the kind of bijection (MNIST: realnvp only)")
    parser.add_argument("--layers", type=experiment.positive_int, default=None,
                        help="bijections in the flow (default: 8 couplings for realnvp, 5 layers for maf)")
    parser.add_argument("--hidden", type=experiment.positive_int, nargs="+", default=[128, 128],
                        help="hidden layer sizes of each s and t network (realnvp) or MADE (maf)")
    parser.add_argument("--limit", type=experiment.positive_int, default=None,
                        help="use only the first N training and test points (or digits)")
    mnist = parser.add_argument_group("MNIST")
    mnist.add_argument("--mnist-source", choices=("embedded", "mnist", "fashion_mnist"), default="embedded",
                       help="the digits (or Fashion-MNIST) to train and test on")
    mnist.add_argument("--couplings", type=experiment.positive_int, default=3,
                       help="couplings per group: checkerboard, then (after each squeeze) channel, and a last "
                            "checkerboard group")
    mnist.add_argument("--channels", type=experiment.positive_int, default=32,
                       help="hidden channels of each coupling's conv net")
    mnist.add_argument("--scales", type=experiment.positive_int, default=1, help="squeezes (28 -> 14 -> 7)")
    mnist.add_argument("--components", type=experiment.non_negative_int, default=32,
                       help="logistics in each pixel's learned marginal CDF after the logit (Flow++); 0 leaves "
                            "the layer out, as RealNVP does")
    mnist.add_argument("--coupling-components", type=experiment.non_negative_int, default=4,
                       help="logistics in the mixture each coupling chooses for each moved pixel (Flow++'s "
                            "coupling); 0 for RealNVP's affine couplings")
    mnist.add_argument("--samples", type=experiment.positive_int, default=64, help="images in each samples picture")
    args = parser.parse_args(argv)
    for name, value in DEFAULTS["mnist" if args.dataset == "mnist" else "toy"].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.dataset == "mnist" and args.flow != "realnvp":
        parser.error("--dataset mnist trains a RealNVP for images; --flow maf is for the toys")
    return args


def build(args):
    if args.flow == "realnvp":
        return RealNVP(2, args.layers or 8, args.hidden)
    return MAF(2, args.layers or 5, args.hidden, seed=args.seed)


def mean_log_likelihood(flow, z, batch_size: int = 1000) -> float:
    """Mean log p(z) in nats over the rows of z (standardised points), without recording a graph."""
    total = 0.0
    with no_grad():
        for start in range(0, len(z), batch_size):
            total += flow.log_prob(tensor(z[start:start + batch_size])).sum().item()
    return total / len(z)


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.dataset == "mnist":
        return train_mnist(args, experiment.Run(args, name="flow_mnist", may_change=("samples",)))
    return train_toy(args, experiment.Run(args, name="flow"))


def train_toy(args, run) -> dict:
    sampler, mixture = TOYS[args.dataset]
    train_x, test_x = sampler(20_000, rng=args.seed)[: args.limit], sampler(5_000, rng=args.seed + 1)[: args.limit]
    # The flow sees z = (x - mean) / scale; then log p(x) = log p_z(z) - Σ_d log scale_d.
    mean, scale = train_x.mean(axis=0), train_x.std(axis=0)
    log_jacobian = float(np.log(scale).sum())
    flow = build(args)

    def log_density(points):
        return flow.log_prob(tensor((points - mean) / scale)) - log_jacobian

    loader = DataLoader((train_x - mean) / scale, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    opt = optim.Adam(flow.parameters(), lr=args.lr)
    start = run.resume(model=flow, optimizer=opt, loader=loader)
    with run.training():
        for epoch in range(start, args.epochs + 1):
            train_nll = minimise_epoch(lambda z: -flow.log_prob(z).mean(), run.progress(loader, epoch), opt, epoch,
                                       metric="nll")
            test = mean_log_likelihood(flow, (test_x - mean) / scale) - log_jacobian
            run.log_epoch(epoch, train_log_likelihood=-train_nll - log_jacobian, test_log_likelihood=test)
            run.save_checkpoint(epoch)
    final = {"test_log_likelihood": run.history.last["test_log_likelihood"], "train_wall_time_s": run.elapsed}

    bounds, true_density, true_title = plot.toy_density_frame(train_x, mixture, sampler, seed=args.seed + 2)
    if mixture is not None:
        final["true_test_log_likelihood"] = float(mixture.log_prob(test_x).mean())
    name = {"realnvp": "RealNVP", "maf": "MAF"}[args.flow]
    plot.density_comparison(true_density, log_density, run.path("density.png"), bounds,
                            titles=(true_title, f"{name} density"),
                            title=f"{args.dataset}: test log-likelihood {final['test_log_likelihood']:.3f} nats/point")
    samples = flow.sample(2000).numpy() * scale + mean
    plot.scatter_over_density(samples, run.path("samples.png"), log_density=true_density, bounds=bounds,
                              title=f"2,000 {name} samples over the true density")
    layers = flow.trajectory(tensor((test_x[:2000] - mean) / scale))
    plot.scatter_over_training(list(enumerate(p.numpy() for p in layers)), run.path("layers.png"),
                               bounds=(-4.0, 4.0), label="layer",
                               title="test points (standardised) pushed through the flow: layer 0 is the data, "
                                     "the last is u")
    plot.loss_curves(run.history, run.path("learning_curve.png"),
                     keys=["train_log_likelihood", "test_log_likelihood"],
                     title=f"{name}: log-likelihood (nats per point)")
    return run.finish(**final)


def test_bits_per_dim(flow, x, batch_size: int = 500) -> float:
    """Mean bits per dimension over dequantised images x (N, C, H, W) in [0, 1), without recording a graph."""
    total = 0.0
    with no_grad():
        for start in range(0, len(x), batch_size):
            total += flow.bits_per_dim(tensor(x[start:start + batch_size])).sum().item()
    return total / len(x)


def train_mnist(args, run) -> dict:
    """Train an ImageRealNVP on dequantised digits; test bits/dim per epoch, samples at two temperatures."""
    train_k = load_mnist(args.mnist_source, "train")[0][:args.limit, None]  # uint8 (N, 1, 28, 28)
    test_k = load_mnist(args.mnist_source, "test")[0][:args.limit, None]
    # One fixed draw of the test digits' dequantisation noise, so that every epoch is scored on the same points.
    noise = np.random.default_rng(args.seed + 1).random(test_k.shape, dtype=np.float32)
    test_x = dequantize(tensor(test_k), tensor(noise)).numpy()

    flow = ImageRealNVP(train_k.shape[1:], couplings=args.couplings, hidden=args.channels, scales=args.scales,
                        components=args.components, coupling_components=args.coupling_components)
    model_name = "RealNVP" if args.components == args.coupling_components == 0 else "RealNVP + Flow++ mixtures"
    loader = DataLoader(train_k, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    opt = optim.Adam(flow.parameters(), lr=args.lr)
    start = run.resume(model=flow, optimizer=opt, loader=loader)
    with run.training():
        for epoch in range(start, args.epochs + 1):
            # each batch dequantised afresh (ν from scratchgen's seeded generator)
            train_bpd = minimise_epoch(lambda k: flow.bits_per_dim(dequantize(k)).mean(), run.progress(loader, epoch),
                                       opt, epoch, metric="bpd")
            run.log_epoch(epoch, train_bits_per_dim=train_bpd, test_bits_per_dim=test_bits_per_dim(flow, test_x))
            run.save_checkpoint(epoch)
    final = {"test_bits_per_dim": run.history.last["test_bits_per_dim"],
             "independent_pixels_bits_per_dim": independent_pixels_bits_per_dim(train_k, test_k),
             "train_wall_time_s": run.elapsed}

    for temperature, name in ((1.0, "samples.png"), (0.7, "samples_t0.7.png")):
        pixels = flow.sample_pixels(args.samples, temperature)
        plot.image_grid(pixels / 255.0, run.path(name),
                        title=f"{model_name} samples, temperature {temperature} ({args.mnist_source})")
    plot.loss_curves(run.history, run.path("bits_per_dim.png"), keys=["train_bits_per_dim", "test_bits_per_dim"],
                     title=f"{model_name} on {args.mnist_source} digits: bits per dimension "
                           f"(independent pixels: {final['independent_pixels_bits_per_dim']:.2f})")
    return run.finish(**final)


if __name__ == "__main__":
    main()

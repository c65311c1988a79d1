"""Train a denoising diffusion model (Ho et al. 2020) on a 2-D toy or on MNIST, sample it, and judge its samples.

    python demos/diffusion.py --dataset ring8         # 8 Gaussians on a circle
    python demos/diffusion.py --dataset grid25        # 25 Gaussians on a grid
    python demos/diffusion.py --dataset two_moons     # two half circles
    python demos/diffusion.py --sampler ddim --ddim-steps 50 --eta 0    # DDIM (Song et al. 2021) to sample
    python demos/diffusion.py --dataset mnist         # digits, with a U-Net; sampled by DDIM in 50 steps
    python demos/diffusion.py --dataset mnist --guidance 2   # one network for p(x | y) and p(x), guided

On the toys the defaults are issue 20's reference configuration: T = 1000 steps, the linear schedule (β
from 1e-4 to 0.02), the ε-network :class:`~scratchgen.models.diffusion.DenoisingMLP` (three hidden layers
of 128, ReLU, a 64-number sinusoidal code of the step), Adam at 1e-3, batches of 256 fresh points, 20
epochs of 1,000 steps = 20,000 steps, then ancestral sampling of 2,500 points over all 1,000 steps; and
one addition, the samples come from a moving average of the weights (``--ema 0.999``, as Ho et al.'s;
``--ema 0`` for the last weights, the reference exactly). The model sees the points standardised (mean
0, variance 1 per coordinate); samples are mapped back before they are scored.

Writes into --out (default runs/diffusion_<dataset>):

* ``samples.png``: the 2,500 samples over the true density (for two_moons and swiss_roll, a histogram of many points);
* ``reverse_process.png``: the reverse process as a row of snapshots x_t, from pure noise (t = T) to
  samples (t = 0): the diffusion counterpart of the GAN's samples through training;
* ``losses.png``: the simple loss E‖ε − ε_θ(x_t, t)‖², every 100 steps;
* ``metrics.json``, and the final metrics as one JSON line: for ring8 and grid25 ``modes`` and
  ``high_quality`` (:func:`scratchgen.metrics.mode_coverage`, as the GAN demo scores its toys); for every
  toy ``test_elbo``, the evidence lower bound −L ≤ log p(x) on fresh points, in nats per point (one x_t
  per step and point; for the mixtures beside ``true_test_log_likelihood``); and the wall times.

**MNIST** (``--dataset mnist``, pixels in [−1, 1]): the ε-network is the U-Net of
:mod:`scratchgen.models.unet`, and the defaults are the configuration that gives digits in a ten-minute
CPU budget (docs/diffusion.md tells what was tried): 16 channels at 28×28 and 32 at 14×14 and 7×7, one
residual block per level; the network predicts v = √ᾱ_t ε − √(1 − ᾱ_t) x_0 rather than ε (see
:mod:`scratchgen.models.diffusion`), over the cosine schedule, T = 1000; Adam at 2e-3 for the first half
of training, falling linearly to 0 over the second, batch 32, 15 epochs (1,875 steps), and the samples
come from an exponential moving average of the weights (decay 0.995). 2,000 samples are drawn by
DDIM in 50 steps (η = 0) with x̂_0 held to [−1, 1], in batches of 250 shared among processes, one per
core (``--sample-processes``; :mod:`scratchgen.parallel`), and judged as the GAN's digits are
(:func:`scratchgen.metrics.judge_digits`: class shares, Inception Score beside the real digits',
Fréchet distance). It writes ``samples.png`` (100 samples), ``reverse_process.png`` (ten samples
through the reverse process, x_t from noise to digits), ``nearest_training.png`` (samples above their
nearest training digits), ``losses.png`` and ``metrics.json``. With ``--guidance W`` the network reads
the label too, trained with it dropped 10% of the time (``--drop-labels``), and samples 200 of each digit
guided with weight W (Ho & Salimans 2022); ``conditional_accuracy`` says how many the judge reads as
the digit asked for, and ``samples.png`` has one row per digit.
"""

from __future__ import annotations

import argparse
import contextlib
import time

import numpy as np

from scratchgen import backend, experiment, metrics, no_grad, optim, parallel, plot, tensor
from scratchgen.data import TOYS, DataLoader, load_mnist, to_float
from scratchgen.models.diffusion import PREDICTIONS, SCHEDULES, DenoisingMLP, Diffusion
from scratchgen.models.unet import UNet
from scratchgen.train import gradient_step

CURVE_EVERY = 100  # steps averaged into one point of the loss curve
SNAPSHOTS = (1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.0)  # the reverse process's pictures, at these fractions of T
SAMPLE_BATCH = 250  # images drawn at once on MNIST

# The defaults that differ between the toys (issue 20's reference configuration) and MNIST.
DEFAULTS = {
    "toy": {"epochs": 20, "batch_size": 256, "lr": 1e-3, "decay_from": 1.0, "schedule": "linear", "prediction": "eps",
            "ema": 0.999,
            "sampler": "ancestral", "eval_samples": 2500, "bound_points": 500, "clip": None},
    "mnist": {"epochs": 15, "batch_size": 32, "lr": 2e-3, "decay_from": 0.5, "schedule": "cosine", "prediction": "v",
              "ema": 0.995,
              "sampler": "ddim", "eval_samples": 2000, "bound_points": 0, "clip": 1.0},
}


def parse_args(argv=None):
    parser = experiment.demo_parser(__doc__.splitlines()[0], dataset="ring8", datasets=tuple(TOYS) + ("mnist",))
    # Flags whose default depends on the dataset are None here and filled in from DEFAULTS below.
    for flag in ("--epochs", "--batch-size", "--lr"):
        parser.set_defaults(**{flag[2:].replace("-", "_"): None})
    parser.add_argument("--steps-per-epoch", type=experiment.positive_int, default=1000,
                        help="toys: training steps between checkpoints; steps in all = --epochs x --steps-per-epoch "
                             "(MNIST: an epoch is one pass over the digits)")
    parser.add_argument("--decay-from", type=experiment.fraction, default=None,
                        help="the learning rate falls linearly to 0 from this fraction of training on (1: constant)")
    parser.add_argument("--T", type=experiment.positive_int, default=1000, help="diffusion steps")
    parser.add_argument("--schedule", choices=tuple(SCHEDULES), default=None,
                        help="betas: linear (Ho et al. 2020) or cosine (Nichol & Dhariwal 2021); toys linear, MNIST cosine")
    parser.add_argument("--prediction", choices=PREDICTIONS, default=None,
                        help="what the network predicts: the noise eps, x0, or v; toys eps, MNIST v")
    parser.add_argument("--ema", type=experiment.fraction_below_one, default=None,
                        help="decay of the moving average of the weights that samples (0: sample with the last "
                             "weights); toys 0.999, MNIST 0.995")
    parser.add_argument("--variance", choices=("posterior", "beta"), default="posterior",
                        help="sigma_t^2 of the reverse steps: the posterior's beta-tilde_t, or beta_t")
    parser.add_argument("--hidden", type=experiment.positive_int, nargs="+", default=[128, 128, 128],
                        help="hidden layer widths of the epsilon-network")
    parser.add_argument("--activation", choices=("relu", "silu"), default="relu", help="the network's nonlinearity")
    parser.add_argument("--sampler", choices=("ancestral", "ddim"), default=None,
                        help="ancestral sampling over all T steps, or DDIM over --ddim-steps; toys ancestral, MNIST ddim")
    parser.add_argument("--clip", type=experiment.positive_float, default=None,
                        help="hold the predicted x0 to [-clip, clip] while sampling; MNIST 1, toys none")
    parser.add_argument("--ddim-steps", type=experiment.positive_int, default=None,
                        help="DDIM's steps, evenly spaced from T down to 1 (with --sampler ddim; 50)")
    parser.add_argument("--eta", type=experiment.fraction, default=None,
                        help="DDIM's eta: 0 deterministic, 1 as noisy as ancestral sampling (with --sampler ddim; 0)")
    parser.add_argument("--eval-samples", type=experiment.positive_int, default=None,
                        help="samples scored; toys 2,500, MNIST 2,000")
    parser.add_argument("--bound-points", type=experiment.non_negative_int, default=None,
                        help="fresh points on which the bound is estimated (T network calls each; 0: skip); "
                             "toys 500, MNIST 0")
    mnist = parser.add_argument_group("MNIST")
    mnist.add_argument("--mnist-source", choices=("embedded", "mnist", "fashion_mnist"), default="embedded",
                       help="the digits (or Fashion-MNIST) to train on and judge against")
    mnist.add_argument("--base-channels", type=experiment.positive_int, default=16,
                       help="the U-Net's channels at full resolution")
    mnist.add_argument("--channel-mults", type=experiment.positive_int, nargs="+", default=[1, 2, 2],
                       help="the U-Net's channel multiplier per resolution (28, 14, 7 for three)")
    mnist.add_argument("--blocks", type=experiment.positive_int, default=1, help="residual blocks per level")
    mnist.add_argument("--limit", type=experiment.positive_int, default=None,
                       help="train on the first this many training digits only")
    mnist.add_argument("--guidance", type=experiment.non_negative_float, default=None,
                       help="train on the labels too and sample each digit with classifier-free guidance of this weight")
    mnist.add_argument("--drop-labels", type=experiment.fraction, default=0.1,
                       help="with --guidance: the share of labels replaced by 'no label' in training")
    mnist.add_argument("--sample-processes", type=experiment.positive_int, default=None,
                       help="processes that share the sampling, each drawing whole batches of 250 with one BLAS "
                            "thread (default: one per core; the samples do not depend on it)")
    mnist.add_argument("--judge-epochs", type=experiment.positive_int, default=metrics.JUDGE_EPOCHS,
                       help="epochs the MNIST judge (a ConvClassifier) trains for")
    # A testing aid, hidden from --help: train the MNIST judge on this many images only.
    mnist.add_argument("--judge-subset", type=experiment.positive_int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name, value in DEFAULTS["mnist" if args.dataset == "mnist" else "toy"].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.dataset != "mnist":
        given = [flag for flag in ("guidance", "judge_subset", "limit") if getattr(args, flag) is not None]
        if given:
            parser.error(f"--{given[0].replace('_', '-')} is for --dataset mnist")
    if args.sampler == "ddim":
        args.ddim_steps = 50 if args.ddim_steps is None else args.ddim_steps
        args.eta = 0.0 if args.eta is None else args.eta
        if args.ddim_steps > args.T:
            parser.error(f"--ddim-steps {args.ddim_steps} is more than --T {args.T}: DDIM visits a subset of the steps")
    elif args.ddim_steps is not None or args.eta is not None:
        parser.error("--ddim-steps and --eta are DDIM's settings and need --sampler ddim")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    # How to sample and what to score may change on --resume; everything else defines the model or its data.
    run = experiment.Run(args, name=f"diffusion_{args.dataset}",
                         may_change=("sampler", "ddim_steps", "eta", "clip", "eval_samples", "bound_points",
                                     "judge_epochs", "judge_subset", "sample_processes"))
    return train_mnist(args, run) if args.dataset == "mnist" else train_toy(args, run)


def train_toy(args, run) -> dict:
    """Train the MLP on fresh points of a toy for --epochs × --steps-per-epoch steps; sample and score it."""
    sampler, mixture = TOYS[args.dataset]
    reference = sampler(20_000, rng=args.seed)  # fixes the standardisation, from its own stream
    mean, scale = reference.mean(axis=0), reference.std(axis=0)
    model = Diffusion(DenoisingMLP(2, args.hidden, activation=args.activation), args.T, args.schedule, args.variance,
                      args.prediction)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    ema = optim.EMA(model, args.ema) if args.ema else None
    start = run.resume(model=model, optimizer=opt, **({"ema": ema} if ema else {}))
    run.state.setdefault("curves", {"epoch": [], "loss": []})

    with run.training():
        for epoch in range(start, args.epochs + 1):
            window, total = [], 0.0
            for step in run.progress(range(1, args.steps_per_epoch + 1), epoch):
                x0 = tensor((sampler(args.batch_size) - mean) / scale)  # fresh points, from scratchgen's seed
                opt.lr = optim.linear_decay(args.lr, (epoch - 1) * args.steps_per_epoch + step - 1,
                                            args.epochs * args.steps_per_epoch, args.decay_from)
                value = optimise(model.loss(x0), opt, ema, epoch=epoch, step=step)
                window.append(value)
                total += value
                if len(window) == CURVE_EVERY or step == args.steps_per_epoch:
                    window = record_point(run, (epoch - 1) * args.steps_per_epoch + step, window)
            run.log_epoch(epoch, loss=total / args.steps_per_epoch)
            run.save_checkpoint(epoch)
    final = {"steps": args.epochs * args.steps_per_epoch, "train_wall_time_s": run.elapsed}

    began = time.perf_counter()
    with averaged(ema):
        path = list(sampler_steps(model, args, args.eval_samples, dim=(2,)))
    final["sample_wall_time_s"] = time.perf_counter() - began
    samples = backend.to_numpy(path[-1][1]) * scale + mean  # device samples, host statistics
    snapshots = pick_snapshots(path, args.T, scale, mean)

    points = sampler(400_000, rng=args.seed + 2)  # for the pictures' bounds, and a density where none is known
    bounds, wide_bounds = picture_bounds(points, mean, scale)

    def true_density(bounds):
        return mixture.log_prob if mixture is not None else plot.histogram_log_density(points, bounds)

    title = f"{args.eval_samples:,} samples ({sampler_name(args)})"
    if mixture is not None:
        final.update(metrics.mode_coverage(samples, mixture))
        title += f": {final['modes']} modes, {100 * final['high_quality']:.1f}% high quality"
    plot.scatter_over_density(samples, run.path("samples.png"), true_density(bounds), bounds, title=title)
    plot.scatter_over_training(snapshots, run.path("reverse_process.png"), true_density(wide_bounds), wide_bounds,
                               columns=len(snapshots), label="t",
                               title="the reverse process: x_t from noise (t = T) to samples (t = 0)")
    plot.loss_curves(run.state["curves"], run.path("losses.png"), xlabel="step",
                     title="the simple loss E|eps - eps_theta(x_t, t)|^2")
    if args.bound_points:
        points = sampler(args.bound_points, rng=args.seed + 1)
        # The model's bound is for standardised points z = (x - mean)/scale; for x, add Σ log scale_d.
        with no_grad(), averaged(ema):
            bound = model.bound_terms(tensor((points - mean) / scale)).bound.numpy().mean() + np.log(scale).sum()
        final["test_elbo"] = -float(bound)
        if mixture is not None:
            final["true_test_log_likelihood"] = float(mixture.log_prob(points).mean())
    return run.finish(**final)


def train_mnist(args, run) -> dict:
    """Train the U-Net on the digits in [−1, 1] for --epochs passes; draw --eval-samples by the sampler
    from the averaged weights, and judge them."""
    images, labels = load_mnist(args.mnist_source, "train")
    images, labels = images[:args.limit], labels[:args.limit]
    conditional = args.guidance is not None
    net = UNet(1, args.base_channels, args.channel_mults, args.blocks, classes=10 if conditional else 0)
    model = Diffusion(net, args.T, args.schedule, args.variance, args.prediction)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    loader = DataLoader(to_float(images)[:, None] * 2 - 1, labels, batch_size=args.batch_size, shuffle=True,
                        seed=args.seed)
    ema = optim.EMA(model, args.ema) if args.ema else None
    start = run.resume(model=model, optimizer=opt, loader=loader, **({"ema": ema} if ema else {}))
    run.state.setdefault("curves", {"epoch": [], "loss": []})
    drop = args.drop_labels if conditional else 0.0

    with run.training():
        for epoch in range(start, args.epochs + 1):
            window, total, steps = [], 0.0, 0
            for steps, (x0, y) in enumerate(run.progress(loader, epoch), 1):
                opt.lr = optim.linear_decay(args.lr, (epoch - 1) * len(loader) + steps - 1, args.epochs * len(loader),
                                            args.decay_from)
                loss = model.loss(x0, y=y.data if conditional else None, drop_labels=drop)
                value = optimise(loss, opt, ema, epoch=epoch, step=steps)
                window.append(value)
                total += value
                if len(window) == CURVE_EVERY // 10:  # a point every 10 steps: an epoch of the digits is 125
                    window = record_point(run, (epoch - 1) * len(loader) + steps, window)
            run.log_epoch(epoch, loss=total / max(steps, 1))
            run.save_checkpoint(epoch)
    final = {"steps": args.epochs * len(loader), "parameters": sum(p.data.size for p in net.parameters()),
             "train_wall_time_s": run.elapsed}

    # The samples: 200 of each digit, in order, when the network reads labels; else unconditional. They are
    # drawn in batches, each from its own noise x_T drawn here, the batches shared among processes (one per
    # core, see scratchgen.parallel), each of which rebuilds the network from its averaged weights.
    asked = np.arange(args.eval_samples) * 10 // args.eval_samples if conditional else None
    began = time.perf_counter()
    with averaged(ema):
        weights = {name: np.array(backend.to_numpy(value)) for name, value in model.state_dict().items()}  # copies
    jobs = []
    for index, first in enumerate(range(0, args.eval_samples, SAMPLE_BATCH)):
        count = min(SAMPLE_BATCH, args.eval_samples - first)
        x_T = backend.to_numpy(backend.rng().standard_normal((count, 1, 28, 28), dtype=backend.DEFAULT_DTYPE))
        jobs.append((args, weights, x_T, None if asked is None else asked[first:first + count], index))
    batches = parallel.map_in_processes(draw_batch, jobs, args.sample_processes)
    final["sample_wall_time_s"] = time.perf_counter() - began
    snapshots = batches[0][1]
    samples = np.clip(np.concatenate([batch for batch, _ in batches]), -1, 1)
    images01 = (samples + 1) / 2  # in [0, 1], as the judge and the training images have them
    final.update(metrics.judge_digits(images01, args.mnist_source, epochs=args.judge_epochs,
                                      train_subset=args.judge_subset, verbose=not args.quiet, asked_labels=asked))
    if conditional:
        final["guidance"] = args.guidance

    how = f"{sampler_name(args)}, after {final['steps']:,} steps"
    scores = (f"Inception Score {final['inception_score']:.2f} (real digits {final['real_inception_score']:.2f}), "
              f"Fréchet distance {final['frechet_distance']:.1f}")
    if conditional:  # one row per digit: the first ten samples asked for each
        rows = np.concatenate([samples[asked == digit][:10] for digit in range(10)])
        plot.image_grid(rows, run.path("samples.png"), nrow=10, value_range=(-1, 1),
                        title=f"rows: digits 0-9 asked for, guidance w = {args.guidance:g} ({how})\n"
                              f"{100 * final['conditional_accuracy']:.1f}% read as asked; {scores}")
    else:
        plot.image_grid(samples[:100], run.path("samples.png"), nrow=10, value_range=(-1, 1),
                        title=f"100 samples ({how})\n{scores}")
    plot.samples_over_training(snapshots, run.path("reverse_process.png"), label="t", value_range=(-1, 1),
                               title="the reverse process: x_t from noise (t = T) to digits (t = 0)")
    plot.nearest_training(images01, to_float(images), run.path("nearest_training.png"))
    plot.loss_curves(run.state["curves"], run.path("losses.png"), xlabel="step",
                     title=f"the simple loss: mean squared error of the {args.prediction}-prediction")
    return run.finish(**final)


def draw_batch(args, weights: dict, x_T, y, index: int):
    """One batch of MNIST samples from noise x_T (and labels y), by the sampler that ``args`` names: a job of
    :func:`scratchgen.parallel.map_in_processes`, which may run it in a process of its own, so the network is
    built again from ``args`` and loaded with ``weights``. Any noise the sampler draws on the way comes from a
    stream of the batch's own (seeded from --seed and ``index``), so the samples do not depend on which
    process drew which batch. Returns the samples (N, 1, 28, 28) and, for the first batch, the snapshots of
    its first ten samples' reverse process."""
    net = UNet(1, args.base_channels, args.channel_mults, args.blocks, classes=10 if y is not None else 0)
    model = Diffusion(net, args.T, args.schedule, args.variance, args.prediction)
    model.load_state_dict(weights)
    snapshots = None
    with backend.fork_rng(args.seed * 1000 + index + 1):
        path = sampler_steps(model, args, len(x_T), dim=(1, 28, 28), y=y, x_T=x_T)
        if index == 0:  # the reverse process of the first batch's first ten samples
            path = list(path)
            snapshots = pick_snapshots(path, args.T, 1.0, 0.0, keep=10)
        for _, x in path:
            pass
    return backend.to_numpy(x), snapshots


def optimise(loss, opt, ema, *, epoch: int, step: int) -> float:
    """:func:`~scratchgen.train.gradient_step` on ``loss``, then the moving average (if any) updated."""
    value = gradient_step(loss, opt, epoch=epoch, step=step)
    if ema:
        ema.update()
    return value


def record_point(run, step: int, window: list) -> list:
    """Add the mean loss of ``window`` as the loss curve's point at ``step``; returns a fresh window."""
    run.state["curves"]["epoch"].append(step)
    run.state["curves"]["loss"].append(float(np.mean(window)))
    return []


def averaged(ema):
    """The block runs with the moving average's weights in the model, or with its own if there is none."""
    return ema.average_parameters() if ema else contextlib.nullcontext()


def sampler_steps(model, args, n: int, dim, y=None, x_T=None):
    """The chosen sampler's path (t, x_t) for n samples of shape dim (and labels y, guided by --guidance),
    from noise x_T (drawn if None)."""
    guidance = args.guidance if y is not None else 0.0
    if args.sampler == "ancestral":
        return model.ancestral_steps(n, x_T, dim=dim, y=y, guidance=guidance, clip=args.clip)
    return model.ddim_steps(n, args.ddim_steps, args.eta, x_T, dim=dim, y=y, guidance=guidance, clip=args.clip)


def sampler_name(args) -> str:
    if args.sampler == "ancestral":
        return f"ancestral, {args.T} steps"
    return f"DDIM, {args.ddim_steps} steps, eta {args.eta:g}"


def pick_snapshots(path, T: int, scale, mean, keep: int | None = None) -> list:
    """(t, x_t in data units) at the visited steps nearest to SNAPSHOTS' fractions of T, each step once;
    of the first ``keep`` samples only, if given."""
    steps = np.array([t for t, _ in path])
    chosen = sorted({int(np.abs(steps - fraction * T).argmin()) for fraction in SNAPSHOTS})
    return [(int(path[i][0]), backend.to_numpy(path[i][1][:keep]) * scale + mean) for i in chosen]


def picture_bounds(points, mean, scale):
    """Square bounds around the data (for the samples) and, wider, around the data and most of the noise
    x_T ~ N(0, I) in standardised units (for the reverse process)."""
    def square(low, high, margin):
        centre, half = (low + high) / 2, (0.5 + margin) * (high - low).max()
        return tuple((float(c - half), float(c + half)) for c in centre)

    low, high = points.min(axis=0), points.max(axis=0)
    wide = square(np.minimum(low, mean - 2.5 * scale), np.maximum(high, mean + 2.5 * scale), 0.05)
    return square(low, high, 0.1), wide


if __name__ == "__main__":
    main()

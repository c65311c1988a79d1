"""Train a denoising diffusion model (Ho et al. 2020) on a 2-D toy, sample it, and judge its samples.

    python demos/diffusion.py --dataset ring8         # 8 Gaussians on a circle
    python demos/diffusion.py --dataset grid25        # 25 Gaussians on a grid
    python demos/diffusion.py --dataset two_moons     # two half circles
    python demos/diffusion.py --sampler ddim --ddim-steps 50 --eta 0    # DDIM (Song et al. 2021) to sample

The defaults are issue 20's reference configuration: T = 1000 steps, the linear schedule (β from 1e-4 to
0.02), the ε-network :class:`~scratchgen.models.diffusion.DenoisingMLP` (three hidden layers of 128, ReLU,
a 64-number sinusoidal code of the step), Adam at 1e-3, batches of 256 fresh points, 20 epochs of 1,000
steps = 20,000 steps, then ancestral sampling of 2,500 points over all 1,000 steps. The model sees the
points standardised (mean 0, variance 1 per coordinate); samples are mapped back before they are scored.

Writes into --out (default runs/diffusion_<dataset>):

* ``samples.png``: the 2,500 samples over the true density (for two_moons and swiss_roll, a histogram of many points);
* ``reverse_process.png``: the reverse process as a row of snapshots x_t, from pure noise (t = T) to
  samples (t = 0): the diffusion counterpart of the GAN's samples through training;
* ``losses.png``: the simple loss E‖ε − ε_θ(x_t, t)‖², every 100 steps;
* ``metrics.json``, and the final metrics as one JSON line: for ring8 and grid25 ``modes`` and
  ``high_quality`` (:func:`scratchgen.metrics.mode_coverage`, as the GAN demo scores its toys); for every
  toy ``test_elbo``, the evidence lower bound −L ≤ log p(x) on fresh points, in nats per point (one x_t
  per step and point; for the mixtures beside ``true_test_log_likelihood``); and the wall times.
MNIST (the issue's U-Net) is not implemented yet.
"""

from __future__ import annotations

import time

import numpy as np

from scratchgen import backend, experiment, metrics, no_grad, optim, plot, tensor
from scratchgen.data import TOYS
from scratchgen.models.diffusion import SCHEDULES, DenoisingMLP, Diffusion
from scratchgen.train import check_finite

CURVE_EVERY = 100  # steps averaged into one point of the loss curve
SNAPSHOTS = (1.0, 0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.0)  # the reverse process's pictures, at these fractions of T


def parse_args(argv=None):
    parser = experiment.demo_parser(__doc__.splitlines()[0], dataset="ring8", datasets=tuple(TOYS) + ("mnist",),
                                    epochs=20, batch_size=256, lr=1e-3)
    parser.add_argument("--steps-per-epoch", type=experiment.positive_int, default=1000,
                        help="training steps between checkpoints; steps in all = --epochs x --steps-per-epoch")
    parser.add_argument("--T", type=experiment.positive_int, default=1000, help="diffusion steps")
    parser.add_argument("--schedule", choices=tuple(SCHEDULES), default="linear",
                        help="betas: linear (Ho et al. 2020) or cosine (Nichol & Dhariwal 2021)")
    parser.add_argument("--variance", choices=("posterior", "beta"), default="posterior",
                        help="sigma_t^2 of the reverse steps: the posterior's beta-tilde_t, or beta_t")
    parser.add_argument("--hidden", type=experiment.positive_int, nargs="+", default=[128, 128, 128],
                        help="hidden layer widths of the epsilon-network")
    parser.add_argument("--activation", choices=("relu", "silu"), default="relu", help="the network's nonlinearity")
    parser.add_argument("--sampler", choices=("ancestral", "ddim"), default="ancestral",
                        help="ancestral sampling over all T steps, or DDIM over --ddim-steps")
    parser.add_argument("--ddim-steps", type=experiment.positive_int, default=None,
                        help="DDIM's steps, evenly spaced from T down to 1 (with --sampler ddim; 50)")
    parser.add_argument("--eta", type=experiment.fraction, default=None,
                        help="DDIM's eta: 0 deterministic, 1 as noisy as ancestral sampling (with --sampler ddim; 0)")
    parser.add_argument("--eval-samples", type=experiment.positive_int, default=2500, help="samples scored")
    parser.add_argument("--bound-points", type=experiment.non_negative_int, default=500,
                        help="fresh points on which the bound is estimated (T network calls each; 0: skip)")
    args = parser.parse_args(argv)
    if args.dataset == "mnist":
        parser.error("--dataset mnist is not implemented yet (it needs issue 20's U-Net); "
                     f"choose one of the toys: {', '.join(TOYS)}")
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
                         may_change=("sampler", "ddim_steps", "eta", "eval_samples", "bound_points"))
    sampler, mixture = TOYS[args.dataset]
    reference = sampler(20_000, rng=args.seed)  # fixes the standardisation, from its own stream
    mean, scale = reference.mean(axis=0), reference.std(axis=0)
    model = Diffusion(DenoisingMLP(2, args.hidden, activation=args.activation), args.T, args.schedule, args.variance)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    start = run.resume(model=model, optimizer=opt)
    run.state.setdefault("curves", {"epoch": [], "loss": []})

    with run.training():
        for epoch in range(start, args.epochs + 1):
            window, total = [], 0.0
            for step in run.progress(range(1, args.steps_per_epoch + 1), epoch):
                x0 = tensor((sampler(args.batch_size) - mean) / scale)  # fresh points, from scratchgen's seed
                loss = model.loss(x0)
                value = check_finite(loss, epoch=epoch, step=step)
                opt.zero_grad()
                loss.backward()
                opt.step()
                window.append(value)
                total += value
                if len(window) == CURVE_EVERY or step == args.steps_per_epoch:
                    run.state["curves"]["epoch"].append((epoch - 1) * args.steps_per_epoch + step)
                    run.state["curves"]["loss"].append(float(np.mean(window)))
                    window = []
            run.log_epoch(epoch, loss=total / args.steps_per_epoch)
            run.save_checkpoint(epoch)
    final = {"steps": args.epochs * args.steps_per_epoch, "train_wall_time_s": run.elapsed}

    began = time.perf_counter()
    path = list(model.ancestral_steps(args.eval_samples) if args.sampler == "ancestral"
                else model.ddim_steps(args.eval_samples, args.ddim_steps, args.eta))
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
        with no_grad():
            bound = model.bound_terms(tensor((points - mean) / scale)).bound.numpy().mean() + np.log(scale).sum()
        final["test_elbo"] = -float(bound)
        if mixture is not None:
            final["true_test_log_likelihood"] = float(mixture.log_prob(points).mean())
    return run.finish(**final)


def sampler_name(args) -> str:
    if args.sampler == "ancestral":
        return f"ancestral, {args.T} steps"
    return f"DDIM, {args.ddim_steps} steps, eta {args.eta:g}"


def pick_snapshots(path, T: int, scale, mean) -> list:
    """(t, x_t in data units) at the visited steps nearest to SNAPSHOTS' fractions of T, each step once."""
    steps = np.array([t for t, _ in path])
    chosen = sorted({int(np.abs(steps - fraction * T).argmin()) for fraction in SNAPSHOTS})
    return [(int(path[i][0]), backend.to_numpy(path[i][1]) * scale + mean) for i in chosen]


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

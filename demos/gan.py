"""Train a GAN (Goodfellow et al. 2014, Algorithm 1) on a 2-D mixture or on MNIST, and judge its samples.

    python demos/gan.py --dataset ring8      # 8 Gaussians on a circle: 20 epochs of 1,000 iterations
    python demos/gan.py --dataset grid25     # 25 Gaussians on a grid: 40 epochs of 1,000 iterations
    python demos/gan.py --dataset mnist      # the small DCGAN on the embedded MNIST subset
    python demos/gan.py --loss wgan-gp       # WGAN-GP (Gulrajani et al. 2017): a critic with a gradient penalty
    python demos/gan.py --r1 10              # the non-saturating GAN with the R1 penalty (Mescheder et al. 2018)
    python demos/gan.py --preset goodfellow2014   # Algorithm 1 as stated: SGD with momentum, the saturating loss
    python demos/gan.py --preset goodfellow2014 --beta1 0.9 --compare-losses 1000   # the saturating loss's
                                             # vanishing gradient: loss_comparison.png (docs/images/gan_saturating.png)
    mpiexec -n 2 python demos/gan.py --dataset mnist --distributed --batch-size 32   # data-parallel, 2 x 32

A GAN counts *iterations* (k discriminator steps, then one generator step), not passes over a dataset:
here an "epoch" is ``--iterations-per-epoch`` iterations, after which the demo logs, snapshots its
samples and writes a checkpoint, so iterations in all = ``--epochs`` × ``--iterations-per-epoch``.
The defaults, per dataset, are the configurations whose figures docs/gan.md reports. ``--loss wgan-gp``
changes the defaults to the WGAN-GP paper's Algorithm 1: 5 critic steps per generator step, λ = 10,
Adam with β2 = 0.9 (β1 = 0.5, as in the authors' code for the toys and MNIST; Algorithm 1 has 0), lr
1e-4 on MNIST; on the toys, to the authors' toy setting, λ = 0.1 and no packing, for 10,000 (ring) or
20,000 (grid) generator steps at the dataset's learning rate. Flags given on the command line still win. Each WGAN-GP iteration takes 5 critic steps, each with a
double backward: on MNIST about 0.38 s an iteration against the GAN's 0.09 s (two cores), so there the
dataset's 5,500 iterations take over half an hour; pass fewer ``--epochs`` for a quicker look.

Writes into --out (default runs/gan_<dataset>):

* ``samples.png``: for the mixtures, 2,500 samples over the true density; for MNIST, 100 samples;
* ``nearest_training.png`` (MNIST): samples above their nearest training images, a check for memorisation;
* ``samples_over_training.png``: the same noise through the generator after each few epochs;
* ``losses.png`` (the two players' losses, and the penalty when there is one) and ``scores.png`` (mean D(x)
  and D(G(z)); for WGAN-GP, the critic's Wasserstein estimate mean D(x) − mean D(G(z))), against iterations;
* ``metrics.json``, and the final metrics as one JSON line: for the mixtures ``modes`` and
  ``high_quality`` (see :func:`scratchgen.metrics.mode_coverage`); for MNIST ``class_shares``,
  ``inception_score`` and ``frechet_distance``, each beside its ``real_`` counterpart for real test images,
  and the median distance from a sample, and from a test image, to its nearest training image (see
  :func:`scratchgen.metrics.memorisation_check`).
"""

from __future__ import annotations

import argparse

import numpy as np

from scratchgen import distributed, experiment, manual_seed, metrics, optim, plot, tensor
from scratchgen.data import DataLoader, grid25_mixture, load_mnist, ring8_mixture, to_float
from scratchgen.models.gan import (
    GENERATOR_LOSSES, DCGANDiscriminator, DCGANGenerator, GANTrainer, MLPDiscriminator, MLPGenerator,
)
from scratchgen.ops import stack
from scratchgen.train import check_finite

# The configuration of each dataset; any of them can be overridden on the command line.
DEFAULTS = {
    "ring8": dict(epochs=20, iterations_per_epoch=1000, batch_size=100, lr=2e-4, latent_dim=2, packing=2,
                  decay_from=0.5, eval_samples=2500, r1_every=1),
    # On the grid, 2e-4 left two of five seeds under 60% high-quality samples; 5e-4 gave 76-91% on all five.
    "grid25": dict(epochs=40, iterations_per_epoch=1000, batch_size=100, lr=5e-4, latent_dim=2, packing=2,
                   decay_from=0.5, eval_samples=2500, r1_every=1),
    # On MNIST packing 2 slowed learning (Inception Score 44% of the real images' after 3,000 iterations,
    # against 53-58% without). 22 x 250 = 5,500 iterations keep a run under 10 minutes on two cores with the
    # judge's training (6,000 took 601 s).
    # R1's double backward costs about a third of a step on the DCGAN pair; taken lazily, on one D step in
    # 16 (StyleGAN2's interval), a run with --r1 stays within the same 10 minutes.
    "mnist": dict(epochs=22, iterations_per_epoch=250, batch_size=64, lr=2e-4, latent_dim=100, packing=1,
                  decay_from=0.5, eval_samples=10000, r1_every=16),
}
# The defaults of each game, which win over the dataset's where both set one. WGAN-GP's are its paper's
# Algorithm 1 (n_critic = 5, lambda = 10, beta2 = 0.9), with beta1 = 0.5 as in the authors' code for their toy
# and MNIST experiments (Algorithm 1 has beta1 = 0).
LOSS_DEFAULTS = {
    "non_saturating": dict(k=1, beta1=0.5, beta2=0.999),
    "saturating": dict(k=1, beta1=0.5, beta2=0.999),
    "wgan-gp": dict(k=5, beta1=0.5, beta2=0.9, gp_lambda=10.0),
}
# A game's defaults on one dataset, which win over both tables above. WGAN-GP on the toys: the authors' toy
# setting (lambda = 0.1, no packing; 10,000 generator steps on the ring, 20,000 on the grid) at the dataset's
# learning rate, falling linearly to 0 over the second half. The paper's 1e-4 left the grid's generator
# spread over the whole square after 20,000 steps (12% high-quality samples over seeds 0-4); at the grid's
# 5e-4 it gathers onto all 25 modes (over 90%). On MNIST, the paper's 1e-4.
GAME_DATASET_DEFAULTS = {
    ("wgan-gp", "ring8"): dict(epochs=10, packing=1, gp_lambda=0.1, decay_from=0.5),
    ("wgan-gp", "grid25"): dict(epochs=20, packing=1, gp_lambda=0.1, decay_from=0.5),
    ("wgan-gp", "mnist"): dict(lr=1e-4),
}
# Named configurations, which win over every table above (flags given on the command line still win).
# goodfellow2014: Algorithm 1 as the paper states it: SGD with momentum, k = 1, the saturating loss
# log(1 - D(G(z))), a constant learning rate, D judging one sample at a time. Momentum 0.5 is the paper's
# code's (pylearn2, which raised it to 0.7 later). On ring8 at momentum 0.9 and lr 0.01, D won within
# 200 iterations: the saturating G then stalled (D(G(z)) ~ 0, gradient norm ~ 1e-5), and the non-saturating
# G's gradient grew until the game overflowed (NaN after 275-585 iterations, seeds 0-2). The preset's
# full 20,000 iterations on ring8 (seed 0) end on 2 of the 8 modes: Algorithm 1 alone collapses there.
PRESETS = {
    "goodfellow2014": dict(optimizer="sgd", beta1=0.5, lr=0.01, k=1, loss="saturating", packing=1, decay_from=1.0),
}
MIXTURES = {"ring8": ring8_mixture, "grid25": grid25_mixture}
CURVE_EVERY = 100  # iterations averaged into one point of the loss curves
COMPARED_GAMES = [(loss, k) for loss in ("saturating", "non_saturating") for k in (1, 5)]  # --compare-losses


def parse_args(argv=None):
    parser = experiment.demo_parser(__doc__.splitlines()[0], dataset="ring8", datasets=tuple(DEFAULTS),
                                    epochs=None, batch_size=None, lr=None, distributed=True)
    parser.add_argument("--iterations-per-epoch", type=experiment.positive_int, default=None,
                        help="iterations between checkpoints")
    parser.add_argument("--k", type=experiment.positive_int, default=None,
                        help="discriminator (critic) steps per iteration; 1, or 5 (n_critic) with --loss wgan-gp")
    parser.add_argument("--preset", choices=tuple(PRESETS), default=None,
                        help="a named configuration: goodfellow2014, Algorithm 1 as the paper states it (SGD with "
                             "momentum, k = 1, the saturating loss); flags given still win")
    parser.add_argument("--compare-losses", type=experiment.positive_int, default=None, metavar="ITERATIONS",
                        help="instead of training, play the saturating and non-saturating games with k = 1 and 5 "
                             "for ITERATIONS iterations each, from the same start, and draw mean D(G(z)) and G's "
                             "gradient norm per iteration into loss_comparison.png (the mixtures only)")
    parser.add_argument("--loss", choices=GENERATOR_LOSSES, default=None,
                        help="the game: the generator's loss of Goodfellow et al. (non_saturating, the default, or "
                             "saturating), or wgan-gp, a critic with a gradient penalty (Gulrajani et al. 2017)")
    parser.add_argument("--gp-lambda", type=experiment.non_negative_float, default=None, metavar="LAMBDA",
                        help="weight of WGAN-GP's gradient penalty, with --loss wgan-gp only: 10 as in the paper")
    parser.add_argument("--r1", type=experiment.non_negative_float, default=0.0, metavar="GAMMA",
                        help="weight of the R1 penalty GAMMA/2 E|grad_x D(x)|^2 on real data (Mescheder et al. "
                             "2018), added to D's loss; with the non_saturating or saturating loss; 0: off")
    parser.add_argument("--r1-every", type=experiment.positive_int, default=None, metavar="N",
                        help="add the R1 penalty (times N) on one discriminator step in N, StyleGAN2's lazy "
                             "regularisation: 1, or the dataset's default")
    parser.add_argument("--optimizer", choices=("adam", "sgd"), default=None,
                        help="Adam (betas = --beta1, --beta2), the default, or SGD with momentum (= --beta1), for "
                             "both players")
    parser.add_argument("--beta1", type=experiment.fraction_below_one, default=None,
                        help="Adam's beta1, or SGD's momentum: 0.5")
    parser.add_argument("--beta2", type=experiment.fraction_below_one, default=None,
                        help="Adam's beta2: 0.999, or 0.9 with --loss wgan-gp")
    parser.add_argument("--decay-from", type=experiment.fraction, default=None,
                        help="fraction of training after which the learning rate falls linearly to 0 (1: never); "
                             "the schedule follows --epochs, so resuming with more epochs changes it")
    parser.add_argument("--packing", type=experiment.positive_int, default=None,
                        help="samples the discriminator judges at once (PacGAN)")
    parser.add_argument("--latent-dim", type=experiment.positive_int, default=None, help="dimension of the noise z")
    parser.add_argument("--model", choices=("dcgan", "dense"), default=None,
                        help="networks for MNIST: dcgan (the default) or dense; the mixtures always use the dense pair")
    parser.add_argument("--mnist-source", choices=("embedded", "mnist", "fashion_mnist"), default="embedded",
                        help="images for --dataset mnist (see scratchgen.data.load_mnist)")
    parser.add_argument("--eval-samples", type=experiment.positive_int, default=None,
                        help="samples the final metrics judge")
    parser.add_argument("--judge-epochs", type=experiment.positive_int, default=metrics.JUDGE_EPOCHS,
                        help="epochs the MNIST judge (a ConvClassifier) trains for; the Inception Score depends on it")
    tables = {**{f"preset {name}": table for name, table in PRESETS.items()},
              **{f"{game} on {dataset}": table for (game, dataset), table in GAME_DATASET_DEFAULTS.items()},
              **LOSS_DEFAULTS, **DEFAULTS}
    parser.epilog = ("Unset flags take the --preset's values, then the defaults of the game (--loss) on the dataset, "
                     "then the game's, then the dataset's: " + "; ".join(f"{name}: " + ", ".join(f"{key}={value}" for key, value in table.items())
                                               for name, table in tables.items()))
    # A testing aid, hidden from --help: train the MNIST judge on this many images only.
    parser.add_argument("--judge-subset", type=experiment.positive_int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    for name, value in PRESETS.get(args.preset, {}).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    args.loss = args.loss or "non_saturating"
    args.optimizer = args.optimizer or "adam"
    # The toys always play with the dense pair: record it, so that metrics.json names the networks used.
    if args.dataset in MIXTURES and args.model == "dcgan":
        parser.error("--model dcgan is for --dataset mnist; the 2-D mixtures use the dense pair")
    args.model = args.model or ("dense" if args.dataset in MIXTURES else "dcgan")
    if args.compare_losses and (args.dataset not in MIXTURES or args.loss == "wgan-gp" or args.resume
                                or getattr(args, "distributed", False)):
        parser.error("--compare-losses plays the two GAN losses' short games on a 2-D mixture (ring8 or grid25), "
                     "in one process: not with --dataset mnist, --loss wgan-gp, --resume or --distributed")
    # Refused here, before defaults are filled in, so that the message names the flag the user gave.
    if args.loss == "wgan-gp" and args.r1:
        parser.error("--r1 is for the non_saturating and saturating losses; --loss wgan-gp has its own "
                     "gradient penalty (--gp-lambda)")
    if args.r1_every is not None and not args.r1:
        parser.error("--r1-every spaces out the R1 penalty, which needs --r1 GAMMA")
    if args.loss != "wgan-gp" and args.gp_lambda is not None:
        parser.error(f"--gp-lambda weights WGAN-GP's gradient penalty and needs --loss wgan-gp, not --loss {args.loss}")
    # Fill in what was not given: the game on this dataset first, then the game (lr), then the dataset.
    for name, value in {**DEFAULTS[args.dataset], **LOSS_DEFAULTS[args.loss],
                        **GAME_DATASET_DEFAULTS.get((args.loss, args.dataset), {})}.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.batch_size % args.packing:
        parser.error(f"--packing {args.packing} must divide --batch-size {args.batch_size}: the discriminator "
                     f"judges the batch in packs of {args.packing}")
    if not args.r1:
        args.r1_every = 1  # without R1 its interval means nothing: record what the trainer uses
    return args


def build(args, comm=None):
    """The two networks and their optimisers, wrapped in the trainer; with ``comm`` (data-parallel), both
    networks start from rank 0's weights and each player's optimiser averages its gradients over the ranks."""
    if args.dataset in MIXTURES:
        generator = MLPGenerator(args.latent_dim, (2,))
        discriminator = MLPDiscriminator((2,), packing=args.packing)
    elif args.model == "dcgan":
        generator, discriminator = DCGANGenerator(args.latent_dim), DCGANDiscriminator(packing=args.packing)
    else:
        generator = MLPGenerator(args.latent_dim, (1, 28, 28), hidden=(256, 512), tanh=True)
        discriminator = MLPDiscriminator((1, 28, 28), hidden=(512, 256), packing=args.packing)

    def optimizer(params):
        if args.optimizer == "sgd":
            chosen = optim.SGD(params, lr=args.lr, momentum=args.beta1)
        else:
            chosen = optim.Adam(params, lr=args.lr, betas=(args.beta1, args.beta2))
        return chosen if comm is None else distributed.DistributedOptimizer(chosen, comm)

    if comm is not None:
        distributed.broadcast_parameters(generator, comm)
        distributed.broadcast_parameters(discriminator, comm)

    return GANTrainer(generator, discriminator, optimizer(generator.parameters()),
                      optimizer(discriminator.parameters()), k=args.k, loss=args.loss, gp_lambda=args.gp_lambda,
                      r1_gamma=args.r1, r1_every=args.r1_every)


def main(argv=None) -> dict:
    args = parse_args(argv)
    # The final evaluation's flags may change on --resume; every other one defines the game or the data.
    if args.compare_losses:
        return compare_losses(args, experiment.Run(args, name=f"gan_{args.dataset}_losses"))
    run = experiment.Run(args, name=f"gan_{args.dataset}", may_change=("eval_samples", "judge_epochs", "judge_subset"))
    trainer = build(args, run.comm)
    if run.comm is not None:  # each rank its own noise (and, on the toys, its own real samples)
        distributed.seed_ranks(args.seed, run.comm)
    mixture = MIXTURES[args.dataset]() if args.dataset in MIXTURES else None
    if mixture is not None:
        loader = None
        real_batch = lambda: tensor(mixture.sample(args.batch_size))  # noqa: E731  fresh samples, from scratchgen's seed
    else:
        images, _ = load_mnist(args.mnist_source, "train")
        # (N, 1, 28, 28) in [-1, 1], the range of G's tanh
        loader = DataLoader(to_float(images)[:, None] * 2 - 1, batch_size=args.batch_size, shuffle=True,
                            seed=args.seed, drop_last=True, shard=(run.rank, run.world_size))
        batches = loader.endless()  # refused at once if an epoch holds no batch (a batch larger than the data)
        real_batch = lambda: next(batches)[0]  # noqa: E731
    # Fixed codes for the pictures through training, from their own generator: the training stream is untouched.
    fixed_noise = tensor(np.random.default_rng(args.seed).standard_normal(
        (500 if mixture is not None else 20, args.latent_dim), dtype=np.float32))
    start = run.resume(trainer=trainer, **({} if loader is None else {"loader": loader}))
    run.state.setdefault("snapshots", [])
    run.state.setdefault("curves", {"epoch": []})

    total = args.epochs * args.iterations_per_epoch
    with run.training():
        for epoch in range(start, args.epochs + 1):
            summary = train_epoch(args, run, trainer, real_batch, total, epoch)
            if run.comm is not None:
                distributed.average_batch_norm_statistics(trainer.generator, run.comm)
                distributed.average_batch_norm_statistics(trainer.discriminator, run.comm)
            if mixture is not None:
                summary.update(metrics.mode_coverage(trainer.sample(args.eval_samples), mixture))
            if epoch in snapshot_epochs(args.epochs):
                run.state["snapshots"].append([trainer.iteration,
                                               trainer.sample(len(fixed_noise), noise=fixed_noise).numpy()])
            run.log_epoch(epoch, **summary)
            run.save_checkpoint(epoch)

    if not run.is_main_process:  # rank 0 alone evaluates at the end and draws
        return run.finish(iterations=trainer.iteration)
    samples = trainer.sample(args.eval_samples)
    final = {"iterations": trainer.iteration}
    if mixture is not None:
        final.update(report_mixture(args, run, samples, mixture, trainer.iteration))
    else:
        final.update(report_mnist(args, run, samples, trainer.iteration))
    plot_curves(args, run, run.state["curves"])
    return run.finish(**final)


def compare_losses(args, run) -> dict:
    """--compare-losses: the saturating and non-saturating games, k = 1 and 5, each for that many iterations
    at a constant learning rate, from the same initial weights and seed; per iteration, mean D(G(z)) (the
    last D step's, on its fresh noise, before its update) and G's gradient norm, into loss_comparison.png.
    A game is stopped at its first non-finite statistic and reported as diverged there."""
    mixture = MIXTURES[args.dataset]()
    panels = {"mean D(G(z))": {}, "norm of G's gradient": {}}
    final = {}
    for loss, k in COMPARED_GAMES:
        manual_seed(args.seed)  # the same initial weights, and the same first data, in every game
        trainer = build(argparse.Namespace(**{**vars(args), "loss": loss, "k": k}))
        scores, norms, diverged_at = [], [], None
        for iteration in run.progress(range(1, args.compare_losses + 1), epoch=1):
            stats = trainer.train_iteration(lambda: tensor(mixture.sample(args.batch_size)))
            score, norm = stats["fake_score"].item(), stats["g_grad_norm"].item()
            if not (np.isfinite(score) and np.isfinite(norm)):
                diverged_at = iteration
                break
            scores.append(score)
            norms.append(norm)
        name = f"{loss}, k = {k}" + ("" if diverged_at is None else f" (NaN at iteration {diverged_at})")
        iterations = list(range(1, len(scores) + 1))
        panels["mean D(G(z))"][name] = (iterations, scores)
        panels["norm of G's gradient"][name] = (iterations, norms)
        key = f"{loss}_k{k}"  # iterations played (fewer than asked: diverged), then their last 100's statistics
        final.update({f"{key}_iterations": len(scores), f"{key}_fake_score": float(np.mean(scores[-100:])),
                      f"{key}_g_grad_norm": float(np.median(norms[-100:]))})
    momentum = f"momentum {args.beta1:g}" if args.optimizer == "sgd" else f"betas ({args.beta1:g}, {args.beta2:g})"
    plot.curve_panels(panels, run.path("loss_comparison.png"), logy=("norm of G's gradient",),
                      title=f"{args.dataset}: {args.optimizer.upper()}, lr {args.lr:g}, {momentum}, "
                            f"packing {args.packing}, seed {args.seed}")
    return run.finish(**final)


def plot_curves(args, run, curves: dict) -> None:
    """losses.png: both players' losses (D's with its penalty) and the penalty alone; scores.png: what D says,
    mean D(x) and D(G(z)) as probabilities, or for the WGAN-GP critic its Wasserstein estimate."""
    if args.loss == "wgan-gp":
        losses = {"critic: mean D(G(z)) - mean D(x) + GP": curves["d_loss"], "G: -mean D(G(z))": curves["g_loss"],
                  f"gradient penalty (lambda = {args.gp_lambda:g})": curves["gradient_penalty"]}
        scores = {"mean D(x) - mean D(G(z))": curves["wasserstein"]}
        title = "the critic's estimate of the Wasserstein distance"
    else:
        losses = {"D: -V(D, G)" + (" + R1" if args.r1 else ""): curves["d_loss"], f"G: {args.loss}": curves["g_loss"]}
        if args.r1:
            losses[f"R1 penalty (gamma = {args.r1:g})"] = curves["r1_penalty"]
        scores = {"mean D(x)": curves["real_score"], "mean D(G(z))": curves["fake_score"]}
        title = "the discriminator's verdicts"
    plot.loss_curves({"epoch": curves["epoch"], **losses}, run.path("losses.png"), xlabel="iteration",
                     title="the two players' losses")
    plot.loss_curves({"epoch": curves["epoch"], **scores}, run.path("scores.png"), xlabel="iteration", title=title)


def train_epoch(args, run, trainer, real_batch, total: int, epoch: int) -> dict:
    """--iterations-per-epoch iterations of Algorithm 1; adds a point to the curves every CURVE_EVERY
    iterations and returns the epoch's mean statistics. Raises Diverged, naming the first iteration
    where either player's loss is NaN or infinite, at the next point of the curves."""
    window, points, first = [], [], 1
    for step in run.progress(range(1, args.iterations_per_epoch + 1), epoch):
        lr = optim.linear_decay(args.lr, trainer.iteration, total, args.decay_from)
        trainer.generator_optimizer.lr = trainer.discriminator_optimizer.lr = lr
        window.append(trainer.train_iteration(real_batch))
        if len(window) == CURVE_EVERY or trainer.iteration % args.iterations_per_epoch == 0:
            # One host read per logged point (on a GPU, reading a loss waits for it), which still finds
            # the first step whose loss is NaN or infinite, at most CURVE_EVERY iterations late.
            table = window_table(window)
            for offset in range(len(window)):
                check_finite(table["d_loss"][offset], epoch=epoch, step=first + offset, name="D's loss")
                check_finite(table["g_loss"][offset], epoch=epoch, step=first + offset, name="G's loss")
            means = {name: float(values.mean()) for name, values in table.items()}
            record(run.state["curves"], trainer.iteration, means)
            points.append((len(window), means))
            window, first = [], step + 1
    return {name: sum(n * means[name] for n, means in points) / sum(n for n, _ in points) for name in points[0][1]}


def report_mixture(args, run, samples, mixture, iterations: int) -> dict:
    """Modes covered and high-quality share of the samples; the samples over the density, and through training."""
    result = metrics.mode_coverage(samples, mixture)
    bounds = (-1.5, 1.5) if args.dataset == "ring8" else (-5.5, 5.5)
    plot.scatter_over_density(samples, run.path("samples.png"), mixture.log_prob, bounds=bounds, modes=mixture.means,
                              title=f"{len(samples)} samples after {iterations:,} iterations: "
                                    f"{result['modes']} of {len(mixture)} modes, "
                                    f"{100 * result['high_quality']:.1f}% high quality")
    codes = len(run.state["snapshots"][0][1])
    plot.scatter_over_training(run.state["snapshots"], run.path("samples_over_training.png"), mixture.log_prob,
                               bounds=bounds, label="iteration", modes=mixture.means,
                               title=f"the same {codes} codes z through G as training goes on (circles: the "
                                     f"{len(mixture)} true modes)")
    return result


def report_mnist(args, run, samples, iterations: int) -> dict:
    """Class shares, Inception Score and Fréchet distance of the samples, and of real images (the ceiling);
    a grid of samples, and the fixed codes through training."""
    fake_images = (samples.numpy() + 1) / 2  # in [0, 1], as the judge and the training images have them
    result = metrics.judge_digits(fake_images, args.mnist_source, epochs=args.judge_epochs,
                                  train_subset=args.judge_subset, verbose=not args.quiet)
    real_train = to_float(load_mnist(args.mnist_source, "train")[0])
    plot.nearest_training(fake_images, real_train, run.path("nearest_training.png"))
    plot.image_grid(samples[:100], run.path("samples.png"), nrow=10, value_range=(-1, 1),
                    title=f"100 samples G(z), z ~ N(0, I), after {iterations:,} iterations\n"
                          f"Inception Score {result['inception_score']:.2f} (real test images {result['real_inception_score']:.2f})")
    codes = len(run.state["snapshots"][0][1])
    plot.samples_over_training(run.state["snapshots"], run.path("samples_over_training.png"), label="iteration",
                               value_range=(-1, 1), title=f"the same {codes} codes z through G as training goes on")
    return result


def window_table(window) -> dict:
    """Each statistic of a list of train_iteration results as a host array over the window, {name: (W,)},
    stacked on the device and read back in one transfer."""
    names = list(window[0])
    table = stack([stack([stats[name].reshape(-1) for stats in window]).reshape(-1) for name in names]).numpy()
    return dict(zip(names, table))


def record(curves: dict, iteration: int, means: dict) -> None:
    """Add one point to the curves (columns keyed as plot.loss_curves wants, "epoch" holding the x axis)."""
    curves["epoch"].append(iteration)
    for name, value in means.items():
        curves.setdefault(name, []).append(value)


def snapshot_epochs(epochs: int, count: int = 10) -> set:
    """About ``count`` epochs spread over training, the first and last included."""
    return {int(round(e)) for e in np.linspace(1, epochs, min(count, epochs))}


if __name__ == "__main__":
    main()

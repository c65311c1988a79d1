"""Train MADE by exact maximum likelihood on binarised MNIST, or on a 2-D toy density.

The explicit, tractable density of the lecture: p(x) = Π_i p(x_i | x_<i), every conditional computed by
one masked network (Germain et al. 2015), trained by maximising log p(x) directly.

    python demos/made.py                                   # 784-500-784, 60 epochs, embedded MNIST
    python demos/made.py --num-masks 8 --order-agnostic    # connectivity- and order-agnostic training;
                                                           # the test NLL is then that of the 8-mask ensemble
    python demos/made.py --binarize dynamic                # a fresh binary draw of each digit every epoch
    python demos/made.py --dataset ring8                   # mixture-of-Gaussians conditionals in 2-D
                                                           # (also grid25, two_moons, swiss_roll)

Images (``--dataset embedded | mnist | fashion_mnist``, binarised at pixel > 127, or with ``--binarize
dynamic`` drawn afresh as x ~ Bernoulli(grey level) every epoch and tested on one fixed draw, see
:func:`scratchgen.data.bernoulli_pixels`) write samples.png, completions.png (the first half of the
ordering, the upper half of the digit in raster order, taken from test digits and the rest sampled),
nearest_training.png (samples above their nearest training digits, a check for memorisation) and
learning_curve.png (the exact train and test NLL after each epoch). metrics.json holds per epoch
``train_nll_nats`` (the training loss: the mean over the epoch's minibatches, each scored while the
weights were still changing, so it lags the model), ``exact_train_nll_nats`` (the exact −log p(x) of all
the training digits under the model at the epoch's end, as the test NLL is measured; with ``--binarize
dynamic``, of one fixed binary draw of them), ``test_nll_nats`` and ``bits_per_dim``; at the end
``final_train_nll_nats`` (the last exact train NLL), the two baselines in the same units, each on the
training and on the test digits: independent Bernoulli pixels and the fully visible sigmoid belief net
(FVSBN, trained here with Adam 1e-2 for ``--fvsbn-epochs`` epochs from the independent model; 20 is about
where its test NLL bottoms out), and the median distance from a sample, and from a test digit, to its
nearest training digit (see :func:`scratchgen.metrics.memorisation_check`). ``train_nll_eval_seconds`` is
the part of ``train_wall_time_s`` spent scoring the training digits after each epoch.

Toys write density.png (the true density beside the learned one), samples.png (the model's samples over
the true density), marginals.png (the 1-D marginal densities, learned and true, over a histogram of the
test points) and learning_curve.png; metrics.json holds the test log-likelihood per point in nats
(``test_log_likelihood``) and, for the two Gaussian mixtures, that of the true density on the same points.
The model sees the points standardised (mean 0, variance 1 per coordinate); the log-likelihoods reported
are of the original points, corrected by the change of variables.

The last line printed is the final metrics as JSON.
"""

from __future__ import annotations

import time

import numpy as np

from matplotlib.figure import Figure

from scratchgen import backend, experiment, metrics, no_grad, optim, plot, tensor
from scratchgen.data import (BINARIZATIONS, TOYS, DataLoader, bernoulli_pixels, binarize_stochastic, load_mnist,
                             scored_pixels)
from scratchgen.models import FVSBN, MADE, GaussianMixtureMADE, IndependentBernoulli, bits_per_dim
from scratchgen.train import check_finite, minimise_epoch

IMAGE_DATASETS = ("embedded", "mnist", "fashion_mnist")


def parse_args(argv=None):
    parser = experiment.demo_parser(__doc__.splitlines()[0], datasets=IMAGE_DATASETS + tuple(TOYS),
                                    epochs=60, batch_size=100, lr=1e-3)
    parser.add_argument("--hidden", type=experiment.positive_int, nargs="+", default=None,
                        help="hidden layer sizes (default: 500 for images, 128 128 for toys)")
    parser.add_argument("--ordering", choices=("natural", "random"), default="natural",
                        help="input ordering of the first mask set (natural: raster order)")
    parser.add_argument("--num-masks", type=experiment.positive_int, default=1, help="mask sets to cycle through "
                        "in training (connectivity-agnostic) and to average over at test time")
    parser.add_argument("--resample-every", type=experiment.positive_int, default=1, help="steps between mask changes")
    parser.add_argument("--order-agnostic", action="store_true", help="a new random ordering with every mask set")
    parser.add_argument("--components", type=experiment.positive_int, default=10,
                        help="Gaussians per conditional (toys)")
    parser.add_argument("--samples", type=experiment.positive_int, default=64,
                        help="images in samples.png (toys: 2,000 points)")
    parser.add_argument("--fvsbn-epochs", type=experiment.non_negative_int, default=20,
                        help="epochs of the FVSBN baseline (0: skip it)")
    parser.add_argument("--binarize", choices=BINARIZATIONS, default="threshold",
                        help="images: pixels > 127 once, or a fresh Bernoulli draw of each image every epoch "
                             "(test images: one fixed draw)")
    parser.add_argument("--limit", type=experiment.positive_int, default=None,
                        help="use only the first N training and test examples")
    args = parser.parse_args(argv)
    if args.dataset in TOYS and args.binarize != "threshold":
        parser.error(f"--binarize is for the image datasets; {args.dataset} has real-valued points")
    return args


def load_data(args):
    """(train, test) as float32 arrays (N, D): binarised flattened images (grey levels for dynamic training),
    or toy points."""
    if args.dataset in TOYS:
        sampler = TOYS[args.dataset][0]
        train, test = sampler(20_000, rng=args.seed), sampler(5_000, rng=args.seed + 1)
    else:
        train = bernoulli_pixels(load_mnist(args.dataset, "train")[0], "train", args.binarize).reshape(-1, 784)
        test = bernoulli_pixels(load_mnist(args.dataset, "test")[0], "test", args.binarize).reshape(-1, 784)
    return train[: args.limit], test[: args.limit]


def negative_log_likelihood(model, x, masks: int = 1, batch_size: int = 500) -> float:
    """Mean -log p(x) in nats over the rows of x, without recording a graph."""
    total, ensemble = 0.0, {"masks": masks} if masks > 1 else {}
    with no_grad():
        for start in range(0, len(x), batch_size):
            total -= model.log_prob(tensor(x[start:start + batch_size]), **ensemble).sum().item()
    return total / len(x)


def batch_form(args):
    """What a training batch becomes before the model sees it: under dynamic binarisation a new binary draw
    of each image (from scratchgen's seeded generator, so a resumed run draws the same), else itself."""
    return binarize_stochastic if args.binarize == "dynamic" else (lambda x: x)


def train(model, train_x, run, args, evaluate) -> None:
    """Adam on the mean negative log-likelihood; the mask set changes every ``--resample-every`` steps.

    ``evaluate()`` returns the test metrics logged after each epoch.
    """
    draw = batch_form(args)
    loader = DataLoader(train_x, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    start = run.resume(model=model, optimizer=opt, loader=loader)
    with run.training():
        for epoch in range(start, args.epochs + 1):

            def resample(step, epoch=epoch):
                if ((epoch - 1) * len(loader) + step) % args.resample_every == 0:  # steps counted over the run
                    model.next_masks()

            train_nll = minimise_epoch(lambda x: -model.log_prob(draw(x)).mean(), run.progress(loader, epoch), opt,
                                       epoch, metric="nll", after_step=resample)
            run.log_epoch(epoch, train_nll_nats=train_nll, **evaluate())
            run.save_checkpoint(epoch)


def images(args, run) -> dict:
    train_x, test_x = load_data(args)
    dims = train_x.shape[1]
    model = MADE(dims, args.hidden or (500,), ordering=None if args.ordering == "natural" else "random",
                 num_masks=args.num_masks, order_agnostic=args.order_agnostic, seed=args.seed)

    scored_train_x = scored_pixels(train_x, args.binarize)  # binary, as the test digits are
    run.state.setdefault("train_nll_eval_seconds", 0.0)  # kept across resumptions, like the wall time

    def evaluate():
        began = time.perf_counter()
        train_nll = negative_log_likelihood(model, scored_train_x, masks=args.num_masks)
        run.state["train_nll_eval_seconds"] += time.perf_counter() - began
        nll = negative_log_likelihood(model, test_x, masks=args.num_masks)
        return {"exact_train_nll_nats": train_nll, "test_nll_nats": nll, "bits_per_dim": bits_per_dim(nll, dims)}

    train(model, train_x, run, args, evaluate)
    final = {name: value for name, value in run.history.last.items() if name != "epoch"}
    final["final_train_nll_nats"] = final.pop("exact_train_nll_nats")
    final["train_wall_time_s"] = run.elapsed
    final["train_nll_eval_seconds"] = run.state["train_nll_eval_seconds"]

    side = int(round(dims ** 0.5))
    samples = model.sample(args.samples)
    plot.image_grid(samples, run.path("samples.png"), title=f"MADE samples ({args.dataset})")
    plot.nearest_training(samples, train_x, run.path("nearest_training.png"))
    final.update(metrics.memorisation_check(samples, train_x, test_x))
    given = test_x[:8]
    completions = [model.sample(x=given, start=dims // 2).numpy() for _ in range(4)]
    shown = np.full_like(given, 0.5)  # the pixels the model was given; grey where it must fill in
    first_half = model.ordering.numpy()[: dims // 2]
    shown[:, first_half] = given[:, first_half]
    rows = np.stack([given, shown] + completions, axis=1).reshape(-1, side, side)
    plot.image_grid(rows, run.path("completions.png"), nrow=6,
                    title="test digit | pixels given | 4 completions")
    _nll_curves(run.history, run.path("learning_curve.png"), args, dims)

    independent = IndependentBernoulli(dims).fit(train_x)
    final["independent_bernoulli_train_nll_nats"] = negative_log_likelihood(independent, scored_train_x)
    final["independent_bernoulli_test_nll_nats"] = negative_log_likelihood(independent, test_x)
    if args.fvsbn_epochs:
        began = time.perf_counter()
        fvsbn = FVSBN(dims).fit_marginals(train_x)
        opt = optim.Adam(fvsbn.parameters(), lr=1e-2)
        loader = DataLoader(train_x, batch_size=args.batch_size, shuffle=True, seed=args.seed)
        for epoch in range(1, args.fvsbn_epochs + 1):
            for step, (x,) in enumerate(loader, start=1):
                opt.zero_grad()
                loss = -fvsbn.log_prob(batch_form(args)(x)).mean()
                check_finite(loss, epoch=epoch, step=step, name="the FVSBN baseline's loss")
                loss.backward()
                opt.step()
        final["fvsbn_wall_time_s"] = time.perf_counter() - began  # its training alone, as before
        final["fvsbn_train_nll_nats"] = negative_log_likelihood(fvsbn, scored_train_x)
        final["fvsbn_test_nll_nats"] = negative_log_likelihood(fvsbn, test_x)
    return run.finish(**final)


def _nll_curves(history, path, args, dims: int) -> None:
    """The exact train and test NLL after each epoch, and, dashed, the training loss (the running mean over
    each epoch's minibatches, which lags the model): the gap between the first two is the overfitting."""
    epochs = [record["epoch"] for record in history]
    ensemble = f", the {args.num_masks}-mask ensemble" if args.num_masks > 1 else ""
    drawn = ", one fixed binary draw" if args.binarize == "dynamic" else ""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.add_subplot()
    ax.plot(epochs, [r["test_nll_nats"] for r in history], color="C1", label=f"test NLL (exact{ensemble})")
    ax.plot(epochs, [r["exact_train_nll_nats"] for r in history], color="C0",
            label=f"train NLL (exact, after the epoch{ensemble}{drawn})")
    ax.plot(epochs, [r["train_nll_nats"] for r in history], color="C0", linestyle="--", linewidth=1,
            label="training loss (running mean over the epoch's batches)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("−log p(x), nats per image")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    hidden = "-".join(str(h) for h in (args.hidden or (500,)))
    ax.set_title(f"MADE {dims}-{hidden}-{dims}, {len(history)} epochs ({args.dataset}): train and test NLL",
                 fontsize="medium")
    plot.save_figure(fig, path)


def toy(args, run) -> dict:
    train_x, test_x = load_data(args)
    mixture = TOYS[args.dataset][1]
    # The model sees standardised points z = (x - mean) / scale, each coordinate of mean 0 and variance 1,
    # the scale at which its initial outputs already lie; the density of x is then
    # log p(x) = log p_z(z) - Σ_d log scale_d (the change of variables).
    mean, scale = train_x.mean(axis=0), train_x.std(axis=0)
    log_jacobian = float(np.log(scale).sum())
    model = GaussianMixtureMADE(2, args.components, args.hidden or (128, 128),
                                ordering=None if args.ordering == "natural" else "random",
                                num_masks=args.num_masks, order_agnostic=args.order_agnostic, seed=args.seed)

    def log_density(points):
        return model.log_prob(tensor((points - mean) / scale), masks=args.num_masks) - log_jacobian

    def evaluate():
        return {"test_log_likelihood": -negative_log_likelihood(model, (test_x - mean) / scale, masks=args.num_masks)
                - log_jacobian}

    train(model, (train_x - mean) / scale, run, args, evaluate)
    final = {"test_log_likelihood": run.history.last["test_log_likelihood"], "train_wall_time_s": run.elapsed}

    bounds, true_density, true_title = plot.toy_density_frame(train_x, mixture, TOYS[args.dataset][0], seed=args.seed + 2)
    if mixture is not None:
        final["true_test_log_likelihood"] = float(mixture.log_prob(test_x).mean())
    plot.density_comparison(true_density, log_density, run.path("density.png"), bounds,
                            titles=(true_title, "MADE density"),
                            title=f"{args.dataset}: test log-likelihood {final['test_log_likelihood']:.3f} nats/point")
    samples = model.sample(2000).numpy() * scale + mean
    plot.scatter_over_density(samples, run.path("samples.png"), log_density=true_density, bounds=bounds,
                              title="2,000 MADE samples over the true density")
    densities = {"MADE": log_density} if mixture is None else {"true": mixture.log_prob, "MADE": log_density}
    _marginals(test_x, densities, bounds, run.path("marginals.png"))
    plot.loss_curves(run.history, run.path("learning_curve.png"), keys=["test_log_likelihood"],
                     title="MADE: test log-likelihood (nats per point)")
    return run.finish(**final)


def _marginals(points, log_densities: dict, bounds, path, grid_size: int = 250) -> None:
    """Density estimation in one dimension: each coordinate's marginal, as a histogram of the test points
    and as each 2-D density integrated over the other coordinate on a grid (a Riemann sum). In the
    natural ordering MADE's marginal of x1 is its first conditional, a plain 1-D mixture of Gaussians."""
    fig = Figure(figsize=(10, 3.5))
    for axis, ax in enumerate(fig.subplots(1, 2)):
        along, across = (np.linspace(*bounds[a], grid_size) for a in (axis, 1 - axis))
        grid = np.empty((grid_size, grid_size, 2), dtype=np.float32)
        grid[..., axis], grid[..., 1 - axis] = np.meshgrid(along, across, indexing="ij")
        ax.hist(points[:, axis], bins=200, range=bounds[axis], density=True, histtype="stepfilled", color="0.8",
                label="test points")
        for name, log_density in log_densities.items():
            with no_grad():
                log_p = backend.to_numpy(log_density(grid.reshape(-1, 2))).reshape(grid_size, grid_size)
            ax.plot(along, np.exp(log_p).sum(axis=1) * (across[1] - across[0]), label=name)
        ax.set_xlabel(f"x{axis + 1}")
        ax.legend(loc="upper right", fontsize="small")
    plot.save_figure(fig, path, "marginal densities")


def main(argv=None) -> dict:
    args = parse_args(argv)
    # --samples and --fvsbn-epochs change only the pictures and the baseline after training.
    run = experiment.Run(args, name="made", may_change=("samples", "fvsbn_epochs"))
    return toy(args, run) if args.dataset in TOYS else images(args, run)


if __name__ == "__main__":
    main()

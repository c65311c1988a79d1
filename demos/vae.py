"""Train a variational autoencoder on MNIST and draw what it learned.

The default is the configuration of PyTorch's VAE example on the embedded subset binarised at 127: the
dense 784-400-20 VAE, Bernoulli decoder, Adam 1e-3, batch 100, 40 epochs; the test NLL is estimated
with k = 500 importance samples (Burda et al. 2016).

    python demos/vae.py                                   # the figures in docs/vae.md
    python demos/vae.py --latent-dim 2 --out runs/vae-2d  # a 2-D code: manifold and code scatter
    python demos/vae.py --model conv                      # the convolutional VAE
    python demos/vae.py --likelihood gaussian             # grey levels, Gaussian decoder
    python demos/vae.py --iwae-k 5                        # train on the 5-sample bound (an IWAE)
    python demos/vae.py --binarize dynamic                # a fresh binary draw of each digit every epoch
    mpiexec -n 2 python demos/vae.py --distributed --batch-size 50   # data-parallel: 2 ranks of 50 = batch 100

Writes into --out (default runs/vae): samples.png (the decoder's means σ(logits) for 64 codes z drawn
from the prior), sample_draws.png (draws x ~ p(x|z) from the same codes: what the model itself
generates), reconstructions.png, interpolations.png (decoded walks between test digits of consecutive
classes), latent_codes.png (test codes coloured by class; their first two principal components when the
code has more than two dimensions), manifold.png (2-D codes only: the decoder's means on a grid of codes,
with z₁ and z₂ on the axes), nearest_training.png (samples above their nearest training digits, a check
for memorisation: draws x ~ p(x|z) for the Bernoulli decoder, binary like the data; the decoder's means for
the Gaussian one), loss_curves.png and metrics.json. The last line printed is the final metrics as JSON:
test_neg_elbo, test_rec, test_kl (nats per image, one-sample ELBO), test_nll_is (−log p(x) by importance
sampling), k, the median distance from a sample, and from a test digit, to its nearest training digit
(see :func:`scratchgen.metrics.memorisation_check`), and last train_nll_is, the same k-sample estimate of
−log p(x) over the first train_nll_images training digits (``--train-nll-images``: by default all of them
for the dense model, the first 1,000 for the conv one, whose estimate costs about two minutes per 1,000
digits; under ``--binarize dynamic``, one fixed binary draw of them), with train_nll_eval_seconds its
time (eval_seconds is the test evaluation's alone).

``--binarize dynamic`` (Bernoulli decoder only) trains on a new draw x ~ Bernoulli(grey level) of every
digit each epoch (Burda et al. 2016) and tests on one fixed draw (see
:func:`scratchgen.data.bernoulli_pixels`); the default, ``threshold``, binarises at 127 once.
"""

from __future__ import annotations

import time

import numpy as np

from scratchgen import distributed, experiment, metrics, no_grad, optim, plot, tensor
from scratchgen.data import (BINARIZATIONS, DataLoader, bernoulli_pixels, binarize_stochastic, load_mnist,
                             scored_pixels, to_float)
from scratchgen.models.vae import ConvVAE, DenseVAE, evaluate, importance_sampled_nll
from scratchgen.train import check_finite


def load_images(args, split: str):
    """Images (N, 1, 28, 28) float32, binary for a Bernoulli decoder (grey levels to draw from, when training
    with dynamic binarisation) or in [0, 1] for a Gaussian one, and labels."""
    images, labels = load_mnist(args.dataset, split)
    images, labels = images[:args.limit], labels[:args.limit]
    x = bernoulli_pixels(images, split, args.binarize) if args.likelihood == "bernoulli" else to_float(images)
    return x[:, None], labels


def build_model(args):
    if args.model == "dense":
        return DenseVAE(hidden=args.hidden or 400, latent_dim=args.latent_dim, likelihood=args.likelihood)
    return ConvVAE(hidden=args.hidden or 256, latent_dim=args.latent_dim, likelihood=args.likelihood)


def draw_pictures(run, model, x_test, y_test, title: str) -> None:
    """Prior samples (the decoder's means, and draws of x), reconstructions, interpolations, the codes and,
    for a 2-D code, the manifold."""
    z = tensor(np.random.default_rng(run.args.seed).standard_normal((64, model.latent_dim), dtype=np.float32))
    p_x_given_z = "Bernoulli(σ(logits))" if model.likelihood == "bernoulli" else "N(σ(logits), s²)"
    plot.image_grid(model.sample(64, z=z), run.path("samples.png"), nrow=8,
                    title=f"decoder means σ(logits), 64 codes z ~ N(0, I)\n({title})")
    plot.image_grid(model.sample(64, z=z, mean=False), run.path("sample_draws.png"), nrow=8,
                    title=f"draws x ~ {p_x_given_z}, the same codes\n({title})")
    picks = np.linspace(0, len(x_test) - 1, 32).astype(int)
    plot.reconstructions(x_test[picks], model.reconstruct(tensor(x_test[picks])), run.path("reconstructions.png"),
                         nrow=8, title="test digits and the decoder's means at their mean codes μ(x)")
    classes = np.unique(y_test)
    first = [int(np.flatnonzero(y_test == c)[0]) for c in classes]  # the first test digit of each class
    to = first[1:] + first[:1]
    walks = model.interpolate(tensor(x_test[first]), tensor(x_test[to]), steps=10)
    plot.interpolation_strip(walks, run.path("interpolations.png"),
                             title="from each class to the next, decoded along a line between mean codes")
    with no_grad():
        codes = np.concatenate([model.encode(x)[0].numpy() for (x,) in DataLoader(x_test, batch_size=500)])
    plot.latent_scatter(codes, y_test, run.path("latent_codes.png"), title="mean codes of the test digits")
    if model.latent_dim == 2:
        plot.manifold(lambda z: model.decode(tensor(z)).sigmoid(), run.path("manifold.png"), grid=20,
                      title="decoder means σ(logits) on a 20 × 20 grid of codes z")


def main(argv=None) -> dict:
    parser = experiment.demo_parser(__doc__.splitlines()[0], datasets=("embedded", "mnist", "fashion_mnist"),
                                    epochs=40, batch_size=100, lr=1e-3, distributed=True)
    parser.add_argument("--model", choices=("dense", "conv"), default="dense", help="encoder and decoder networks")
    parser.add_argument("--latent-dim", type=experiment.positive_int, default=20, help="size of the code z")
    parser.add_argument("--hidden", type=experiment.positive_int, default=None,
                        help="hidden width (default 400 dense, 256 conv)")
    parser.add_argument("--likelihood", choices=("bernoulli", "gaussian"), default="bernoulli",
                        help="decoder: Bernoulli on binarised pixels, or Gaussian on grey levels")
    parser.add_argument("--binarize", choices=BINARIZATIONS, default="threshold",
                        help="Bernoulli decoder: pixels > 127 once, or a fresh Bernoulli draw of each image every "
                             "epoch (test images: one fixed draw)")
    parser.add_argument("--k", type=experiment.positive_int, default=500,
                        help="importance samples per image for the test NLL")
    parser.add_argument("--train-nll-images", type=experiment.positive_int, default=None,
                        help="training digits (the first N) whose NLL is estimated at the end, as the test "
                             "digits' is (default: all for the dense model, 1,000 for the conv one)")
    parser.add_argument("--iwae-k", type=experiment.positive_int, default=1,
                        help="train on the k-sample bound (1: the ELBO)")
    parser.add_argument("--limit", type=experiment.positive_int, default=None,
                        help="use only the first N training and test images")
    args = parser.parse_args(argv)
    if args.likelihood == "gaussian" and args.binarize != "threshold":
        parser.error("--binarize is for the Bernoulli decoder; the Gaussian one models the grey levels")
    run = experiment.Run(args, name="vae", may_change=("k", "train_nll_images"))  # the final evaluation only

    x_train, _ = load_images(args, "train")
    x_test, y_test = load_images(args, "test")
    loader = DataLoader(x_train, batch_size=args.batch_size, shuffle=True, seed=args.seed,
                        shard=(run.rank, run.world_size))
    model = build_model(args)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    if run.comm is not None:  # rank 0's weights everywhere, gradients averaged, each rank its own noise
        distributed.broadcast_parameters(model, run.comm)
        opt = distributed.DistributedOptimizer(opt, run.comm)
        distributed.seed_ranks(args.seed, run.comm)
    run.state.setdefault("train_seconds", 0.0)  # time in the training steps alone, across resumptions
    start = run.resume(model=model, optimizer=opt, loader=loader)

    with run.training():
        for epoch in range(start, args.epochs + 1):
            model.train()
            total, seen, began = 0.0, 0, time.perf_counter()
            bar = run.progress(loader, epoch)
            for step, (x,) in enumerate(bar, start=1):
                if args.binarize == "dynamic":
                    x = binarize_stochastic(x)  # a new binary digit from the grey levels, every epoch
                opt.zero_grad()
                if args.iwae_k == 1:
                    loss = model.loss(x).loss
                else:
                    loss = -model.iwae_bound(x, args.iwae_k).mean()
                value = check_finite(loss, epoch=epoch, step=step)
                loss.backward()
                opt.step()
                total, seen = total + value * len(x), seen + len(x)
                bar.set(loss=total / seen)
            run.state["train_seconds"] += time.perf_counter() - began
            if run.comm is not None:
                distributed.average_batch_norm_statistics(model, run.comm)
            test = evaluate(model, x_test)
            run.log_epoch(epoch, train_loss=total / seen, test_neg_elbo=test["neg_elbo"], test_rec=test["rec"],
                          test_kl=test["kl"])
            run.save_checkpoint(epoch)

    if not run.is_main_process:  # rank 0 alone evaluates at the end and draws
        return run.finish()
    began = time.perf_counter()
    test = evaluate(model, x_test)
    nll = importance_sampled_nll(model, x_test, k=args.k)
    eval_seconds = time.perf_counter() - began

    title = f"{args.model}, {args.latent_dim}-d code, {args.likelihood}"
    plot.loss_curves(run.history, run.path("loss_curves.png"), keys=["train_loss", "test_neg_elbo"],
                     title=f"negative ELBO, nats per image ({title})")
    draw_pictures(run, model, x_test, y_test, title)
    samples = model.sample(500, mean=args.likelihood == "gaussian")  # in the data's form: binary for binary digits
    plot.nearest_training(samples, x_train, run.path("nearest_training.png"))
    memorisation = metrics.memorisation_check(samples, x_train, x_test)

    # Last, so that the pictures draw the same random numbers with or without it: the training digits'
    # NLL, estimated as the test digits' is (binary; under dynamic binarisation one fixed draw).
    began = time.perf_counter()
    scored = scored_pixels(x_train[:args.train_nll_images or (1_000 if args.model == "conv" else len(x_train))],
                           args.binarize)
    train_nll = importance_sampled_nll(model, scored, k=args.k)
    return run.finish(test_neg_elbo=test["neg_elbo"], test_rec=test["rec"], test_kl=test["kl"], test_nll_is=nll,
                      k=args.k, train_seconds=round(run.state["train_seconds"], 2), eval_seconds=round(eval_seconds, 2),
                      **memorisation, train_nll_is=train_nll, train_nll_images=len(scored),
                      train_nll_eval_seconds=round(time.perf_counter() - began, 2))


if __name__ == "__main__":
    main()

"""Train an autoencoder on MNIST and compare its codes with PCA's, as pictures, as reconstructions and as features.

    python demos/autoencoder.py                               # convolutional, 32-number code, 30 epochs
    python demos/autoencoder.py --model dense                 # 784-256-32, mirrored, 60 epochs
    python demos/autoencoder.py --model dense --code-size 2   # codes you can draw in the plane
    python demos/autoencoder.py --model deep                  # 784-512-256-32, mirrored, 60 epochs
    python demos/autoencoder.py --model denoising             # the conv one, trained on noisy digits
    python demos/autoencoder.py --model denoising --noise masking --noise-level 0.5
    python demos/autoencoder.py --model denoising --noise salt_and_pepper --noise-level 0.4 --chain

Writes into --out (default runs/autoencoder):

* reconstructions.png: test digits beside their reconstructions;
* codes.png: the test digits' codes coloured by digit class (the codes themselves for a code size of
  2, their first two principal components otherwise);
* denoising.png: clean test digits, the same with noise, and what the autoencoder makes of them;
* loss.png: the training loss and the test reconstruction errors per epoch;
* metrics.json, whose final figures are the test per-pixel binary cross-entropy and squared error
  (``test_bce``, ``test_mse``), PCA's with the same number of components fitted on the same training
  split (``pca_test_bce``, ``pca_test_mse``), the test accuracy of a logistic-regression probe on the
  codes and on PCA's codes (``probe_accuracy``, ``pca_probe_accuracy``), and the squared error of noisy
  test digits before and after the autoencoder (``noisy_mse``, ``denoised_mse``).

``--chain`` (denoising model only) trains on digits binarised at 127 and then runs the autoencoder as a
generative Markov chain, corrupt → denoise → draw x ~ Bernoulli(σ(logits)) → repeat (Bengio, Yao, Alain
& Vincent 2013; :mod:`scratchgen.models.gsn`), ``--chains`` chains from random binary images and one from
each of a few test digits, and adds (``--walkbacks k`` trains on k steps of that chain from each digit,
every step's reconstruction scored against the digit, so that the model learns to pull back the
wanderings of its own chain: :func:`scratchgen.models.gsn.walkback_loss`):

* chain.png: one chain per row, its reconstruction means σ(logits) every ``--chain-steps``/10 steps
  (first rows from noise, last rows from test digits, shown at step 0);
* chain_samples.png: the chains from noise after ``--chain-steps`` steps (means, as above);
* in metrics.json: ``chain_class_shares``, how often a judge (a ConvClassifier trained on the real
  digits, see :func:`scratchgen.metrics.mnist_classifier`) takes the final states for each digit, with
  ``chain_min_class_share`` and the judge's test accuracy; ``chain_digits_visited``, how many different
  digits the judge sees along one chain on average (1 for a chain stuck on its first digit); and, for
  the chain that takes means instead of samples, ``mean_chain_digits_visited``.

The last line printed is that summary as JSON.
"""

from __future__ import annotations

import argparse

import numpy as np

from scratchgen import backend, experiment, metrics, no_grad, optim, plot
from scratchgen.data import DataLoader, binarize, load_mnist, to_float
from scratchgen.models.autoencoder import (
    NOISE_KINDS, Autoencoder, ConvAutoencoder, DeepAutoencoder, DenoisingAutoencoder, DenseAutoencoder, corrupt,
    reconstruction_loss,
)
from scratchgen.models.baselines import PCA, linear_probe_accuracy, reconstruction_errors
from scratchgen.models.gsn import random_binary_images, run_chain, walkback_loss
from scratchgen.tensor import tensor
from scratchgen.train import check_finite

# Epochs when --epochs is not given: the dense networks' steps are cheap but they learn more slowly.
DEFAULT_EPOCHS = {"conv": 30, "dense": 60, "deep": 60, "denoising": 30}


def build_model(args) -> Autoencoder:
    if args.model == "dense":
        return DenseAutoencoder(args.code_size)
    if args.model == "deep":
        return DeepAutoencoder(args.code_size)
    if args.model == "conv":
        return ConvAutoencoder(args.code_size)
    return DenoisingAutoencoder(ConvAutoencoder(args.code_size), noise=args.noise, level=args.noise_level)


def encode_all(model, images, batch_size: int = 500) -> np.ndarray:
    """Codes (N, code_size) of host images (N, 1, 28, 28), in evaluation mode, as a host array."""
    model.eval()
    with no_grad():
        return np.concatenate([model.encode(x).numpy() for (x,) in DataLoader(images, batch_size=batch_size)])


def reconstruct_all(model, images, batch_size: int = 500) -> np.ndarray:
    """Grey levels σ(decode(encode(x))) of host images, in evaluation mode, as a host array."""
    model.eval()
    with no_grad():
        return np.concatenate([model.reconstruct(x).numpy() for (x,) in DataLoader(images, batch_size=batch_size)])


def chain_report(model, x_test, args, run) -> dict:
    """Run the denoising autoencoder's Markov chain, draw chain.png and chain_samples.png, and judge it."""
    steps, every = args.chain_steps, max(1, args.chain_steps // 10)
    starts = backend.xp.concatenate([random_binary_images(args.chains, model.image_shape),
                                     backend.asarray(x_test[:4])])
    _, means = run_chain(model, starts, steps, every)  # (K, N, 1, 28, 28)
    means = backend.to_numpy(means)
    shown = np.concatenate([means[:, :6], means[:, args.chains:]], axis=1)  # six from noise, four from digits
    plot.interpolation_strip(shown.transpose(1, 0, 2, 3, 4), run.path("chain.png"),
                             title=f"chains, one per row: σ(logits) every {every} steps (rows 1-6 from noise)")
    final = means[-1, :args.chains]
    plot.image_grid(final, run.path("chain_samples.png"),
                    title=f"{args.chains} chains from noise after {steps} steps (σ(logits))")

    judge, judge_accuracy = metrics.mnist_classifier(args.dataset, epochs=args.judge_epochs,
                                                     train_subset=args.judge_subset, verbose=not args.quiet)

    def digits_visited(kept):  # the judge's verdict at each kept step of each chain from noise
        verdicts = metrics.classifier_outputs(judge, kept[1:, :args.chains].reshape(-1, *model.image_shape))[0]
        verdicts = verdicts.argmax(axis=1).reshape(len(kept) - 1, args.chains)
        return float(np.mean([len(set(chain)) for chain in verdicts.T]))

    shares = metrics.class_shares(metrics.classifier_outputs(judge, final)[0], classes=10)
    _, mean_states = run_chain(model, starts[:args.chains], steps, every, sample=False)
    return {"chain_class_shares": shares.tolist(), "chain_min_class_share": float(shares.min()),
            "chain_digits_visited": digits_visited(means),
            "mean_chain_digits_visited": digits_visited(backend.to_numpy(mean_states)),
            "judge_test_accuracy": judge_accuracy}


def main(argv=None) -> dict:
    parser = experiment.demo_parser(__doc__.splitlines()[0], datasets=("embedded", "mnist", "fashion_mnist"),
                                    batch_size=64, lr=1e-3)
    parser.set_defaults(epochs=None)
    parser.add_argument("--model", choices=tuple(DEFAULT_EPOCHS), default="conv", help="which autoencoder")
    parser.add_argument("--code-size", type=experiment.positive_int, default=32, help="numbers in the code z")
    parser.add_argument("--loss", choices=("bce", "mse"), default="bce",
                        help="training loss: per-pixel binary cross-entropy from logits, or squared error")
    parser.add_argument("--noise", choices=NOISE_KINDS, default="gaussian",
                        help="corruption for the denoising model and the denoising picture")
    parser.add_argument("--noise-level", type=experiment.non_negative_float, default=0.3,
                        help="Gaussian noise's standard deviation, or the share of pixels masked or replaced")
    parser.add_argument("--limit", type=experiment.positive_int, default=None, metavar="N",
                        help="use only the first N training and N test images (quick checks)")
    parser.add_argument("--chain", action="store_true",
                        help="train on binarised digits, then sample by the denoising autoencoder's Markov chain")
    parser.add_argument("--chains", type=experiment.positive_int, default=100, help="chains from noise (--chain)")
    parser.add_argument("--chain-steps", type=experiment.positive_int, default=200, help="steps per chain (--chain)")
    parser.add_argument("--walkbacks", type=experiment.positive_int, default=1,
                        help="train on k steps of the chain from each digit, each scored against the digit "
                             "(walkback, Bengio et al. 2013; 1: ordinary denoising training) (--chain)")
    parser.add_argument("--judge-epochs", type=experiment.positive_int, default=metrics.JUDGE_EPOCHS,
                        help="epochs the judge of the chain's digits (a ConvClassifier) trains for (--chain)")
    # A testing aid, hidden from --help: train the judge on this many images only.
    parser.add_argument("--judge-subset", type=experiment.positive_int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.noise != "gaussian" and args.noise_level > 1:
        parser.error(f"--noise-level is the share of pixels masked or replaced with --noise {args.noise}: at most 1, "
                     f"got {args.noise_level}")
    if args.chain and args.model != "denoising":
        parser.error("--chain runs the Markov chain of a denoising autoencoder: use it with --model denoising")
    if args.walkbacks > 1 and not args.chain:
        parser.error("--walkbacks trains along the denoising autoencoder's chain: use it with --chain")
    if args.epochs is None:  # the shared flag, with a default that depends on the model
        args.epochs = DEFAULT_EPOCHS[args.model]
    run = experiment.Run(args, name="autoencoder", may_change=("chains", "chain_steps", "judge_epochs", "judge_subset"))

    x_train, y_train = load_mnist(args.dataset, "train")
    x_test, y_test = load_mnist(args.dataset, "test")
    x_train, y_train, x_test, y_test = (a[: args.limit] for a in (x_train, y_train, x_test, y_test))
    # (N, 1, 28, 28) in [0, 1]; binary for the chain, whose states are Bernoulli draws of every pixel
    pixels = binarize if args.chain else to_float
    x_train, x_test = pixels(x_train)[:, None], pixels(x_test)[:, None]

    loader = DataLoader(x_train, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    model = build_model(args)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    start = run.resume(model=model, optimizer=opt, loader=loader)

    with run.training():
        for epoch in range(start, args.epochs + 1):
            model.train()
            total, seen = 0.0, 0
            bar = run.progress(loader, epoch)
            for step, (x,) in enumerate(bar, start=1):
                opt.zero_grad()
                if args.walkbacks > 1:
                    loss = walkback_loss(model, x, args.walkbacks, args.loss)
                else:
                    loss = reconstruction_loss(model(x), x, args.loss)  # a denoising model corrupts x itself
                value = check_finite(loss, epoch=epoch, step=step)
                loss.backward()
                opt.step()
                total, seen = total + value * len(x), seen + len(x)
                bar.set(loss=total / seen)
            test = reconstruction_errors(reconstruct_all(model, x_test), x_test)
            run.log_epoch(epoch, train_loss=total / seen, test_bce=test["bce"], test_mse=test["mse"])
            run.save_checkpoint(epoch)

    # The yardstick: PCA with as many components as the code has numbers, on the same split.
    pca = PCA(args.code_size).fit(x_train)
    pca_test = reconstruction_errors(pca.inverse_transform(pca.transform(x_test)), x_test)
    codes_train, codes_test = encode_all(model, x_train), encode_all(model, x_test)
    probe = linear_probe_accuracy(codes_train, y_train, codes_test, y_test, seed=args.seed)
    pca_probe = linear_probe_accuracy(pca.transform(x_train), y_train, pca.transform(x_test), y_test, seed=args.seed)

    # Denoising: the same noise the denoising model trains with, on test digits it never saw.
    noisy = corrupt(tensor(x_test), args.noise, args.noise_level).numpy()
    denoised = reconstruct_all(model, noisy)
    noisy_mse = reconstruction_errors(noisy, x_test)["mse"]
    denoised_mse = reconstruction_errors(denoised, x_test)["mse"]

    name = f"{args.model} autoencoder, code size {args.code_size}"
    plot.reconstructions(x_test[:64], reconstruct_all(model, x_test[:64]), run.path("reconstructions.png"),
                         nrow=8, title=f"{name}: test digits")
    plot.latent_scatter(codes_test, y_test, run.path("codes.png"), title=f"{name}: test codes by digit")
    plot.image_grid(np.concatenate([x_test[:10], noisy[:10], denoised[:10]]), run.path("denoising.png"), nrow=10,
                    title=f"{name}: clean / {args.noise} noise {args.noise_level} / output")
    plot.loss_curves(run.history, run.path("loss.png"), logy=True, title=f"{name} ({args.loss} loss)")

    final = run.history.last
    chain = chain_report(model, x_test, args, run) if args.chain else {}
    return run.finish(test_bce=final["test_bce"], test_mse=final["test_mse"], pca_test_bce=pca_test["bce"],
                      pca_test_mse=pca_test["mse"], probe_accuracy=probe, pca_probe_accuracy=pca_probe,
                      noisy_mse=noisy_mse, denoised_mse=denoised_mse, **chain)


if __name__ == "__main__":
    main()

"""Learn p(x | y) and p(x, y) on MNIST, and judge the samples by what a classifier learns from them.

The lecture: generative models "learn the joint probability p(x, y), allowing them to generate both
synthetic inputs x′ and outputs/targets y′". Four models of it, on the embedded digits:

    python demos/conditional.py                     # conditional DCGAN (Mirza and Osindero 2014), 4,500 iterations
    python demos/conditional.py --model cvae        # conditional VAE (Sohn et al. 2015), 784-400-20, 40 epochs
    python demos/conditional.py --model made        # class-conditional MADE: exact -log p(x|y); p(y|x) by Bayes' rule
    python demos/conditional.py --model joint-gan   # one GAN of p(x, y): G draws a label with its image

Every model draws pairs (x′, y′): y′ from the label prior (uniform), then x′ ~ p(x | y′); the joint GAN
draws both at once. They are judged by the GAN's judge, a ConvClassifier trained on the 4,000 real
training digits (:func:`scratchgen.metrics.mnist_classifier`):

* ``conditional_accuracy``: the share of 10,000 samples asked for digit y (1,000 each; MADE: 2,000) that
  the judge takes for a y (for the joint GAN, the share whose drawn label the judge agrees with);
* ``cas``, the Classification Accuracy Score (Ravuri and Vinyals 2019): the judge's architecture and
  training, on 4,000 generated pairs (400 per digit) alone, tested on the 1,000 real test digits; beside
  it ``real_cas``, the same classifier trained on the 4,000 real digits (the judge itself);
* for the GANs, the unconditional figures of the GAN demo (class shares, Inception Score, Fréchet distance),
  each beside the real test digits' (``real_inception_score``; ``real_frechet_distance``, to the training
  digits);
* for the VAE and MADE, ``test_nll_given_label`` = −log p(x | y) and ``test_nll_marginal`` =
  −log Σ_y p(y) p(x | y) on the test digits, in nats; for MADE also ``bayes_accuracy``, the test accuracy
  of the classifier p(y | x) ∝ p(y) p(x | y), beside the judge's.

Writes into --out (default runs/conditional_<model>): ``digits.png`` (a 10×10 grid, one row per asked
digit and one code z per column: the style held, the digit changed; MADE, having no code, draws each
image afresh), ``interpolation.png`` (GAN and VAE: at a fixed z, the label row blended from each digit to
the next), ``nearest_training.png`` (samples above their nearest training digits, a check for memorisation,
whose medians :func:`scratchgen.metrics.memorisation_check` adds to the metrics), ``losses.png`` and
``metrics.json``.
"""

from __future__ import annotations

import time

import numpy as np

from scratchgen import backend, experiment, metrics, no_grad, optim, plot, tensor
from scratchgen.data import DataLoader, binarize, binarize_stochastic, load_mnist, to_float
from scratchgen.models.gan import DCGANDiscriminator, DCGANGenerator, GANTrainer, JointGenerator
from scratchgen.models.made import MADE
from scratchgen.models.vae import DenseVAE, importance_sampled_nll, marginal_nll
from scratchgen.train import check_finite, minimise_epoch

CLASSES = 10
# Each model's configuration; any of it can be overridden on the command line. The GANs: the GAN demo's
# MNIST settings (Adam 2e-4, beta1 0.5, batch 64, the rate falling linearly to 0 over the second half) for
# 18 x 250 = 4,500 iterations: the GAN demo's 5,500 and the evaluation (the CAS trains a classifier) took
# 657 s on two cores, over the 10 minutes a default run may take. The VAE: the VAE demo's (Adam 1e-3, batch 100, 40 epochs). MADE: the MADE demo's
# (784-500-784, Adam 1e-3, batch 100, 60 epochs); its samples take 784 passes of the network each, so it
# judges 2,000 of them rather than 10,000 (the CAS still trains on 4,000).
DEFAULTS = {
    "cgan": dict(epochs=18, iterations_per_epoch=250, batch_size=64, lr=2e-4, eval_samples=10_000),
    "joint-gan": dict(epochs=18, iterations_per_epoch=250, batch_size=64, lr=2e-4, eval_samples=10_000),
    "cvae": dict(epochs=40, batch_size=100, lr=1e-3, hidden=400, eval_samples=10_000),
    "made": dict(epochs=60, batch_size=100, lr=1e-3, hidden=500, eval_samples=2_000),
}
GANS = ("cgan", "joint-gan")


def parse_args(argv=None):
    parser = experiment.demo_parser(__doc__.splitlines()[0], datasets=("embedded", "mnist", "fashion_mnist"),
                                    epochs=None, batch_size=None, lr=None)
    parser.add_argument("--model", choices=tuple(DEFAULTS), default="cgan", help="the model of p(x | y) or p(x, y)")
    parser.add_argument("--iterations-per-epoch", type=experiment.positive_int, default=None,
                        help="GAN iterations between checkpoints")
    parser.add_argument("--hidden", type=experiment.positive_int, default=None,
                        help="hidden width of the VAE (400) or MADE (500); the GANs are the DCGAN pair")
    parser.add_argument("--k", type=experiment.positive_int, default=500,
                        help="importance samples per image (and label) for the VAE's test NLL")
    parser.add_argument("--eval-samples", type=experiment.positive_int, default=None,
                        help="samples the conditional accuracy judges (a multiple of 10): 10,000, or 2,000 for MADE")
    parser.add_argument("--cas-samples", type=experiment.positive_int, default=4_000,
                        help="generated pairs the CAS classifier trains on (a multiple of 10; 0 < N)")
    parser.add_argument("--judge-epochs", type=experiment.positive_int, default=metrics.JUDGE_EPOCHS,
                        help="epochs the judge and the CAS classifier train for")
    parser.add_argument("--limit", type=experiment.positive_int, default=None,
                        help="use only the first N training and test images")
    args = parser.parse_args(argv)
    for name, value in DEFAULTS[args.model].items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.model in GANS and args.hidden is not None:
        parser.error("--hidden sets the VAE's or MADE's width; the GANs use the DCGAN pair")
    if args.model not in GANS and args.iterations_per_epoch is not None:
        parser.error("--iterations-per-epoch is for the GANs; the VAE and MADE count epochs over the data")
    for name in ("eval_samples", "cas_samples"):
        if getattr(args, name) % CLASSES:
            parser.error(f"--{name.replace('_', '-')} must be a multiple of {CLASSES}: as many samples of each digit")
    return args


# ------------------------------------------------------------------------------------------ training


def train_gan(args, run, images, labels):
    """Algorithm 1 on labelled digits: the conditional DCGAN pair, or the joint generator around it."""
    generator = DCGANGenerator(classes=CLASSES)
    if args.model == "joint-gan":
        generator = JointGenerator(generator)
    discriminator = DCGANDiscriminator(classes=CLASSES)
    adam = lambda params: optim.Adam(params, lr=args.lr, betas=(0.5, 0.999))  # noqa: E731
    trainer = GANTrainer(generator, discriminator, adam(generator.parameters()), adam(discriminator.parameters()))
    loader = DataLoader(images * 2 - 1, labels, batch_size=args.batch_size, shuffle=True, seed=args.seed,
                        drop_last=True)  # images in [-1, 1], the range of G's tanh
    batches = loader.endless()
    start = run.resume(trainer=trainer, loader=loader)
    total = args.epochs * args.iterations_per_epoch
    with run.training():
        for epoch in range(start, args.epochs + 1):
            sums = {}
            for step in run.progress(range(1, args.iterations_per_epoch + 1), epoch):
                lr = optim.linear_decay(args.lr, trainer.iteration, total, decay_from=0.5)
                trainer.generator_optimizer.lr = trainer.discriminator_optimizer.lr = lr
                stats = trainer.train_iteration(lambda: tuple(next(batches)))
                for name in ("d_loss", "g_loss"):
                    sums[name] = sums.get(name, 0.0) + check_finite(stats[name], epoch=epoch, step=step, name=name)
            run.log_epoch(epoch, **{name: value / args.iterations_per_epoch for name, value in sums.items()})
            run.save_checkpoint(epoch)
    return trainer


def train_likelihood(args, run, model, x_train, y_train, x_test, y_test):
    """Maximum likelihood (the VAE's ELBO, MADE's exact log-likelihood) on labelled digits, given their labels."""
    if args.model == "cvae":
        loss_of = lambda x, y: model.loss(x, y=y).loss  # noqa: E731
    else:
        loss_of = lambda x, y: -model.log_prob(x.reshape(len(x), -1), y=y).mean()  # noqa: E731
    loader = DataLoader(x_train, y_train, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    start = run.resume(model=model, optimizer=opt, loader=loader)
    with run.training():
        for epoch in range(start, args.epochs + 1):
            model.train()
            train_loss = minimise_epoch(loss_of, run.progress(loader, epoch), opt, epoch)
            model.eval()
            test_loss = sum(loss_of(x, y).item() * len(x) for x, y in DataLoader(x_test, y_test, batch_size=500))
            run.log_epoch(epoch, train_loss=train_loss, test_loss=test_loss / len(x_test))
            run.save_checkpoint(epoch)
    return model.eval()


# ------------------------------------------------------------------------------------------ sampling


def sampler(args, model):
    """A function (n, labels, z) -> images (n, 1, 28, 28) in [0, 1] as a host array, for the asked labels
    (integers or label rows), each from its code z when the model has codes. For the joint GAN the labels
    are ignored and come back drawn: it returns (images, labels)."""
    if args.model in GANS:
        def draw(n, labels=None, z=None):
            images, drawn = model.sample_pairs(n, noise=None if z is None else tensor(z), labels=labels)
            images = (images.numpy() + 1) / 2
            return (images, backend.to_numpy(drawn)) if args.model == "joint-gan" else images
    elif args.model == "cvae":
        def draw(n, labels=None, z=None):
            return model.sample(n, y=labels, z=None if z is None else tensor(z)).numpy()
    else:
        def draw(n, labels=None, z=None):
            return model.sample(n, y=labels).numpy().reshape(n, 1, 28, 28)
    return draw


def draw_pairs(args, draw, n: int):
    """n pairs (x′, y′) as host arrays, n / 10 asked of each digit (the joint GAN's labels as drawn)."""
    images, labels = [], []
    for start in range(0, n, 1000):
        count = min(1000, n - start)
        if args.model == "joint-gan":
            x, y = draw(count)
        else:
            y = np.arange(start, start + count) % CLASSES
            x = draw(count, labels=y)
        images.append(x)
        labels.append(y)
    return np.concatenate(images), np.concatenate(labels)


def draw_pictures(args, run, draw, latent_dim: int | None, judged: dict) -> None:
    """digits.png (a row per digit, a code per column) and, for the models with codes, interpolation.png."""
    codes = None if latent_dim is None else np.random.default_rng(args.seed).standard_normal(
        (CLASSES, latent_dim)).astype(np.float32)
    grid_codes = None if codes is None else np.tile(codes, (CLASSES, 1))  # row d, column j: code j
    if args.model == "joint-gan":  # it asks for nothing: sort 100 of its pairs by their drawn labels
        images, labels = draw(100)
        order = np.argsort(labels, kind="stable")
        counts = ", ".join(f"{digit}: {count}" for digit, count in enumerate(np.bincount(labels, minlength=CLASSES)))
        plot.image_grid(images[order], run.path("digits.png"), nrow=10,
                        title=f"100 pairs (x', y') drawn together, in order of their labels y'\n(how many of each: {counts})")
    else:
        asked = np.repeat(np.arange(CLASSES), CLASSES)
        images = draw(CLASSES * CLASSES, labels=asked, z=grid_codes)
        style = "one code z per column" if codes is not None else "each image drawn afresh"
        plot.samples_over_training([(d, images[d * CLASSES:(d + 1) * CLASSES]) for d in range(CLASSES)],
                                   run.path("digits.png"), label="digit",
                                   title=f"row: the digit asked for; {style} "
                                         f"(judge agrees with {100 * judged['conditional_accuracy']:.1f}%)")
    if codes is not None and args.model != "joint-gan":
        steps = 10
        t = np.linspace(0, 1, steps, dtype=np.float32)[:, None]
        rows = []
        for digit in range(CLASSES):  # from digit to digit + 1, at the digit's own code
            blend = (1 - t) * np.eye(CLASSES, dtype=np.float32)[digit] + t * np.eye(CLASSES, dtype=np.float32)[(digit + 1) % CLASSES]
            rows.append(draw(steps, labels=blend, z=np.repeat(codes[digit:digit + 1], steps, axis=0)))
        plot.interpolation_strip(rows, run.path("interpolation.png"),
                                 title="one code z per row; the label row blended from y to y + 1, left to right")


# ------------------------------------------------------------------------------------------ the run


def main(argv=None) -> dict:
    args = parse_args(argv)
    run = experiment.Run(args, name=f"conditional_{args.model}",
                         may_change=("k", "eval_samples", "cas_samples", "judge_epochs"))
    train_images, y_train = load_mnist(args.dataset, "train")
    test_images, y_test = load_mnist(args.dataset, "test")
    train_images, y_train = train_images[:args.limit], y_train[:args.limit].astype(np.int64)
    test_images, y_test = test_images[:args.limit], y_test[:args.limit].astype(np.int64)
    binary = args.model in ("cvae", "made")  # Bernoulli likelihoods, on digits binarised at 127
    x_train = (binarize(train_images) if binary else to_float(train_images))[:, None]
    x_test = (binarize(test_images) if binary else to_float(test_images))[:, None]

    began = time.perf_counter()
    if args.model in GANS:
        model, latent_dim = train_gan(args, run, x_train, y_train), 100
    elif args.model == "cvae":
        model = train_likelihood(args, run, DenseVAE(args.hidden, classes=CLASSES), x_train, y_train, x_test, y_test)
        latent_dim = model.latent_dim
    else:
        model = train_likelihood(args, run, MADE(784, (args.hidden,), classes=CLASSES), x_train.reshape(len(x_train), -1),
                                 y_train, x_test.reshape(len(x_test), -1), y_test)
        latent_dim = None
    train_seconds = time.perf_counter() - began

    began = time.perf_counter()
    judge, judge_accuracy = metrics.mnist_classifier(args.dataset, epochs=args.judge_epochs,
                                                     train_subset=args.limit, verbose=not args.quiet)
    draw = sampler(args, model)
    samples, asked = draw_pairs(args, draw, args.eval_samples)
    final = {"conditional_accuracy": metrics.conditional_accuracy(judge, samples, asked)}
    cas_images, cas_labels = draw_pairs(args, draw, args.cas_samples)
    final["cas"] = metrics.classification_accuracy_score(cas_images, cas_labels, test_images, y_test,
                                                         epochs=args.judge_epochs, seed=args.seed)
    final["real_cas"] = judge_accuracy  # the same classifier, trained on the real training digits
    if args.model in GANS:
        scores = metrics.classifier_scores(judge, samples, test_images)
        final.update(scores, min_class_share=min(scores["class_shares"]))
        real = metrics.classifier_scores(judge, test_images, train_images)  # the ceiling, as the GAN demo's
        final.update(real_inception_score=real["inception_score"], real_frechet_distance=real["frechet_distance"])
        final["drawn_label_shares"] = (np.bincount(asked, minlength=CLASSES) / len(asked)).tolist()
    else:
        final.update(likelihoods(args, model, x_test, y_test, judge_accuracy))
    draw_pictures(args, run, draw, latent_dim, final)
    keys = ["d_loss", "g_loss"] if args.model in GANS else ["train_loss", "test_loss"]
    plot.loss_curves(run.history, run.path("losses.png"), keys=keys, title=f"{args.model}: losses per epoch")
    # Memorisation: samples beside their nearest training digits, in the data's form (the VAE's means drawn
    # as x ~ Bernoulli(mean), binary like its digits), and the test digits' distances as the yardstick.
    drawn = binarize_stochastic(samples, rng=args.seed) if args.model == "cvae" else samples
    plot.nearest_training(drawn, x_train, run.path("nearest_training.png"))
    final.update(metrics.memorisation_check(drawn, x_train, x_test))
    return run.finish(**final, train_seconds=round(train_seconds, 1),
                      eval_seconds=round(time.perf_counter() - began, 1))


def likelihoods(args, model, x_test, y_test, judge_accuracy: float) -> dict:
    """−log p(x|y) and −log Σ_y p(y) p(x|y) on the test digits; for MADE, its accuracy as a Bayes classifier."""
    if args.model == "cvae":
        return {"test_nll_given_label": importance_sampled_nll(model, x_test, k=args.k, labels=y_test),
                "test_nll_marginal": marginal_nll(model, x_test, k=args.k), "k": args.k}
    x = tensor(x_test.reshape(len(x_test), -1))
    with no_grad():
        log_p = np.stack([model.log_prob(x, y=np.full(len(x), d)).numpy() for d in range(CLASSES)], axis=1)
    given = -log_p[np.arange(len(x)), y_test].mean()
    top = log_p.max(axis=1, keepdims=True)
    marginal = -(top[:, 0] + np.log(np.exp(log_p - top).mean(axis=1))).mean()  # uniform p(y) = 1/10
    posterior = model.classify(x).numpy()
    return {"test_nll_given_label": float(given), "test_nll_marginal": float(marginal),
            "bayes_accuracy": float((posterior.argmax(axis=1) == y_test).mean()), "cnn_accuracy": judge_accuracy}


if __name__ == "__main__":
    main()

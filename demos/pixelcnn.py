"""Train a PixelCNN on binarised MNIST: exact test NLL per epoch, samples, and completions of half digits.

van den Oord et al. (2016): a 7×7 type-A masked convolution, residual blocks of 3×3 type-B masked
convolutions, and 1×1 convolutions to one Bernoulli logit per pixel.

    python demos/pixelcnn.py                          # 32 channels, 5 type-B layers, 15 epochs
    python demos/pixelcnn.py --channels 64 --layers 7 --epochs 30
    python demos/pixelcnn.py --binarize dynamic       # a fresh binary draw of each digit every epoch

Writes into --out (default runs/pixelcnn):

* samples.png: images drawn pixel by pixel (784 passes of the network per batch);
* nearest_training.png: those samples above their nearest training digits, a check for memorisation;
* completions.png: test digits, their upper half alone, and completions of the lower half sampled
  given the upper half;
* learning_curve.png and metrics.json, with ``train_nll_nats`` (the training loss, a running mean over
  the epoch's minibatches), ``test_nll_nats`` and ``bits_per_dim`` per epoch (nats per image; bits per
  dimension = nats / (784 · ln 2)); at the end ``final_train_nll_nats``, the exact −log p(x) of all the
  training digits under the trained model (with ``--binarize dynamic``, of one fixed binary draw of them),
  measured as the test NLL is, and the median distance from a sample, and from a test digit, to its
  nearest training digit (:func:`scratchgen.metrics.memorisation_check`).

The digits are binarised at 127 (``--binarize threshold``), or with ``--binarize dynamic`` drawn afresh as
x ~ Bernoulli(grey level) every epoch and tested on one fixed draw (:func:`scratchgen.data.bernoulli_pixels`).

The last line printed is the final metrics as JSON.
"""

from __future__ import annotations

import time

import numpy as np

from scratchgen import experiment, metrics, no_grad, optim, plot, tensor
from scratchgen.data import BINARIZATIONS, DataLoader, bernoulli_pixels, binarize_stochastic, load_mnist, scored_pixels
from scratchgen.models import PixelCNN, bits_per_dim
from scratchgen.train import minimise_epoch


def parse_args(argv=None):
    parser = experiment.demo_parser(__doc__.splitlines()[0], datasets=("embedded", "mnist", "fashion_mnist"),
                                    epochs=15, batch_size=64, lr=1e-3)
    parser.add_argument("--channels", type=experiment.positive_int, default=32, help="feature maps per hidden layer")
    parser.add_argument("--layers", type=experiment.non_negative_int, default=5,
                        help="residual type-B masked conv layers")
    parser.add_argument("--samples", type=experiment.positive_int, default=36, help="images in samples.png")
    parser.add_argument("--completions", type=experiment.positive_int, default=8,
                        help="test digits to complete (3 completions each)")
    parser.add_argument("--binarize", choices=BINARIZATIONS, default="threshold",
                        help="pixels > 127 once, or a fresh Bernoulli draw of each image every epoch "
                             "(test images: one fixed draw)")
    parser.add_argument("--limit", type=experiment.positive_int, default=None,
                        help="use only the first N training and test images")
    return parser.parse_args(argv)


def negative_log_likelihood(model, images, batch_size: int = 100) -> float:
    """Mean -log p(x) in nats per image, without recording a graph."""
    total = 0.0
    with no_grad():
        for start in range(0, len(images), batch_size):
            total -= model.log_prob(tensor(images[start:start + batch_size])).sum().item()
    return total / len(images)


def main(argv=None) -> dict:
    args = parse_args(argv)
    run = experiment.Run(args, name="pixelcnn", may_change=("samples", "completions"))  # the pictures only
    # (N, 1, 28, 28) of 0/1; for dynamic binarisation the training digits' grey levels, drawn batch by batch
    train_x = bernoulli_pixels(load_mnist(args.dataset, "train")[0][:args.limit, None], "train", args.binarize)
    test_x = bernoulli_pixels(load_mnist(args.dataset, "test")[0][:args.limit, None], "test", args.binarize)
    draw = binarize_stochastic if args.binarize == "dynamic" else (lambda x: x)  # a new binary digit every epoch
    dims = train_x[0].size

    model = PixelCNN(channels=args.channels, layers=args.layers)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    loader = DataLoader(train_x, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    start = run.resume(model=model, optimizer=opt, loader=loader)
    with run.training():
        for epoch in range(start, args.epochs + 1):
            train_nll = minimise_epoch(lambda x: -model.log_prob(draw(x)).mean(), run.progress(loader, epoch), opt,
                                       epoch, metric="nll")
            test_nll = negative_log_likelihood(model, test_x)
            run.log_epoch(epoch, train_nll_nats=train_nll, test_nll_nats=test_nll,
                          bits_per_dim=bits_per_dim(test_nll, dims))
            run.save_checkpoint(epoch)
    final = {name: value for name, value in run.history.last.items() if name != "epoch"}
    final["train_wall_time_s"] = run.elapsed
    model.eval()
    # the training digits scored as the test digits are: binary, under dynamic binarisation one fixed draw
    final["final_train_nll_nats"] = negative_log_likelihood(model, scored_pixels(train_x, args.binarize))

    began = time.perf_counter()
    samples = model.sample(args.samples, size=train_x.shape[2:])
    final["sampling_wall_time_s"] = time.perf_counter() - began
    plot.image_grid(samples, run.path("samples.png"), title=f"PixelCNN samples ({args.dataset})")
    plot.nearest_training(samples, train_x, run.path("nearest_training.png"))
    final.update(metrics.memorisation_check(samples, train_x, test_x))

    given = test_x[:args.completions]
    half = given.shape[2] // 2
    completed = model.complete(np.repeat(given, 3, axis=0), given_rows=half).numpy()
    upper = given.copy()
    upper[:, :, half:] = 0.5  # grey: what the model fills in
    completed = completed.reshape((len(given), 3) + given.shape[1:])
    rows = np.concatenate([given[:, None], upper[:, None], completed], axis=1)
    plot.image_grid(rows.reshape((-1,) + given.shape[1:]), run.path("completions.png"), nrow=5,
                    title="test digit | upper half given | 3 completions")
    plot.loss_curves(run.history, run.path("learning_curve.png"), keys=["train_nll_nats", "test_nll_nats"],
                     title="PixelCNN: negative log-likelihood (nats)")
    return run.finish(**final)


if __name__ == "__main__":
    main()

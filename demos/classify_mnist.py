"""Train a digit classifier on the embedded MNIST subset and plot its learning curve.

The first thing to run after installing scratchgen: it exercises the whole stack (data, autograd,
layers, Adam, the demo harness) in well under a minute and shows whether learning works.

    python demos/classify_mnist.py                    # MLP 784-256-10, 10 epochs
    python demos/classify_mnist.py --model cnn        # the small convolutional classifier
    mpiexec -n 2 python demos/classify_mnist.py --distributed --batch-size 32   # data-parallel, batch 2 x 32

Writes learning_curve.png, predictions.png and metrics.json into --out (default runs/classify_mnist) and
prints the final metrics as one JSON line, e.g. {"test_accuracy": 0.94, ...}.
"""

from __future__ import annotations

from scratchgen import distributed, experiment, nn, no_grad, optim, plot
from scratchgen.data import DataLoader, load_mnist, to_float
from scratchgen.models.classifier import MLPClassifier, predict_proba
from scratchgen.train import check_finite


def build_model(name: str) -> nn.Module:
    if name == "mlp":
        return MLPClassifier(hidden=(256,))
    from scratchgen.models.classifier import ConvClassifier

    return ConvClassifier()


def main(argv=None) -> dict:
    parser = experiment.demo_parser(__doc__.splitlines()[0], datasets=("embedded", "mnist", "fashion_mnist"),
                                    epochs=10, batch_size=64, lr=1e-3, distributed=True)
    parser.add_argument("--model", choices=("mlp", "cnn"), default="mlp", help="classifier architecture")
    args = parser.parse_args(argv)
    run = experiment.Run(args, name="classify_mnist")

    x_train, y_train = load_mnist(args.dataset, "train")
    x_test, y_test = load_mnist(args.dataset, "test")
    loader = DataLoader(to_float(x_train)[:, None], y_train, batch_size=args.batch_size, shuffle=True, seed=args.seed,
                        shard=(run.rank, run.world_size))
    model = build_model(args.model)
    opt = optim.Adam(model.parameters(), lr=args.lr)
    if run.comm is not None:  # rank 0's weights everywhere, gradients averaged, each rank its own noise
        distributed.broadcast_parameters(model, run.comm)
        opt = distributed.DistributedOptimizer(opt, run.comm)
        distributed.seed_ranks(args.seed, run.comm)
    start = run.resume(model=model, optimizer=opt, loader=loader)

    with run.training():
        for epoch in range(start, args.epochs + 1):
            model.train()
            total, seen = 0.0, 0
            bar = run.progress(loader, epoch)
            for step, (x, y) in enumerate(bar, start=1):
                opt.zero_grad()
                loss = nn.functional.cross_entropy(model(x), y)
                value = check_finite(loss, epoch=epoch, step=step)
                loss.backward()
                opt.step()
                total, seen = total + value * len(x), seen + len(x)
                bar.set(loss=total / seen)
            if run.comm is not None:
                distributed.average_batch_norm_statistics(model, run.comm)
            test_accuracy = float((predict_proba(model, x_test).argmax(axis=1) == y_test).mean())
            run.log_epoch(epoch, train_loss=total / seen, test_accuracy=test_accuracy)
            run.save_checkpoint(epoch)

    if not run.is_main_process:  # rank 0 alone draws
        return run.finish()
    plot.loss_curves(run.history, run.path("learning_curve.png"), title=f"{args.model} on {args.dataset} MNIST")
    with no_grad():
        predicted = predict_proba(model, x_test[:64]).argmax(axis=1)
    title = "test digits; predictions: " + " ".join(str(int(p)) for p in predicted[:16]) + " ..."
    plot.image_grid(to_float(x_test[:64]), run.path("predictions.png"), nrow=8, title=title)
    return run.finish(test_accuracy=run.history.last["test_accuracy"])


if __name__ == "__main__":
    main()

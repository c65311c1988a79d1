"""Train a binary restricted Boltzmann machine by persistent contrastive divergence, scored by its NLL.

The Markov-chain, approximate-density box of the lecture's map: an energy model whose normaliser Z is a
sum over exponentially many states, trained with negative samples from a Gibbs chain (Hinton 2002;
Tieleman 2008) and sampled by running that chain. With 20 hidden units Z is still a sum we can do (2^20
hidden states, a few seconds), so the test NLL below is exact, in the same nats as MADE's. With more,
log Z is estimated by annealed importance sampling (AIS, Salakhutdinov and Murray 2008), with its ±3σ
interval.

    python demos/rbm.py                          # 20 hidden units, PCD-1, batch 20, lr 0.05, 50 epochs
    python demos/rbm.py --method cd              # CD-1: each chain starts at its minibatch
    python demos/rbm.py --visible-bias zero --lr-decay none --epochs 100
                                                 # scikit-learn BernoulliRBM's settings (the reference)
    python demos/rbm.py --hidden 500             # log Z by AIS: 1,000 steps each epoch, 15,000 at the end

The defaults are the reference's (scikit-learn's ``BernoulliRBM``: PCD with one Gibbs sweep per update
and as many chains as the batch, 20 hidden units, batch 20, learning rate 0.05, weights N(0, 0.01²)) with
two changes from Hinton's practical guide (2010): the visible biases start at the log-odds of each
pixel's frequency (the model starts as the independent-pixel baseline, section 8), and the learning rate
falls linearly to zero over the run (PCD's chains lag a moving model; a smaller step lets them catch up,
and the estimate settle: Tieleman 2008 anneals it the same way).

The data: the embedded 5,000/1,000-digit MNIST subset, binarised at pixel > 127. Writes into --out
(default runs/rbm):

* ``filters.png``: each hidden unit's weights W_j as a 28×28 image, grey 0, each scaled to its own range;
* ``gibbs_chains.png``: chains started from the independent-pixel model σ(b), one column each, after
  0, 1, 2, 5, ... Gibbs sweeps (shown as p(v | h), the mean of the next visible state);
* ``samples.png``: ``--samples`` chains after ``--gibbs-steps`` sweeps, shown the same way;
* ``nearest_training.png``: those chains' binary states above their nearest training digits, a check for
  memorisation (the medians of those distances, and of the test digits', are in ``metrics.json``: see
  :func:`scratchgen.metrics.memorisation_check`);
* ``learning_curve.png``; ``metrics.json`` with, per epoch, ``test_nll_nats``, ``train_nll_nats`` and
  ``log_partition``, exact or by AIS as ``args.log_z`` says (AIS adds ``log_partition_lower`` and
  ``_upper``, log(Ẑ ∓ 3σ̂)); at the end, the independent-pixel baseline's test NLL and one AIS estimate with
  ``--final-ais-steps``: with AIS it replaces the last epoch's log Z and NLLs (``test_nll_nats_lower`` and
  ``_upper`` from its interval); with the exact log Z it is a check, ``ais_log_partition`` (and its
  interval) beside the exact value and ``ais_minus_exact_log_partition``. (AIS draws from a generator of its
  own, seeded by --seed, so the training and the pictures are those of a run without it.)

The last line printed is the final metrics as JSON.
"""

from __future__ import annotations

import time

import numpy as np

from scratchgen import experiment, metrics, no_grad, optim, plot, tensor
from scratchgen.data import DataLoader, binarize, load_mnist
from scratchgen.models import RBM, ContrastiveDivergence, IndependentBernoulli
from scratchgen.models.rbm import MAX_EXACT_HIDDEN, ais_log_partition, ais_schedule
from scratchgen.train import check_finite

CHAIN_STEPS = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def parse_args(argv=None):
    parser = experiment.demo_parser(__doc__.splitlines()[0], datasets=("embedded", "mnist", "fashion_mnist"),
                                    epochs=50, batch_size=20, lr=0.05)
    parser.add_argument("--hidden", type=experiment.positive_int, default=20,
                        help=f"hidden units (log Z exact for at most {MAX_EXACT_HIDDEN}, by AIS above)")
    parser.add_argument("--log-z", choices=("exact", "ais"), default=None,
                        help=f"log Z after each epoch: summed exactly (the default up to {MAX_EXACT_HIDDEN} hidden "
                             f"units) or estimated by AIS (the default above)")
    parser.add_argument("--ais-steps", type=experiment.positive_int, default=1000,
                        help="AIS annealing steps for each epoch's log Z (with --log-z ais)")
    parser.add_argument("--final-ais-steps", type=experiment.positive_int, default=15_000,
                        help="AIS annealing steps for the final log Z (Salakhutdinov and Murray's 15,000)")
    parser.add_argument("--ais-runs", type=experiment.positive_int, default=100, help="independent AIS runs")
    parser.add_argument("--method", choices=("pcd", "cd"), default="pcd",
                        help="persistent CD (Tieleman 2008) or CD (Hinton 2002)")
    parser.add_argument("--k", type=experiment.positive_int, default=1, help="Gibbs sweeps per update")
    parser.add_argument("--visible-bias", choices=("marginals", "zero"), default="marginals",
                        help="start b at the pixels' log-odds (Hinton's guide) or at zero (scikit-learn)")
    parser.add_argument("--lr-decay", choices=("linear", "none"), default="linear",
                        help="the learning rate falls linearly to zero over --epochs, or stays")
    parser.add_argument("--momentum", type=experiment.fraction_below_one, default=0.0, help="SGD momentum")
    parser.add_argument("--samples", type=experiment.positive_int, default=64, help="chains in samples.png")
    parser.add_argument("--gibbs-steps", type=experiment.positive_int, default=1000,
                        help="Gibbs sweeps before samples.png is drawn")
    parser.add_argument("--limit", type=experiment.positive_int, default=None,
                        help="use only the first N training and test examples")
    args = parser.parse_args(argv)
    if args.log_z is None:
        args.log_z = "exact" if args.hidden <= MAX_EXACT_HIDDEN else "ais"
    if args.log_z == "exact" and args.hidden > MAX_EXACT_HIDDEN:
        parser.error(f"--hidden {args.hidden} with --log-z exact: the exact log Z sums 2^hidden states; "
                     f"at most {MAX_EXACT_HIDDEN} (or --log-z ais)")
    for name in ("ais_steps", "final_ais_steps"):
        if getattr(args, name) < 3:
            parser.error(f"--{name.replace('_', '-')} {getattr(args, name)}: AIS's schedule needs at least 3 steps")
    return args


def load_data(args):
    """(train, test) binarised and flattened, float32 (N, 784)."""
    train = binarize(load_mnist(args.dataset, "train")[0]).reshape(-1, 784)[: args.limit]
    test = binarize(load_mnist(args.dataset, "test")[0]).reshape(-1, 784)[: args.limit]
    return train, test


def mean_free_energy(model, x, batch_size: int = 1000) -> float:
    """Mean F(x) over the rows of x: the mean NLL, -log p(x) = F(x) + log Z, less log Z."""
    with no_grad():
        total = sum(model.free_energy(x[start:start + batch_size]).sum().item()
                    for start in range(0, len(x), batch_size))
    return total / len(x)


def ais(model, train_x, steps: int, args):
    """:func:`ais_log_partition` from the training pixels' base rates, seeded by --seed (its own generator)."""
    return ais_log_partition(model, train_x, betas=ais_schedule(steps), runs=args.ais_runs, seed=args.seed)


def train(model, train_x, test_x, run, args) -> None:
    """SGD on the (P)CD estimate of the gradient; the NLLs after every epoch."""
    loader = DataLoader(train_x, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    opt = optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    cd = ContrastiveDivergence(model, k=args.k, persistent=args.method == "pcd")
    start = run.resume(model=model, optimizer=opt, loader=loader, cd=cd)
    with run.training():
        for epoch in range(start, args.epochs + 1):
            if args.lr_decay == "linear":  # from --lr in the first epoch to lr/epochs in the last
                opt.lr = args.lr * (1 - (epoch - 1) / args.epochs)
            began = time.perf_counter()
            for step, (x,) in enumerate(run.progress(loader, epoch), start=1):
                opt.zero_grad()
                cd.set_gradients(x)
                opt.step()
            seconds = time.perf_counter() - began
            interval = {}
            if args.log_z == "exact":
                log_z = model.log_partition()
            else:
                estimate = ais(model, train_x, args.ais_steps, args)
                log_z = estimate.log_z
                interval = {"log_partition_lower": estimate.log_z_lower, "log_partition_upper": estimate.log_z_upper}
            check_finite(log_z, epoch=epoch, step=step, name="log Z")
            run.log_epoch(epoch, train_nll_nats=mean_free_energy(model, train_x) + log_z,
                          test_nll_nats=mean_free_energy(model, test_x) + log_z, log_partition=log_z, **interval,
                          train_seconds=seconds)
            run.save_checkpoint(epoch)


def final_ais(model, train_x, test_x, final: dict, args) -> dict:
    """The final AIS estimate, with --final-ais-steps. With AIS as the per-epoch log Z it replaces the last
    epoch's quicker one (the NLLs get its interval); with the exact log Z it is a check beside it."""
    began = time.perf_counter()
    estimate = ais(model, train_x, args.final_ais_steps, args)
    found = {"ais_effective_runs": estimate.effective_runs, "ais_seconds": time.perf_counter() - began}
    log_z = {"": estimate.log_z, "_lower": estimate.log_z_lower, "_upper": estimate.log_z_upper}
    if args.log_z == "exact":
        found.update({f"ais_log_partition{end}": value for end, value in log_z.items()})
        found["ais_minus_exact_log_partition"] = estimate.log_z - final["log_partition"]
        return found
    test_free = mean_free_energy(model, test_x)
    found.update({f"log_partition{end}": value for end, value in log_z.items()})
    found.update({f"test_nll_nats{end}": test_free + value for end, value in log_z.items()})
    found["train_nll_nats"] = mean_free_energy(model, train_x) + estimate.log_z
    return found


def filters(weight) -> np.ndarray:
    """Each row W_j as an image in [0, 1]: 0.5 + W_j / (2 max |W_j|), so grey is zero and the sign shows."""
    w = np.asarray(weight, dtype=np.float32)
    return 0.5 + w / (2 * np.abs(w).max(axis=1, keepdims=True) + 1e-12)


def chains_over_time(model, n: int):
    """[(sweeps, p(v | h) after that many sweeps)] for ``n`` chains started from σ(b)."""
    v = model.sample(n, steps=0)
    snapshots, done = [], 0
    for steps in CHAIN_STEPS:
        v = model.gibbs(v, steps - done)
        done = steps
        snapshots.append((steps, model.visible_probabilities(model.sample_hidden(v))))
    return snapshots


def main(argv=None) -> dict:
    args = parse_args(argv)
    run = experiment.Run(args, name="rbm", may_change=("samples", "gibbs_steps"))
    train_x, test_x = load_data(args)
    model = RBM(784, args.hidden)
    if args.visible_bias == "marginals":
        model.fit_marginals(train_x)
    train(model, train_x, test_x, run, args)
    final = {name: value for name, value in run.history.last.items() if name not in ("epoch", "train_seconds")}
    final["train_wall_time_s"] = run.elapsed
    if args.log_z == "exact":  # (the least of noisy AIS estimates, each biased low, would flatter twice)
        final["best_test_nll_nats"] = min(record["test_nll_nats"] for record in run.history.records)
    independent = IndependentBernoulli(784).fit(train_x)
    with no_grad():
        final["independent_bernoulli_test_nll_nats"] = -independent.log_prob(tensor(test_x)).mean().item()
    final.update(final_ais(model, train_x, test_x, final, args))

    plot.image_grid(filters(model.weight.numpy()), run.path("filters.png"), nrow=10,
                    title=f"RBM filters W_j ({args.hidden} hidden units)")
    plot.samples_over_training(chains_over_time(model, 10), run.path("gibbs_chains.png"), label="sweep",
                               title="Gibbs chains from σ(b): p(v | h) after each number of sweeps")
    states = model.sample(args.samples, args.gibbs_steps)
    plot.image_grid(model.visible_probabilities(model.sample_hidden(states)), run.path("samples.png"),
                    title=f"RBM samples: p(v | h) after {args.gibbs_steps} Gibbs sweeps")
    plot.nearest_training(states, train_x, run.path("nearest_training.png"))  # binary states beside binary digits
    final.update(metrics.memorisation_check(states, train_x, test_x))
    plot.loss_curves(run.history, run.path("learning_curve.png"), keys=["train_nll_nats", "test_nll_nats"],
                     title=f"RBM ({args.method.upper()}-{args.k}): {args.log_z.replace('ais', 'AIS')} NLL (nats)")
    return run.finish(**final)


if __name__ == "__main__":
    main()

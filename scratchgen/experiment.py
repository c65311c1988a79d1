"""The command line and bookkeeping every demo shares: arguments, output folder, checkpoints, metrics.

A demo is then its model and its training loop, and nothing else::

    parser = experiment.demo_parser("A VAE on MNIST", epochs=20, lr=1e-3)
    args = parser.parse_args()
    run = experiment.Run(args, name="vae")                 # backend, seed, output folder, clock
    loader = DataLoader(x, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    model = VAE(); opt = optim.Adam(model.parameters(), lr=args.lr)
    start = run.resume(model=model, optimizer=opt, loader=loader)   # 1, or after the checkpoint
    with run.training():                                   # a Diverged error in here keeps what the run has
        for epoch in range(start, args.epochs + 1):
            bar = run.progress(loader, epoch)
            for step, (x,) in enumerate(bar, start=1):
                ...
                bar.set(loss=check_finite(loss, epoch=epoch, step=step))
            run.log_epoch(epoch, loss=epoch_loss)
            run.save_checkpoint(epoch)
    plot.image_grid(samples, run.path("samples.png"))
    run.finish(loss=epoch_loss)                            # metrics.json, and one JSON line, last

Every demo thus takes ``--dataset --epochs --batch-size --lr --seed --backend --out DIR --resume
--overwrite --quiet`` and writes its pictures, ``checkpoint.npz`` and ``metrics.json`` into DIR
(``runs/<name>`` by default).

Nothing lost, nothing silent:

* Arguments are checked when parsed (the type functions below; a demo's own cross-checks call
  ``parser.error``), so a bad one stops the demo before any work, with argparse's message.
* A fresh run refuses a folder that holds a checkpoint (``--resume`` continues it, ``--out`` writes
  elsewhere, ``--overwrite`` discards it).
* A resumed run follows one rule, :meth:`Run.resume`'s: the command line wins for what may change in
  the middle of a run (``--epochs``, ``--lr``, where and how to report, the flags a demo names as
  evaluation-only); every other setting defines the model or its data and must match the checkpoint.
  What changed is warned about and recorded in ``metrics.json``.
* A diverged run (:class:`~scratchgen.train.Diverged`, a NaN or infinite loss or weight) stops at once;
  the checkpoint of its last good epoch stays, and ``metrics.json`` is still written, with the history
  so far and ``"diverged": true``.

Exact resumption. A checkpoint holds, besides the epoch, the state of every object given to
:meth:`Run.resume`, the backend's random generator (dropout, noise, sampling), the metric history, and
:attr:`Run.state`, a dict for anything else the demo wants to keep (snapshots for a picture, say).
Saved at the end of an epoch and loaded into freshly built objects, that is everything the next epoch
depends on, so on the NumPy backend a resumed run repeats the uninterrupted run's losses bit for bit.
(CuPy's generator state cannot be saved; a resumed CuPy run is close, not identical.)

Data parallel. A demo built with ``demo_parser(..., distributed=True)`` takes ``--distributed`` and runs
as one of the ranks of ``mpiexec -n N`` (see :mod:`scratchgen.distributed`): :attr:`Run.comm` is then the
ranks' communicator, and rank 0 alone writes checkpoints, ``metrics.json`` and prints (the demo draws
its pictures only where :attr:`Run.is_main_process`). A checkpoint keeps every rank's random state, and
``--resume`` under the same number of ranks repeats the uninterrupted run bit for bit; every rank reads
the checkpoint, so the output folder must be one they all see (a shared file system across machines).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import time
import warnings

import numpy

from scratchgen import backend, distributed
from scratchgen.checkpoint import CheckpointError, atomic_write, load, save
from scratchgen.optim import Optimizer
from scratchgen.train import Diverged, History, ProgressBar, as_number

__all__ = ["demo_parser", "add_backend_flag", "Run", "positive_int", "non_negative_int", "positive_float",
           "non_negative_float", "fraction", "fraction_below_one"]

# On --resume, arguments that say only how far to train and where and how to report: they may differ from
# the checkpoint's without a word. Any other difference is warned about; see Run.resume for the rule.
# (--distributed too: the number of ranks, which must match, is checked on its own.)
_FREE_ON_RESUME = ("epochs", "resume", "overwrite", "quiet", "out", "backend", "distributed")
# Settings of every demo that may change mid-run, the command line winning; a demo adds its own to Run.
_MAY_CHANGE_ON_RESUME = ("lr",)


# ------------------------------------------------------------------ argparse types
# Each raises ArgumentTypeError, which argparse turns into "argument --flag: <message>" and exit status 2.

def positive_int(text: str) -> int:
    """argparse type for a count: an integer at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """argparse type for a count that may be zero (0 epochs of a baseline: skip it), or a seed."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer at least 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type for a learning rate or a scale: a finite number above 0."""
    value = float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number above 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type for a weight such as a penalty's: a finite number at least 0 (NaN is refused too)."""
    value = float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number at least 0, got {text}")
    return value


def fraction(text: str) -> float:
    """argparse type for a share of something: a number from 0 to 1, both included."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be a number from 0 to 1, got {text}")
    return value


def fraction_below_one(text: str) -> float:
    """argparse type for a momentum or one of Adam's betas: at least 0 and below 1 (1 would never forget)."""
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number at least 0 and below 1, got {text}")
    return value


def demo_parser(description: str, *, dataset: str = "embedded", datasets=None, epochs: int = 10,
                batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
                distributed: bool = False) -> argparse.ArgumentParser:
    """The shared command line, with this demo's defaults; add the demo's own flags to it.

    Args:
        description: one line saying what the demo does (shown by ``--help``).
        dataset: the default ``--dataset``; ``datasets``: the allowed choices (any string if None).
        epochs, batch_size, lr, seed: the defaults of the flags of the same names.
        distributed: offer ``--distributed``, for a demo that trains data-parallel under ``mpiexec``.

    Returns:
        An ``argparse.ArgumentParser`` whose ``parse_args()`` gives ``dataset, epochs, batch_size, lr,
        seed, backend, out, resume, overwrite, quiet``. Give the demo's own flags a type from this
        module, so that every value is checked when it is parsed.
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", default=dataset, choices=datasets, help="training data")
    parser.add_argument("--epochs", type=positive_int, default=epochs, help="epochs in all (a resumed run too)")
    parser.add_argument("--batch-size", type=positive_int, default=batch_size, help="samples per minibatch")
    parser.add_argument("--lr", type=positive_float, default=lr,
                        help="learning rate (on --resume, it replaces the checkpoint's)")
    parser.add_argument("--seed", type=non_negative_int, default=seed, help="seed of every random choice")
    add_backend_flag(parser)
    parser.add_argument("--out", metavar="DIR", default=None, help="output folder (default: runs/<demo name>)")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.npz")
    start.add_argument("--overwrite", action="store_true",
                       help="start afresh even if DIR holds a checkpoint (it is deleted)")
    parser.add_argument("--quiet", action="store_true", help="print nothing but the final JSON line")
    if distributed:
        parser.add_argument("--distributed", action="store_true",
                            help="train data-parallel as one of the ranks of `mpiexec -n N` (needs the [mpi] "
                                 "extra); --batch-size is then per rank, so the batch of a step is N times it")
    return parser


def add_backend_flag(parser: argparse.ArgumentParser) -> None:
    """``--backend``, defaulting to the active backend (what ``SCRATCHGEN_BACKEND`` chose): for
    :func:`demo_parser` and for a demo with a command line of its own."""
    parser.add_argument("--backend", choices=("numpy", "cupy", "strict"), default=backend.get_backend(),
                        help="array library; strict is a test instrument, NumPy refusing host/device mixes as CuPy "
                             "does (what SCRATCHGEN_BACKEND=strict selects)")


class Run:
    """One run of a demo: sets the backend and seed, owns the output folder, the history and the clock.

    A fresh run never replaces a checkpoint (``--overwrite`` says to); a resumed one follows the rule in
    :meth:`resume` (the command line wins for ``--epochs``, ``--lr`` and ``may_change``, every other
    setting must match); a diverged one, inside :meth:`training`, keeps its last good checkpoint and
    still writes ``metrics.json``.

    Args:
        args: the parsed arguments of :func:`demo_parser` (plus the demo's own).
        name: the demo's name, for the default output folder ``runs/<name>`` and ``metrics.json``.
        may_change: the demo's own flags (as attribute names, ``"k"``) that only change what is measured
            or drawn after training, so that a resumed run may change them; see :meth:`resume`.

    Attributes:
        out: the output folder. history: a :class:`~scratchgen.train.History` of :meth:`log_epoch`.
        comm: with ``--distributed``, the ranks' :class:`~scratchgen.distributed.Communicator`; else None.
        rank, world_size: this process's rank and the number of ranks (0 and 1 without ``--distributed``).
        is_main_process: whether this is rank 0, the one that writes files and prints.
        state: a dict of plain data (arrays, numbers, lists) saved with each checkpoint and restored by
            :meth:`resume`.
        diverged: None, or the :class:`~scratchgen.train.Diverged` error that stopped :meth:`training`.

    Raises:
        FileExistsError: a fresh run (no ``--resume``) into a folder that holds a checkpoint, without
            ``--overwrite``: the message says how to resume it or where to write instead.
    """

    checkpoint_name = "checkpoint.npz"

    def __init__(self, args: argparse.Namespace, name: str, may_change=()):
        self.args, self.name = args, name
        self.out = args.out or os.path.join("runs", name)
        backend.set_backend(args.backend)
        backend.keep_freed_memory()  # each step reuses the last one's pages (a sixth of a U-Net step, else)
        self.comm = distributed.init() if getattr(args, "distributed", False) else None  # after the backend: GPUs
        self.rank, self.world_size = (self.comm.rank, self.comm.size) if self.comm else (0, 1)
        self.is_main_process = self.rank == 0
        self.quiet = args.quiet or not self.is_main_process
        if not args.resume and os.path.exists(self.checkpoint_path):
            if not getattr(args, "overwrite", False):
                raise FileExistsError(
                    f"{self.checkpoint_path} holds the checkpoint of an earlier run, which a fresh run would "
                    f"replace: continue that run with --resume, write this one elsewhere with --out DIR, or "
                    f"discard the checkpoint with --overwrite")
            if self.is_main_process:
                os.remove(self.checkpoint_path)
        backend.manual_seed(args.seed)
        if self.is_main_process:
            os.makedirs(self.out, exist_ok=True)
        self.may_change = _MAY_CHANGE_ON_RESUME + tuple(may_change)
        self.history = History()
        self.state = {}
        self.diverged = None
        self._objects = {}
        self._saved_epoch = None  # the epoch of the checkpoint on disk, once this run saved or resumed one
        self._changed_on_resume = []  # what each resumption changed, for metrics.json
        self._start = time.perf_counter()
        self._earlier_seconds = 0.0  # the wall time of the run(s) this one continues

    # ------------------------------------------------------------------ paths, time, printing

    def path(self, filename: str) -> str:
        """``filename`` inside the output folder."""
        return os.path.join(self.out, filename)

    @property
    def checkpoint_path(self) -> str:
        return self.path(self.checkpoint_name)

    @property
    def elapsed(self) -> float:
        """Wall-clock seconds of training so far, including the runs this one resumed."""
        return self._earlier_seconds + time.perf_counter() - self._start

    def progress(self, iterable, epoch: int) -> ProgressBar:
        """A progress bar over ``iterable`` for ``epoch`` (silent with ``--quiet`` or without a terminal)."""
        return ProgressBar(iterable, epoch=epoch, epochs=self.args.epochs, quiet=self.quiet)

    def log_epoch(self, epoch: int, **metrics) -> dict:
        """Add ``metrics`` (numbers or one-element tensors) to the history, print them unless quiet,
        and return the record."""
        record = self.history.log(epoch, **metrics)
        if not self.quiet:
            values = "  ".join(f"{name} {value:.4g}" for name, value in record.items() if name != "epoch")
            print(f"epoch {epoch}/{self.args.epochs}  {values}  ({self.elapsed:.1f} s)", flush=True)
        return record

    # ------------------------------------------------------------------ checkpoints

    def resume(self, **objects) -> int:
        """Name what a checkpoint holds and, with ``--resume``, load it; return the first epoch to run.

        The rule for arguments that differ from the checkpoint's, one for every setting:

        * ``--epochs``, ``--out``, ``--quiet``, ``--backend`` may differ freely (``--epochs`` counts all
          epochs, so it may not be fewer than the checkpoint has trained);
        * ``--lr`` and the demo's ``may_change`` flags may change: the command line wins (an optimiser
          among ``objects`` is given ``--lr`` after loading), with a warning, and ``metrics.json``
          records the change under ``changed_on_resume``;
        * every other setting defines the model or its data (architecture, dataset, batch size, seed,
          ...): a difference is refused, since the checkpoint cannot be continued as another run.

        Args:
            **objects: anything with ``state_dict()`` and ``load_state_dict()`` (modules, optimisers,
                the data loader, early stopping), under the names the checkpoint will use. Build them
                exactly as a fresh run would before calling this.

        Returns:
            1 for a fresh run; with ``--resume``, one more than the checkpoint's epoch.

        Raises:
            FileNotFoundError: ``--resume`` without a checkpoint in the output folder.
            CheckpointError: the checkpoint lacks one of ``objects`` (or is damaged).
            ValueError: ``--epochs`` fewer than the checkpoint's epoch, or a setting that must match
                differs; nothing is loaded then.
        """
        for name, obj in objects.items():
            if not (hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict")):
                raise TypeError(f"Run.resume: {name}={type(obj).__name__} has no state_dict/load_state_dict")
        self._objects = dict(objects)
        if not self.args.resume:
            return 1
        state = self.load_checkpoint()
        if state is None:
            raise FileNotFoundError(f"--resume: there is no checkpoint at {self.checkpoint_path}")
        missing = sorted(set(objects) - set(state["objects"]))
        if missing:
            raise CheckpointError(f"Run.resume: {self.checkpoint_path} holds no {missing} "
                                  f"(it has {sorted(state['objects'])})")
        changed = self._check_resumable(state)
        for name, obj in objects.items():
            obj.load_state_dict(state["objects"][name])
            if isinstance(obj, (Optimizer, distributed.DistributedOptimizer)):
                obj.lr = self.args.lr  # the command line's, not the checkpoint's
        self._changed_on_resume = list(state.get("changed_on_resume", []))
        if changed:
            self._changed_on_resume.append({"after_epoch": state["epoch"],
                                            **{name: list(values) for name, values in changed.items()}})
        self._saved_epoch = state["epoch"]
        if state["rng"] is not None and backend.get_backend() == "numpy":
            # This rank's own state; a checkpoint of one process holds rank 0's alone.
            backend.set_rng_state(state["rng_by_rank"][self.rank] if "rng_by_rank" in state else state["rng"])
        else:
            warnings.warn("resuming without the saved random state (CuPy's cannot be saved): the continued "
                          "run will differ from an uninterrupted one in its random draws")
        self.history.load_state_dict(state["history"])
        self.state = state["state"]
        self._earlier_seconds = state["wall_time_s"]
        if not self.quiet:
            print(f"resumed from {self.checkpoint_path} after epoch {state['epoch']}", flush=True)
        return state["epoch"] + 1

    def _check_resumable(self, state: dict) -> dict:
        """Apply :meth:`resume`'s rule to the checkpoint's arguments; return the changes allowed,
        ``{name: (saved, now)}``."""
        saved_size = state.get("world_size", 1)
        if saved_size != self.world_size:
            raise ValueError(f"--resume: {self.checkpoint_path} was saved by {saved_size} rank(s), and this run has "
                             f"{self.world_size}; each rank's random state and share of the data depend on the "
                             f"number of ranks, so resume it under `mpiexec -n {saved_size}`"
                             + ("" if saved_size > 1 else " or without --distributed"))
        if self.args.epochs < state["epoch"]:
            raise ValueError(f"--epochs {self.args.epochs}: the checkpoint at {self.checkpoint_path} has already "
                             f"trained {state['epoch']} epochs, and --epochs counts them all; give more than "
                             f"{state['epoch']} to train on, or {state['epoch']} to evaluate and draw again")
        now = vars(self.args)
        changed = {name: (saved, now[name]) for name, saved in state["args"].items()
                   if name in now and name not in _FREE_ON_RESUME and now[name] != saved}
        if not changed:
            return {}
        warnings.warn(f"resuming with arguments that differ from the checkpoint's (saved, now): {changed}")
        fixed = {name: values for name, values in changed.items() if name not in self.may_change}
        if fixed:
            saved = " ".join(_flag(name, values[0]) for name, values in fixed.items())
            given = " ".join(_flag(name, values[1]) for name, values in fixed.items())
            raise ValueError(f"--resume: {self.checkpoint_path} was saved with other settings: {saved}, not {given}. "
                             f"They define the model or its data, so a resumed run keeps them: resume with the "
                             f"saved values, or start a new run with --out DIR")
        return changed

    def save_checkpoint(self, epoch: int) -> str:
        """Save, atomically, the objects given to :meth:`resume`, the random state, the history and
        :attr:`state`, as of the end of ``epoch``; returns the checkpoint's path.

        With ``--distributed`` every rank must call it (it gathers the ranks' random states) and rank 0
        alone writes; the objects are the same on every rank, as data-parallel training keeps them.

        Raises:
            Diverged: a weight (any floating-point array of the objects) is NaN or infinite; the last
                good checkpoint is left as it was.
        """
        objects = {name: obj.state_dict() for name, obj in self._objects.items()}
        where = _first_non_finite(objects)
        if where is not None:
            raise Diverged(f"{where} is not finite, so it was not saved over the last good checkpoint", epoch=epoch)
        rng = backend.get_rng_state() if backend.get_backend() == "numpy" else None
        ranks = {} if self.comm is None else {"world_size": self.world_size, "rng_by_rank": self.comm.allgather(rng)}
        if self.is_main_process:
            save({
                "epoch": int(epoch),
                "objects": objects,
                "rng": rng,
                **ranks,
                "history": self.history.state_dict(),
                "state": self.state,
                "args": vars(self.args),
                "changed_on_resume": self._changed_on_resume,
                "wall_time_s": self.elapsed,
            }, self.checkpoint_path)
        self._saved_epoch = int(epoch)
        return self.checkpoint_path

    def load_checkpoint(self) -> dict | None:
        """The checkpoint in the output folder as saved by :meth:`save_checkpoint`, or None if there is none."""
        return load(self.checkpoint_path) if os.path.exists(self.checkpoint_path) else None

    # ------------------------------------------------------------------ divergence

    @contextlib.contextmanager
    def training(self):
        """The block in which the epochs run: a :class:`~scratchgen.train.Diverged` raised in it stops
        the run without losing what it has.

        The error's advice gains where the last good checkpoint is (nothing after it was saved) and how
        to go on; ``metrics.json`` is written with the history so far, ``"diverged": true`` and the
        message, and the final JSON line says ``{"diverged": true, ...}``; then the error propagates.
        """
        try:
            yield
        except Diverged as error:
            lower = f"{self.args.lr / 10:g}"
            if self._saved_epoch is None:
                error.advice.append(f"No epoch finished, so no checkpoint was saved: start again with, e.g., "
                                    f"--lr {lower}.")
            else:
                error.advice.append(f"The last good checkpoint, after epoch {self._saved_epoch}, is kept at "
                                    f"{self.checkpoint_path}: continue from it with, e.g., --resume --lr {lower}.")
            self.diverged = error
            self.finish()
            raise

    # ------------------------------------------------------------------ the end

    def finish(self, **final_metrics) -> dict:
        """Write ``metrics.json`` and print ``final_metrics`` as one JSON line, the last line of output.

        ``metrics.json`` holds the demo's name, the final metrics, the per-epoch history, the arguments
        (as the command line gave them: those in use), the backend, the wall time in seconds and the
        scratchgen version; ``changed_on_resume`` when a resumption changed a setting (``[{"after_epoch":
        3, "lr": [saved, now]}]``); and, after :meth:`training` stopped at a divergence, ``"diverged":
        true`` and the message as ``"divergence"`` (the printed line is then ``{"diverged": true, "epoch":
        ..., "step": ...}``). NaN and infinite values are written as ``null``, so the file is strict JSON.
        Each final metric is a number (or one-element tensor) or a list of numbers.

        With ``--distributed`` only rank 0 writes and prints; the other ranks return the same dict.

        Returns:
            The dict written to ``metrics.json``.
        """
        from scratchgen import __version__  # here, not at the top: the package may import this module

        final = {name: [as_number(v) for v in value] if isinstance(value, (list, tuple)) else as_number(value)
                 for name, value in final_metrics.items()}
        report = {
            "name": self.name, "final": final, "history": self.history.records, "args": vars(self.args),
            "backend": backend.get_backend(), "wall_time_s": round(self.elapsed, 3), "scratchgen_version": __version__,
        }
        if self._changed_on_resume:
            report["changed_on_resume"] = self._changed_on_resume
        last_line = final
        if self.diverged is not None:
            report["diverged"] = True
            report["divergence"] = str(self.diverged)
            last_line = {"diverged": True, "epoch": self.diverged.epoch, "step": self.diverged.step}
        report = _json_ready(report)
        if not self.is_main_process:
            return report
        with atomic_write(self.path("metrics.json"), "w") as file:
            json.dump(report, file, indent=2, allow_nan=False, default=str)
            file.write("\n")
        print(json.dumps(_json_ready(last_line), allow_nan=False), flush=True)
        return report


def _flag(name: str, value) -> str:
    """An argument as it is written on the command line: ``--latent-dim 20``, ``--hidden 128 128``."""
    shown = " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
    return f"--{name.replace('_', '-')} {shown}"


def _first_non_finite(tree, where: str = "") -> str | None:
    """The path ("model/encoder.0.weight") of the first floating-point array in a nested dict or list
    that holds a NaN or an infinity, or None if there is none."""
    if isinstance(tree, dict):
        items = tree.items()
    elif isinstance(tree, (list, tuple)):
        items = enumerate(tree)
    else:
        if getattr(getattr(tree, "dtype", None), "kind", None) not in ("f", "c"):
            return None
        module = backend.xp if backend.is_array(tree) else numpy  # a CuPy array is checked on its device
        return None if bool(module.isfinite(tree).all()) else where
    for key, value in items:
        found = _first_non_finite(value, f"{where}/{key}" if where else str(key))
        if found is not None:
            return found
    return None


def _json_ready(value):
    """``value`` with NaN and infinities replaced by None, recursively (strict JSON has neither)."""
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

"""The command line and bookkeeping every demo shares: arguments, output folder, checkpoints, metrics.

A demo is then its model and its training loop, and nothing else::

    parser = experiment.demo_parser("A VAE on MNIST", epochs=20, lr=1e-3)
    args = parser.parse_args()
    run = experiment.Run(args, name="vae")                 # backend, seed, output folder, clock
    loader = DataLoader(x, batch_size=args.batch_size, shuffle=True, seed=args.seed)
    model = VAE(); opt = optim.Adam(model.parameters(), lr=args.lr)
    start = run.resume(model=model, optimizer=opt, loader=loader)   # 1, or after the checkpoint
    for epoch in range(start, args.epochs + 1):
        bar = run.progress(loader, epoch)
        for (x,) in bar:
            ...
            bar.set(loss=loss)
        run.log_epoch(epoch, loss=epoch_loss)
        run.save_checkpoint(epoch)
    plot.image_grid(samples, run.path("samples.png"))
    run.finish(loss=epoch_loss)                            # metrics.json, and one JSON line, last

Every demo thus takes ``--dataset --epochs --batch-size --lr --seed --backend --out DIR --resume --quiet``
and writes its pictures, ``checkpoint.npz`` and ``metrics.json`` into DIR (``runs/<name>`` by default).

Exact resumption. A checkpoint holds, besides the epoch, the state of every object given to
:meth:`Run.resume`, the backend's random generator (dropout, noise, sampling), the metric history, and
:attr:`Run.state`, a dict for anything else the demo wants to keep (snapshots for a picture, say).
Saved at the end of an epoch and loaded into freshly built objects, that is everything the next epoch
depends on, so on the NumPy backend a resumed run repeats the uninterrupted run's losses bit for bit.
(CuPy's generator state cannot be saved; a resumed CuPy run is close, not identical.)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings

from scratchgen import backend
from scratchgen.checkpoint import CheckpointError, atomic_write, load, save
from scratchgen.train import History, ProgressBar, as_number

__all__ = ["demo_parser", "Run", "positive_int", "non_negative_float"]

# Arguments that may differ between a run and its resumption without changing what it computes.
_RESUMABLE_CHANGES = ("epochs", "resume", "quiet", "out", "backend")


def positive_int(text: str) -> int:
    """argparse type for a count: an integer at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type for a weight such as a penalty's: a number at least 0 (NaN is refused too)."""
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number at least 0, got {text}")
    return value


def demo_parser(description: str, *, dataset: str = "embedded", datasets=None, epochs: int = 10,
                batch_size: int = 64, lr: float = 1e-3, seed: int = 0) -> argparse.ArgumentParser:
    """The shared command line, with this demo's defaults; add the demo's own flags to it.

    Args:
        description: one line saying what the demo does (shown by ``--help``).
        dataset: the default ``--dataset``; ``datasets``: the allowed choices (any string if None).
        epochs, batch_size, lr, seed: the defaults of the flags of the same names.

    Returns:
        An ``argparse.ArgumentParser`` whose ``parse_args()`` gives ``dataset, epochs, batch_size, lr,
        seed, backend, out, resume, quiet``.
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", default=dataset, choices=datasets, help="training data")
    parser.add_argument("--epochs", type=positive_int, default=epochs, help="epochs in all (a resumed run too)")
    parser.add_argument("--batch-size", type=positive_int, default=batch_size, help="samples per minibatch")
    parser.add_argument("--lr", type=float, default=lr, help="learning rate")
    parser.add_argument("--seed", type=int, default=seed, help="seed of every random choice")
    parser.add_argument("--backend", choices=("numpy", "cupy"), default=backend.get_backend(), help="array library")
    parser.add_argument("--out", metavar="DIR", default=None, help="output folder (default: runs/<demo name>)")
    parser.add_argument("--resume", action="store_true", help="continue from DIR/checkpoint.npz")
    parser.add_argument("--quiet", action="store_true", help="print nothing but the final JSON line")
    return parser


class Run:
    """One run of a demo: sets the backend and seed, owns the output folder, the history and the clock.

    Args:
        args: the parsed arguments of :func:`demo_parser` (plus the demo's own).
        name: the demo's name, for the default output folder ``runs/<name>`` and ``metrics.json``.

    Attributes:
        out: the output folder. history: a :class:`~scratchgen.train.History` of :meth:`log_epoch`.
        state: a dict of plain data (arrays, numbers, lists) saved with each checkpoint and restored by
            :meth:`resume`.
    """

    checkpoint_name = "checkpoint.npz"

    def __init__(self, args: argparse.Namespace, name: str):
        self.args, self.name = args, name
        self.quiet = args.quiet
        backend.set_backend(args.backend)
        backend.manual_seed(args.seed)
        self.out = args.out or os.path.join("runs", name)
        os.makedirs(self.out, exist_ok=True)
        self.history = History()
        self.state = {}
        self._objects = {}
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

        Args:
            **objects: anything with ``state_dict()`` and ``load_state_dict()`` (modules, optimisers,
                the data loader, early stopping), under the names the checkpoint will use. Build them
                exactly as a fresh run would before calling this.

        Returns:
            1 for a fresh run; with ``--resume``, one more than the checkpoint's epoch.

        Raises:
            FileNotFoundError: ``--resume`` without a checkpoint in the output folder.
            CheckpointError: the checkpoint lacks one of ``objects`` (or is damaged).
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
        changed = {k: (v, getattr(self.args, k, None)) for k, v in state["args"].items()
                   if k not in _RESUMABLE_CHANGES and getattr(self.args, k, None) != v}
        if changed:
            warnings.warn(f"resuming with arguments that differ from the checkpoint's (saved, now): {changed}")
        for name, obj in objects.items():
            obj.load_state_dict(state["objects"][name])
        if state["rng"] is not None and backend.get_backend() == "numpy":
            backend.set_rng_state(state["rng"])
        else:
            warnings.warn("resuming without the saved random state (CuPy's cannot be saved): the continued "
                          "run will differ from an uninterrupted one in its random draws")
        self.history.load_state_dict(state["history"])
        self.state = state["state"]
        self._earlier_seconds = state["wall_time_s"]
        if not self.quiet:
            print(f"resumed from {self.checkpoint_path} after epoch {state['epoch']}", flush=True)
        return state["epoch"] + 1

    def save_checkpoint(self, epoch: int) -> str:
        """Save, atomically, the objects given to :meth:`resume`, the random state, the history and
        :attr:`state`, as of the end of ``epoch``; returns the checkpoint's path."""
        return save({
            "epoch": int(epoch),
            "objects": {name: obj.state_dict() for name, obj in self._objects.items()},
            "rng": backend.get_rng_state() if backend.get_backend() == "numpy" else None,
            "history": self.history.state_dict(),
            "state": self.state,
            "args": vars(self.args),
            "wall_time_s": self.elapsed,
        }, self.checkpoint_path)

    def load_checkpoint(self) -> dict | None:
        """The checkpoint in the output folder as saved by :meth:`save_checkpoint`, or None if there is none."""
        return load(self.checkpoint_path) if os.path.exists(self.checkpoint_path) else None

    # ------------------------------------------------------------------ the end

    def finish(self, **final_metrics) -> dict:
        """Write ``metrics.json`` and print ``final_metrics`` as one JSON line, the last line of output.

        ``metrics.json`` holds the demo's name, the final metrics, the per-epoch history, the arguments,
        the backend, the wall time in seconds and the scratchgen version. NaN and infinite values (a
        diverged run) are written as ``null``, so the file is strict JSON. Each final metric is a number
        (or one-element tensor) or a list of numbers.

        Returns:
            The dict written to ``metrics.json``.
        """
        from scratchgen import __version__  # here, not at the top: the package may import this module

        final = {name: [as_number(v) for v in value] if isinstance(value, (list, tuple)) else as_number(value)
                 for name, value in final_metrics.items()}
        report = _json_ready({
            "name": self.name, "final": final, "history": self.history.records, "args": vars(self.args),
            "backend": backend.get_backend(), "wall_time_s": round(self.elapsed, 3), "scratchgen_version": __version__,
        })
        with atomic_write(self.path("metrics.json"), "w") as file:
            json.dump(report, file, indent=2, allow_nan=False, default=str)
            file.write("\n")
        print(json.dumps(report["final"], allow_nan=False), flush=True)
        return report


def _json_ready(value):
    """``value`` with NaN and infinities replaced by None, recursively (strict JSON has neither)."""
    if isinstance(value, dict):
        return {key: _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value

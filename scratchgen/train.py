"""Training support: a progress bar, a history of metrics per epoch, early stopping, and the divergence check.

These are the small pieces every training loop in ``demos/`` shares::

    history, stopper = History(), EarlyStopping("val_loss", patience=5)
    for epoch in range(1, epochs + 1):
        bar = ProgressBar(loader, epoch=epoch, epochs=epochs)
        for step, (x,) in enumerate(bar, start=1):
            loss = ...
            value = check_finite(loss, epoch=epoch, step=step)   # Diverged at a NaN or infinite loss
            loss.backward(); opt.step()
            bar.set(loss=value)
        history.log(epoch, loss=train_loss, val_loss=val_loss)
        if stopper.step(val_loss):
            break

:class:`History` and :class:`EarlyStopping` have ``state_dict``/``load_state_dict`` like modules and
optimisers, so a checkpoint (see :mod:`scratchgen.checkpoint`) resumes them too. The progress bar draws
on standard error, never on standard output, so that a demo's last line of output stays its JSON result.

A loss that turns NaN or infinite never comes back: every later step only spreads it through the
weights. :func:`check_finite` stops the loop at the first such loss, before its backward pass, with a
:class:`Diverged` error that says where and what to try; :meth:`scratchgen.experiment.Run.training`
then keeps the last good checkpoint and writes what the run has.
"""

from __future__ import annotations

import math
import sys
import time

__all__ = ["ProgressBar", "History", "EarlyStopping", "Diverged", "check_finite", "gradient_step", "minimise_epoch"]


def as_number(value):
    """A Python int or float from a number, NumPy scalar or one-element Tensor/array (synchronises a GPU)."""
    if isinstance(value, (bool, int, float)):
        return value
    if hasattr(value, "item"):
        return value.item()
    return float(value)


class Diverged(FloatingPointError):
    """Training has diverged: a loss (or, after an epoch, a weight) is NaN or infinite.

    Args:
        what: what is not finite, e.g. "loss is nan".
        epoch: the epoch it happened in. step: the step within the epoch, counted from 1; None for a
            check made after the epoch (its weights, before a checkpoint).

    Attributes:
        what, epoch, step: as given, for a caller that wants to report them.
        advice: sentences on what to do, ending the message; a caller that knows more (where the last
            good checkpoint is) appends to it, as Python 3.11's ``add_note`` would, but in the message.
    """

    def __init__(self, what: str, epoch: int, step: int | None = None):
        super().__init__(what, epoch, step)
        self.what, self.epoch, self.step = what, epoch, step
        self.advice = ["A learning rate too high is the usual cause: try a lower one (a tenth, say)."]

    def __str__(self) -> str:
        where = f"at epoch {self.epoch}, step {self.step}" if self.step is not None else f"after epoch {self.epoch}"
        return f"training diverged {where}: {self.what}. " + " ".join(self.advice)


def check_finite(loss, *, epoch: int, step: int, name: str = "loss") -> float:
    """``loss`` as a Python float, or :class:`Diverged` if it is NaN or infinite.

    Call it on each step's loss before its backward pass: the weights then still hold the last finite
    step. It reads the value to the host, as ``loss.item()`` does (a synchronisation on a GPU).

    Args:
        loss: a number, NumPy scalar or one-element Tensor.
        epoch, step: where the loop is (step counted from 1 within the epoch), for the message.
        name: what the loss is, for the message ("D's loss").

    Raises:
        Diverged: the loss is NaN or ±infinite; the message names the epoch, the step and the value.
    """
    value = float(as_number(loss))
    if not math.isfinite(value):
        raise Diverged(f"{name} is {value}", epoch=epoch, step=step)
    return value


def gradient_step(loss, optimizer, *, epoch: int, step: int) -> float:
    """One step of gradient descent on ``loss``: checked by :func:`check_finite` (the weights still hold the
    last finite step if it fails), the optimiser's gradients zeroed, back-propagated, stepped. Returns the
    loss as a float. The body of :func:`minimise_epoch`'s loop, for a loop that needs more around it."""
    value = check_finite(loss, epoch=epoch, step=step)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return value


def minimise_epoch(loss_of, batches, optimizer, epoch: int, metric: str = "loss", after_step=None) -> float:
    """One epoch of gradient steps on ``loss_of(*batch)``, each checked by :func:`check_finite` before its
    backward; returns the epoch's mean loss per example.

    The loop every maximum-likelihood demo runs (MADE, PixelCNN, the flows)::

        train_nll = minimise_epoch(lambda x: -model.log_prob(x).mean(), run.progress(loader, epoch), opt,
                                   epoch, metric="nll")

    Args:
        loss_of: batch arrays -> the mean loss over the batch, a one-element Tensor.
        batches: an iterable of batches (tuples of arrays); a :class:`ProgressBar` shows the running mean
            under the name ``metric``.
        optimizer: stepped once per batch, its gradients zeroed before each.
        epoch: for the divergence message.
        after_step: called as ``after_step(step)`` after each optimiser step (MADE draws new masks there).

    Raises:
        Diverged: a loss is NaN or infinite.
    """
    total, seen = 0.0, 0
    for step, batch in enumerate(batches, start=1):
        value = gradient_step(loss_of(*batch), optimizer, epoch=epoch, step=step)
        if after_step is not None:
            after_step(step)
        total, seen = total + value * len(batch[0]), seen + len(batch[0])
        if isinstance(batches, ProgressBar):
            batches.set(**{metric: total / seen})
    return total / seen


def _duration(seconds: float) -> str:
    """Seconds as "m:ss", or "h:mm:ss" from an hour on."""
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class ProgressBar:
    """Wraps an iterable of batches and redraws one line as it goes: epoch, step, metrics, speed, ETA.

    ``epoch 3/10  45/79 [########----]  loss 0.1234  5120 samples/s  ETA 0:07``

    The number of samples in a batch is the length of its first array (or of the batch itself if it
    is not a tuple or list). The bar is silent, and costs nothing, when ``quiet`` is set or the stream
    is not a terminal (a log file, a pipe, a test), so scripts and CI logs stay clean.

    Args:
        iterable: the batches, usually a DataLoader.
        total: number of steps; ``len(iterable)`` by default (leave the ETA out if neither is known).
        epoch, epochs: shown as "epoch 3/10" when given.
        quiet: never draw.
        stream: where to draw; standard error by default.
        min_interval: seconds between redraws, so drawing stays cheap next to a fast step.
    """

    width = 20  # characters of the bar itself

    def __init__(self, iterable, total: int | None = None, epoch: int | None = None, epochs: int | None = None,
                 quiet: bool = False, stream=None, min_interval: float = 0.1):
        self.iterable = iterable
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.epoch, self.epochs = epoch, epochs
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = not quiet and hasattr(self.stream, "isatty") and self.stream.isatty()
        self.min_interval = min_interval
        self.metrics = {}
        self.step = self.samples = 0
        self._start = self._last_draw = None
        self._drawn_width = 0

    def set(self, **metrics) -> None:
        """Show these metrics (numbers or one-element tensors; converted only when drawn)."""
        self.metrics.update(metrics)

    def __iter__(self):
        self._start = time.perf_counter()
        self._last_draw = -math.inf
        for batch in self.iterable:
            yield batch
            # Counted after the caller's step, so the speed covers the work done on the batch.
            self.step += 1
            first = batch[0] if isinstance(batch, (tuple, list)) else batch
            self.samples += len(first) if hasattr(first, "__len__") else 1
            if self.enabled and time.perf_counter() - self._last_draw >= self.min_interval:
                self._draw()
        if self.enabled:
            self._draw(final=True)

    def line(self, final: bool = False) -> str:
        """The text of the bar now."""
        elapsed = time.perf_counter() - self._start
        parts = []
        if self.epoch is not None:
            parts.append(f"epoch {self.epoch}/{self.epochs}" if self.epochs else f"epoch {self.epoch}")
        if self.total:
            filled = int(self.width * min(self.step / self.total, 1.0))
            parts.append(f"{self.step}/{self.total} [{'#' * filled}{'-' * (self.width - filled)}]")
        else:
            parts.append(f"step {self.step}")
        parts += [f"{name} {as_number(value):.4g}" for name, value in self.metrics.items()]
        if elapsed > 0:
            parts.append(f"{self.samples / elapsed:.0f} samples/s")
        if final:
            parts.append(f"{_duration(elapsed)} elapsed")
        elif self.total and self.step:
            parts.append(f"ETA {_duration(elapsed / self.step * (self.total - self.step))}")
        return "  ".join(parts)

    def _draw(self, final: bool = False) -> None:
        text = self.line(final)
        # "\r" returns to the start of the line; padding wipes what a longer previous line left behind.
        self.stream.write("\r" + text.ljust(self._drawn_width) + ("\n" if final else ""))
        self.stream.flush()
        self._drawn_width = len(text)
        self._last_draw = time.perf_counter()


class History:
    """Metrics per epoch: a list of records such as ``{"epoch": 3, "loss": 0.12, "val_loss": 0.15}``.

    A metric need not be logged every epoch (a costly evaluation every fifth epoch, say).
    """

    def __init__(self):
        self.records = []

    @classmethod
    def from_records(cls, records) -> "History":
        """A history holding copies of ``records`` (dicts with an "epoch" and metrics)."""
        history = cls()
        history.records = [dict(r) for r in records]
        return history

    def log(self, epoch: int, **metrics) -> dict:
        """Record ``metrics`` (numbers or one-element tensors) for ``epoch``; returns the record."""
        record = {"epoch": int(epoch), **{name: as_number(value) for name, value in metrics.items()}}
        self.records.append(record)
        return record

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        return iter(self.records)

    @property
    def last(self) -> dict | None:
        return self.records[-1] if self.records else None

    def metrics(self) -> list:
        """Names of the metrics logged, in order of first appearance (without "epoch")."""
        names = {}
        for record in self.records:
            names.update(dict.fromkeys(name for name in record if name != "epoch"))
        return list(names)

    def column(self, metric: str) -> tuple:
        """(epochs, values) of the records that have ``metric``, for plotting."""
        pairs = [(r["epoch"], r[metric]) for r in self.records if metric in r]
        return [e for e, _ in pairs], [v for _, v in pairs]

    def as_dict(self) -> dict:
        """Columns: ``{"epoch": [1, 2, ...], "loss": [...], ...}``, None where a metric was not logged."""
        return {name: [r.get(name) for r in self.records] for name in ["epoch"] + self.metrics()}

    def best(self, metric: str, mode: str = "min") -> dict:
        """The record with the lowest (``mode="min"``) or highest (``"max"``) value of ``metric``.

        Raises:
            KeyError: no record has ``metric``.
        """
        candidates = [r for r in self.records if metric in r and not math.isnan(r[metric])]
        if not candidates:
            raise KeyError(f"History.best: no epoch logged a (non-NaN) {metric!r}; logged: {self.metrics()}")
        pick = {"min": min, "max": max}[_check_mode(mode, "History.best")]
        return pick(candidates, key=lambda r: r[metric])

    def state_dict(self) -> dict:
        return {"records": [dict(r) for r in self.records]}

    def load_state_dict(self, state: dict) -> None:
        self.records = [dict(r) for r in state["records"]]


def _check_mode(mode: str, where: str) -> str:
    if mode not in ("min", "max"):
        raise ValueError(f"{where}: mode must be 'min' or 'max', got {mode!r}")
    return mode


class EarlyStopping:
    """Stop when a validation metric has not improved for ``patience`` epochs in a row.

    An epoch improves on the best so far when its value is lower by more than ``min_delta``
    (``mode="min"``, for losses) or higher by more than ``min_delta`` (``mode="max"``, for accuracies).
    A NaN never improves. After ``step``, ``improved`` says whether this epoch was a new best, the
    moment to save the best model.

    Args:
        metric: the name of the metric, for messages and the history.
        patience: epochs without improvement to tolerate before stopping (at least 1).
        mode: "min" or "max".
        min_delta: the smallest change that counts as an improvement.
    """

    def __init__(self, metric: str = "val_loss", patience: int = 5, mode: str = "min", min_delta: float = 0.0):
        if patience < 1:
            raise ValueError(f"EarlyStopping: patience must be at least 1, got {patience}")
        if min_delta < 0:
            raise ValueError(f"EarlyStopping: min_delta must be non-negative, got {min_delta}")
        self.metric, self.patience, self.min_delta = metric, patience, min_delta
        self.mode = _check_mode(mode, "EarlyStopping")
        self.best = None          # the best value seen so far
        self.best_epoch = None    # when it was seen
        self.num_bad_epochs = 0   # steps since the last improvement
        self.steps = 0
        self.improved = False

    @property
    def should_stop(self) -> bool:
        return self.num_bad_epochs >= self.patience

    def step(self, value, epoch: int | None = None) -> bool:
        """Take one epoch's value of the metric; return True when training should stop.

        ``epoch`` is recorded as ``best_epoch`` on an improvement; by default the count of calls.
        """
        value = as_number(value)
        self.steps += 1
        if self.best is None:
            self.improved = not math.isnan(value)
        elif self.mode == "min":
            self.improved = value < self.best - self.min_delta
        else:
            self.improved = value > self.best + self.min_delta
        if self.improved:
            self.best, self.best_epoch, self.num_bad_epochs = value, epoch or self.steps, 0
        else:
            self.num_bad_epochs += 1
        return self.should_stop

    def state_dict(self) -> dict:
        return {name: getattr(self, name) for name in ("best", "best_epoch", "num_bad_epochs", "steps", "improved")}

    def load_state_dict(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def __repr__(self) -> str:
        return (f"EarlyStopping({self.metric!r}, patience={self.patience}, mode={self.mode!r}, "
                f"best={self.best}, bad epochs={self.num_bad_epochs})")

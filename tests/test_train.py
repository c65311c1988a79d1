"""Training support: the progress bar, the history of metrics, early stopping."""

import io
import math

import numpy as np
import pytest

import scratchgen as sg
from scratchgen.train import EarlyStopping, History, ProgressBar


class _Terminal(io.StringIO):
    """A text stream that says it is a terminal."""

    def isatty(self):
        return True


class _CountingValue:
    """A metric that counts how often it is read (reading a CuPy value synchronises the GPU)."""

    def __init__(self, value):
        self.value, self.reads = value, 0

    def item(self):
        self.reads += 1
        return self.value


def _batches(n=4, size=8):
    return [(np.zeros((size, 3)), np.zeros(size)) for _ in range(n)]


@pytest.mark.parametrize("stream, quiet", [(io.StringIO(), False), (_Terminal(), True)])
def test_progress_bar_is_silent_off_a_terminal_and_when_quiet(stream, quiet):
    batches = _batches()
    loss = _CountingValue(0.5)
    bar = ProgressBar(batches, epoch=1, epochs=3, quiet=quiet, stream=stream, min_interval=0)
    seen = []
    for batch in bar:
        bar.set(loss=loss)
        seen.append(batch)
    assert seen == batches
    assert stream.getvalue() == ""
    assert loss.reads == 0
    assert (bar.step, bar.samples) == (4, 32)


def test_progress_bar_draws_one_line_on_a_terminal():
    stream = _Terminal()
    bar = ProgressBar(_batches(), epoch=2, epochs=5, stream=stream, min_interval=0)
    for step, _ in enumerate(bar):
        bar.set(loss=sg.tensor(1.0 / (step + 1)), kl=0.25)
        if step == 1:
            middle = bar.line()
    text = stream.getvalue()
    assert text.startswith("\r") and text.endswith("\n") and text.count("\n") == 1
    # Drawn inside the loop body of the second batch: one batch done so far.
    assert middle.startswith("epoch 2/5  1/4 [#####---------------]  loss 0.5  kl 0.25  ")
    assert "samples/s" in middle and "ETA" in middle
    final = text.rsplit("\r", 1)[1]
    assert "4/4 [####################]" in final and "loss 0.25" in final and "elapsed" in final


def test_progress_bar_without_a_length():
    stream = _Terminal()
    bar = ProgressBar((b for b in _batches(3)), stream=stream, min_interval=0)
    assert bar.total is None
    list(bar)
    assert "step 3" in stream.getvalue() and "ETA" not in stream.getvalue()


def test_history_records_columns_and_best():
    history = History()
    history.log(1, loss=sg.tensor(2.0), val_loss=np.float32(3.0))
    history.log(2, loss=1.0)
    history.log(3, loss=1.5, val_loss=0.5, accuracy=0.9)
    assert history.records[0] == {"epoch": 1, "loss": 2.0, "val_loss": 3.0}
    assert type(history.records[0]["loss"]) is float and type(history.records[0]["val_loss"]) is float
    assert history.metrics() == ["loss", "val_loss", "accuracy"]
    assert history.as_dict() == {"epoch": [1, 2, 3], "loss": [2.0, 1.0, 1.5], "val_loss": [3.0, None, 0.5],
                                 "accuracy": [None, None, 0.9]}
    assert history.column("val_loss") == ([1, 3], [3.0, 0.5])
    assert history.best("loss")["epoch"] == 2
    assert history.best("loss", mode="max")["epoch"] == 1
    assert history.best("val_loss")["epoch"] == 3
    assert history.last["epoch"] == 3 and len(history) == 3
    with pytest.raises(KeyError, match="'kl'"):
        history.best("kl")
    with pytest.raises(ValueError, match="mode"):
        history.best("loss", mode="lowest")

    copy = History()
    copy.load_state_dict(history.state_dict())
    assert copy.records == history.records
    copy.records[0]["loss"] = -1.0
    assert history.records[0]["loss"] == 2.0


def test_history_best_skips_nan():
    history = History()
    history.log(1, loss=float("nan"))
    history.log(2, loss=3.0)
    assert history.best("loss")["epoch"] == 2


def test_early_stopping_waits_patience_epochs_after_the_best():
    stopper = EarlyStopping("val_loss", patience=3)
    values = [1.0, 0.8, 0.9, 0.85, 0.7, 0.75, 0.75, 0.9]
    decisions = [stopper.step(v) for v in values]
    assert decisions == [False] * 7 + [True]
    assert stopper.best == 0.7 and stopper.best_epoch == 5 and stopper.num_bad_epochs == 3


def test_early_stopping_min_delta_and_max_mode():
    stopper = EarlyStopping("accuracy", patience=2, mode="max", min_delta=0.01)
    assert not stopper.step(0.50) and stopper.improved
    assert not stopper.step(0.505) and not stopper.improved  # better, but by less than min_delta
    assert not stopper.step(0.52) and stopper.improved
    assert not stopper.step(0.525)
    assert stopper.step(0.4)
    assert stopper.best == 0.52


def test_early_stopping_nan_never_improves_and_epoch_is_recorded():
    stopper = EarlyStopping(patience=2)
    assert not stopper.step(float("nan"), epoch=5) and stopper.best is None
    assert not stopper.step(1.0, epoch=10) and stopper.best_epoch == 10
    assert not stopper.step(float("nan"), epoch=15)
    assert stopper.step(math.inf, epoch=20)


def test_early_stopping_state_round_trip_continues_identically(tmp_path):
    values = [3.0, 2.0, 2.5, 2.4, 1.0, 1.1, 1.2]
    whole = EarlyStopping(patience=2)
    expected = [whole.step(v) for v in values]
    first = EarlyStopping(patience=2)
    decisions = [first.step(v) for v in values[:3]]
    second = EarlyStopping(patience=2)
    second.load_state_dict(sg.load(sg.save({"s": first.state_dict()}, tmp_path / "stopper.npz"))["s"])
    decisions += [second.step(v) for v in values[3:]]
    assert decisions == expected and second.state_dict() == whole.state_dict()


@pytest.mark.parametrize("kwargs", [{"patience": 0}, {"mode": "lowest"}, {"min_delta": -1.0}])
def test_early_stopping_rejects_bad_settings(kwargs):
    with pytest.raises(ValueError, match="EarlyStopping"):
        EarlyStopping(**kwargs)


def test_minimise_epoch_returns_the_mean_loss_per_example_and_stops_at_a_non_finite_one():
    """Batches of 3 and 1 examples with losses 2 and 6 (before each step): the mean per example is
    (3·2 + 1·6) / 4 = 3; a NaN loss raises Diverged naming the epoch and the step, before its backward."""
    import scratchgen as sg
    from scratchgen.train import Diverged, minimise_epoch

    w = sg.tensor(np.array([1.0]), requires_grad=True)
    opt = sg.optim.SGD([w], lr=1e-3)
    losses = iter([2.0, 6.0])
    steps = []
    mean = minimise_epoch(lambda x: (w * 0.0).sum() + next(losses), [(np.zeros(3),), (np.zeros(1),)], opt,
                          epoch=1, after_step=steps.append)
    assert mean == 3.0 and steps == [1, 2]
    with pytest.raises(Diverged, match="epoch 4, step 2"):
        minimise_epoch(lambda x: (w * x.sum()).sum(), [(np.ones(2),), (np.array([np.nan]),)], opt, epoch=4)

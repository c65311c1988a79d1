"""DataLoader: batch contents and sizes, seeded shuffling, and resuming a run bit for bit."""

import json

import numpy as np
import pytest

import scratchgen as sg
from scratchgen.data import DataLoader


def dataset(n=10):
    """Rows that name themselves: x[i] = [i, i + 0.5] (float32), y[i] = 100 + i (int64)."""
    x = np.stack([np.arange(n), np.arange(n) + 0.5], axis=1).astype(np.float32)
    y = 100 + np.arange(n, dtype=np.int64)
    return x, y


def as_lists(batches):
    """Batches as plain nested lists, to compare runs."""
    return [[t.numpy().tolist() for t in batch] for batch in batches]


def run(loader, epochs):
    return [as_lists(loader) for _ in range(epochs)]


def test_batches_in_order_with_a_partial_last_batch(backend):
    x, y = dataset(10)
    loader = DataLoader(x, y, batch_size=4)
    assert len(loader) == 3
    batches = list(loader)
    assert [b[0].shape for b in batches] == [(4, 2), (4, 2), (2, 2)]
    for i, (xb, yb) in enumerate(batches):
        assert isinstance(xb, sg.Tensor) and sg.backend.is_array(xb.data) and sg.backend.is_array(yb.data)
        assert xb.dtype == np.float32 and yb.dtype == np.int64
        assert not xb.requires_grad and not yb.requires_grad
        np.testing.assert_array_equal(xb.numpy(), x[4 * i:4 * i + 4])
        np.testing.assert_array_equal(yb.numpy(), y[4 * i:4 * i + 4])


@pytest.mark.parametrize("n, batch_size, drop_last, sizes", [
    (10, 4, True, [4, 4]),
    (12, 4, True, [4, 4, 4]),
    (12, 4, False, [4, 4, 4]),
    (3, 5, False, [3]),
    (3, 5, True, []),
])
def test_len_and_drop_last(n, batch_size, drop_last, sizes):
    loader = DataLoader(dataset(n)[0], batch_size=batch_size, drop_last=drop_last)
    assert len(loader) == len(sizes)
    assert [len(b[0]) for b in loader] == sizes


def test_a_single_array_still_gives_tuples():
    (xb,) = next(iter(DataLoader(dataset()[0], batch_size=3)))
    assert xb.shape == (3, 2)


def test_shuffled_epochs_are_permutations_with_rows_kept_together():
    x, y = dataset(23)
    loader = DataLoader(x, y, batch_size=5, shuffle=True, seed=3)
    orders = []
    for _ in range(3):
        rows = [(xr, yr) for xb, yb in loader for xr, yr in zip(xb.numpy(), yb.numpy())]
        assert all(yr == 100 + xr[0] and xr[1] == xr[0] + 0.5 for xr, yr in rows)  # x and y stay paired
        order = [int(yr) - 100 for _, yr in rows]
        assert sorted(order) == list(range(23))
        orders.append(order)
    assert orders[0] != orders[1] != orders[2] != orders[0] and orders[0] != list(range(23))


def test_same_seed_same_batches_other_seed_other_batches():
    x, y = dataset(30)
    first = run(DataLoader(x, y, batch_size=7, shuffle=True, seed=5), epochs=3)
    sg.randn(10)  # the global generator does not drive the loader
    assert run(DataLoader(x, y, batch_size=7, shuffle=True, seed=5), epochs=3) == first
    assert run(DataLoader(x, y, batch_size=7, shuffle=True, seed=6), epochs=3) != first


def test_the_order_follows_numpy_permutations_of_the_seeded_generator():
    x, _ = dataset(9)
    generator = np.random.default_rng(42)
    loader = DataLoader(x, batch_size=9, shuffle=True, seed=42)
    for _ in range(2):
        (xb,) = next(iter(loader))
        np.testing.assert_array_equal(xb.numpy()[:, 0], generator.permutation(9))


def test_changing_a_batch_does_not_change_the_data():
    x, y = dataset(8)
    keep = x.copy()
    for xb, _ in DataLoader(x, y, batch_size=3):
        xb.data *= 0
    np.testing.assert_array_equal(x, keep)


def train(loader, epochs, stop_at_step=None):
    """A training loop's skeleton: the batches it sees, and the loader state checkpointed at a step."""
    seen = []
    while loader.epoch < epochs:
        for batch in loader:
            seen += as_lists([batch])
            if len(seen) == stop_at_step:  # checkpoint inside the loop body, then "crash"
                return seen, json.dumps(loader.state_dict())
    return seen, None


# 19 rows in batches of 5: 4 batches per epoch, so step 4 is an epoch's last batch and step 5 a first one.
@pytest.mark.parametrize("stop_at_step", [1, 3, 4, 5, 10, 15])
def test_checkpoint_and_resume_reproduce_an_uninterrupted_run(stop_at_step):
    x, y = dataset(19)
    make = lambda: DataLoader(x, y, batch_size=5, shuffle=True, seed=11)  # noqa: E731
    uninterrupted, _ = train(make(), epochs=4)

    before, saved = train(make(), epochs=4, stop_at_step=stop_at_step)
    resumed = make()
    resumed.load_state_dict(json.loads(saved))
    after, _ = train(resumed, epochs=4)
    assert len(before) == stop_at_step and before + after == uninterrupted


def test_resume_from_a_checkpoint_between_epochs():
    x, y = dataset(19)
    make = lambda: DataLoader(x, y, batch_size=5, shuffle=True, seed=11)  # noqa: E731
    uninterrupted, _ = train(make(), epochs=3)
    loader = make()
    before = as_lists(loader)
    resumed = make()
    resumed.load_state_dict(json.loads(json.dumps(loader.state_dict())))
    assert resumed.epoch == 1
    assert before + train(resumed, epochs=3)[0] == uninterrupted


def test_state_dict_counts_epochs_and_batches():
    loader = DataLoader(dataset(10)[0], batch_size=4, shuffle=True)
    iterator = iter(loader)
    next(iterator)
    assert loader.state_dict()["epoch"] == 0 and loader.state_dict()["batch"] == 1
    list(iterator)
    assert loader.state_dict()["epoch"] == 1 and loader.state_dict()["batch"] == 0


def test_leaving_an_epoch_early_starts_a_full_new_one():
    x, _ = dataset(10)
    loader = DataLoader(x, batch_size=4, shuffle=True)
    for _ in loader:
        break
    assert sum(len(b[0]) for b in loader) == 10


def test_device_copy_gives_the_same_batches(backend):
    x, y = dataset(17)
    on_host = run(DataLoader(x, y, batch_size=5, shuffle=True, seed=2), epochs=2)
    loader = DataLoader(x, y, batch_size=5, shuffle=True, seed=2, device=True)
    assert all(sg.backend.is_array(a) for a in loader.arrays)
    assert run(loader, epochs=2) == on_host


@pytest.mark.parametrize("arrays, kwargs, message", [
    ((), {}, "at least one array"),
    ((np.zeros(4), np.zeros(5)), {}, r"same first dimension, got shapes \(4,\), \(5,\)"),
    ((np.zeros(4),), {"batch_size": 0}, "positive integer"),
    ((np.zeros(4),), {"batch_size": 2.5}, "positive integer"),
])
def test_bad_arguments_are_explained(arrays, kwargs, message):
    with pytest.raises(ValueError, match=message):
        DataLoader(*arrays, **kwargs)


def test_a_state_from_another_setup_is_refused():
    big = DataLoader(np.zeros(100), batch_size=2)
    for i, _ in enumerate(big):
        if i == 9:
            break
    with pytest.raises(ValueError, match="batch position 10"):
        DataLoader(np.zeros(10), batch_size=2).load_state_dict(big.state_dict())

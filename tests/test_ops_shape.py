"""Shape ops: reshape, transpose, indexing (basic and advanced), concatenate and stack."""

import numpy as np
import pytest

import scratchgen as sg
from conftest import host, t64


def test_reshape_and_flatten(rng):
    x = rng.normal(size=(2, 3, 4))
    tx = t64(x)
    np.testing.assert_array_equal(tx.reshape(4, 6).numpy(), x.reshape(4, 6))
    np.testing.assert_array_equal(tx.reshape((-1, 2)).numpy(), x.reshape(-1, 2))
    np.testing.assert_array_equal(tx.flatten(1).numpy(), x.reshape(2, 12))
    assert sg.gradcheck(lambda t: t.reshape(6, 4) * t64(np.arange(24.0).reshape(6, 4), False), [tx])
    assert sg.gradgradcheck(lambda t: t.reshape(6, 4) * t64(np.arange(24.0).reshape(6, 4), False), [tx])


@pytest.mark.parametrize("axes", [None, (1, 0, 2), (2, 0, 1), (0, 2, 1)], ids=str)
def test_transpose(axes, rng):
    x = rng.normal(size=(2, 3, 4))
    tx = t64(x)
    got = tx.T if axes is None else tx.transpose(axes)
    np.testing.assert_array_equal(got.numpy(), np.transpose(x, axes))
    assert sg.gradcheck(lambda t: (t.T if axes is None else t.transpose(*axes)).exp(), [tx])
    assert sg.gradgradcheck(lambda t: (t.T if axes is None else t.transpose(*axes)).exp(), [tx])


INDICES = [
    (1,),
    (slice(None), 2),
    (slice(0, 2), slice(None, None, 2)),
    (Ellipsis, -1),
    (None, 0),
    (np.array([0, 2, 0]),),  # a repeated row: its gradient must add up
    (np.array([1, 1]), np.array([0, 3])),
    (slice(None), np.array([3, 3, 1])),
]


@pytest.mark.parametrize("index", INDICES, ids=str)
def test_indexing(index, rng):
    x = rng.normal(size=(3, 4))
    tx = t64(x)
    index = index[0] if len(index) == 1 else index
    np.testing.assert_array_equal(tx[index].numpy(), x[index])
    assert sg.gradcheck(lambda t: t[index] * 2.0, [tx])
    assert sg.gradgradcheck(lambda t: t[index] * 2.0, [tx])


def test_boolean_mask_index(rng):
    x = rng.normal(size=(3, 4))
    mask = x > 0
    tx = t64(x)
    np.testing.assert_array_equal(tx[mask].numpy(), x[mask])
    tx[sg.tensor(mask)].sum().backward()
    np.testing.assert_array_equal(host(tx.grad), mask.astype(float))


def test_repeated_index_accumulates():
    x = t64([1.0, 2.0, 3.0])
    x[np.array([0, 0, 2, 0])].sum().backward()
    np.testing.assert_array_equal(host(x.grad), [3.0, 0.0, 1.0])


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concatenate_and_stack(axis, rng):
    a, b, c = rng.normal(size=(2, 3)), rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    ta, tb, tc = t64(a), t64(b), t64(c)
    np.testing.assert_array_equal(sg.concatenate([ta, tb, tc], axis=axis).numpy(), np.concatenate([a, b, c], axis))
    np.testing.assert_array_equal(sg.stack([ta, tb, tc], axis=axis).numpy(), np.stack([a, b, c], axis))
    assert sg.gradcheck(lambda *t: sg.concatenate(t, axis=axis).tanh(), [ta, tb, tc])
    assert sg.gradgradcheck(lambda *t: sg.concatenate(t, axis=axis).tanh(), [ta, tb, tc])
    assert sg.gradcheck(lambda *t: sg.stack(t, axis=axis).tanh(), [ta, tb, tc])
    assert sg.gradgradcheck(lambda *t: sg.stack(t, axis=axis).tanh(), [ta, tb, tc])


def test_concatenate_of_unequal_sizes(rng):
    a, b = t64(rng.normal(size=(2, 3))), t64(rng.normal(size=(2, 5)))
    assert sg.concatenate([a, b], axis=1).shape == (2, 8)
    assert sg.gradcheck(lambda x, y: sg.concatenate([x, y], axis=1) ** 2, [a, b])
    assert sg.gradgradcheck(lambda x, y: sg.concatenate([x, y], axis=1) ** 2, [a, b])

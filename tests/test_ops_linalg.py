"""Matrix products: @ (1-D, 2-D, batched with broadcasting) and the fused linear op."""

import numpy as np
import pytest

import scratchgen as sg
from conftest import t64

SHAPES = [
    ((3, 4), (4, 5)),
    ((4,), (4, 5)),
    ((3, 4), (4,)),
    ((4,), (4,)),
    ((2, 3, 4), (4, 5)),
    ((3, 4), (2, 4, 5)),
    ((2, 1, 3, 4), (5, 4, 2)),
]


@pytest.mark.parametrize("shapes", SHAPES, ids=str)
def test_matmul_matches_numpy_and_passes_gradcheck(shapes, rng):
    a, b = rng.normal(size=shapes[0]), rng.normal(size=shapes[1])
    ta, tb = t64(a), t64(b)
    np.testing.assert_allclose((ta @ tb).numpy(), a @ b, rtol=1e-12)
    assert sg.gradcheck(lambda x, y: x @ y, [ta, tb])
    assert sg.gradgradcheck(lambda x, y: x @ y, [ta, tb])


def test_matmul_shape_error_names_both_shapes():
    with pytest.raises(ValueError, match=r"matmul \(inputs of shapes \(3, 4\), \(5, 6\)\): inner dimensions differ: 4 .* 5"):
        sg.zeros(3, 4) @ sg.zeros(5, 6)


@pytest.mark.parametrize("x_shape", [(5, 4), (2, 3, 4), (4,)], ids=str)
@pytest.mark.parametrize("bias", [True, False])
def test_linear_matches_formula_and_passes_gradcheck(x_shape, bias, rng):
    x, w, b = rng.normal(size=x_shape), rng.normal(size=(3, 4)), rng.normal(size=(3,))
    tx, tw, tb = t64(x), t64(w), t64(b)
    args = [tx, tw, tb] if bias else [tx, tw]
    expected = x @ w.T + (b if bias else 0)
    np.testing.assert_allclose(sg.nn.functional.linear(*args).numpy(), expected, rtol=1e-12)
    assert sg.gradcheck(sg.nn.functional.linear, args)
    assert sg.gradgradcheck(sg.nn.functional.linear, args)


def test_linear_skips_the_input_gradient_that_is_not_needed(rng):
    x = sg.tensor(rng.normal(size=(5, 4)))  # data: requires no gradient
    w = t64(rng.normal(size=(3, 4)))
    sg.nn.functional.linear(x, w).sum().backward()
    assert x.grad is None and w.grad.shape == (3, 4)

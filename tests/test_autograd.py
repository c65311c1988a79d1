"""The engine's classic traps: reuse, accumulation, deep graphs, no_grad, detach, and seeds of backward."""

import sys

import numpy as np
import pytest

import scratchgen as sg
from conftest import CuPyLikeArray, host, t64


def test_a_tensor_used_twice_gets_the_sum_of_both_uses():
    x = t64([1.0, -2.0, 3.0])
    (x * x).sum().backward()  # d/dx x² = 2x, from two uses of x
    np.testing.assert_allclose(host(x.grad), [2.0, -4.0, 6.0])


def test_residual_connection_adds_the_skip_path(rng):
    x = t64(rng.normal(size=(4, 3)))
    w = t64(rng.normal(size=(3, 3)))
    y = (x @ w).tanh() + x  # residual: dy/dx = (1 - tanh²)·wᵀ + identity
    y.sum().backward()
    expected = (1 - np.tanh(x.numpy() @ w.numpy()) ** 2) @ w.numpy().T + 1
    np.testing.assert_allclose(host(x.grad), expected, rtol=1e-12)
    assert sg.gradcheck(lambda a, b: (a @ b).tanh() + a, [x, w])


def test_weight_shared_by_two_layers_gets_both_gradients(rng):
    x, w = t64(rng.normal(size=(2, 3)), requires_grad=False), t64(rng.normal(size=(3, 3)))
    F = sg.nn.functional
    out = F.linear(F.linear(x, w).tanh(), w).sum()
    out.backward()
    grad_shared = w.grad.copy()
    # The same gradient computed from two separate copies of w, added up:
    w1, w2 = t64(w.numpy()), t64(w.numpy())
    F.linear(F.linear(x, w1).tanh(), w2).sum().backward()
    np.testing.assert_allclose(host(grad_shared), host(w1.grad + w2.grad), rtol=1e-12)


def test_gradients_accumulate_across_backward_calls_until_zeroed():
    x = t64([1.0, 2.0])
    (x * 3.0).sum().backward()
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(host(x.grad), [6.0, 6.0])
    opt = sg.optim.SGD([x], lr=0.1)
    opt.zero_grad()
    assert x.grad is None
    (x * 3.0).sum().backward()
    np.testing.assert_allclose(host(x.grad), [3.0, 3.0])


def test_a_graph_of_ten_thousand_nodes_needs_no_recursion():
    x = t64([0.5])
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    assert sys.getrecursionlimit() < 20_000
    y.sum().backward()
    np.testing.assert_allclose(host(x.grad), [1.0001**10_000], rtol=1e-9)


def test_diamond_graph_visits_each_node_once():
    x = t64([2.0])
    a = x * 3.0
    b = a.exp() + a * a  # a feeds two branches that meet again
    b.sum().backward()
    np.testing.assert_allclose(host(x.grad), [3 * np.exp(6.0) + 2 * 6.0 * 3], rtol=1e-12)


def test_no_grad_records_nothing_and_detach_cuts_the_graph():
    x = t64([1.0, 2.0])
    with sg.no_grad():
        y = x * 2.0
    assert not y.requires_grad and y.is_leaf
    z = (x * 2.0).detach() * x
    z.sum().backward()
    np.testing.assert_allclose(host(x.grad), [2.0, 4.0])  # only the path through the second factor


def test_backward_needs_a_scalar_or_an_explicit_gradient():
    x = t64([1.0, 2.0])
    y = x * 3.0
    with pytest.raises(RuntimeError, match="only for a tensor of one element"):
        y.backward()
    y.backward(sg.backend.asarray(np.array([1.0, 10.0])))
    np.testing.assert_allclose(host(x.grad), [3.0, 30.0])


def test_backward_of_a_constant_says_why_it_cannot():
    with pytest.raises(RuntimeError, match="does not require grad"):
        sg.tensor([1.0]).sum().backward()


def test_leaf_gradient_is_an_ordinary_writable_array():
    x = t64(np.ones((2, 3)))
    x.sum().backward()
    x.grad *= 2  # a broadcast view would refuse this
    np.testing.assert_array_equal(host(x.grad), 2 * np.ones((2, 3)))


def test_numpy_returns_a_copy_and_tensor_keeps_dtype():
    x = sg.tensor(np.array([1.0, 2.0]))
    assert x.dtype == np.float64
    assert sg.tensor([1.0, 2.0]).dtype == np.float32
    host = x.numpy()
    host[0] = 100
    assert x.numpy()[0] == 1.0


def test_mixing_a_gpu_array_into_a_cpu_graph_names_both_devices():
    class FakeCupyArray:  # stands in for a cupy.ndarray, which this test cannot assume
        __module__ = "cupy._core.core"
        shape, dtype, ndim = (2,), np.dtype("float32"), 1

    with sg.use_backend("numpy"), pytest.raises(sg.backend.BackendError,
                                                match=r"add: input 1 is on gpu \(cupy\) but the active backend is numpy"):
        sg.ops.Add.apply(sg.tensor([1.0, 2.0]), sg.Tensor(FakeCupyArray()))


def test_a_seed_gradient_from_the_other_device_is_refused_naming_both():
    """PyTorch refuses a gradient on another device; so does backward, instead of copying it quietly."""
    sg.set_backend("numpy")  # a CPU graph (the session's backend comes back after the test)
    y = sg.tensor([1.0, 2.0], requires_grad=True) * 3.0
    with pytest.raises(sg.backend.BackendError, match=r"backward: the gradient given is on gpu \(cupy\) but the "
                                                      r"active backend is numpy \(the tensor is on cpu \(numpy\)\)"):
        y.backward(CuPyLikeArray(np.ones(2, dtype=np.float32)))
    with pytest.raises(sg.backend.BackendError, match="grad: the gradient given is on gpu"):
        sg.grad(y, y, grad_outputs=CuPyLikeArray(np.ones(2, dtype=np.float32)))


def test_a_numpy_seed_gradient_on_the_cupy_backend_is_refused_naming_both(monkeypatch):
    """The CuPy side of the test above, without a GPU: the backend's state is made to say that the active
    backend is "cupy" and that its arrays are of another type, so NumPy arrays are the other device's (as
    they are on CuPy). Before, backend.asarray copied the NumPy gradient over without a word."""

    class DeviceArray:  # the active backend's array type; no NumPy array is one
        pass

    y = sg.tensor([1.0, 2.0], requires_grad=True) * 3.0
    monkeypatch.setattr(sg.backend._state, "name", "cupy")
    monkeypatch.setattr(sg.backend._state, "array_type", DeviceArray)
    with pytest.raises(sg.backend.BackendError, match=r"the gradient given is on cpu \(numpy\) but the active "
                                                      r"backend is cupy"):
        y.backward(np.ones(2, dtype=np.float32))


def test_a_seed_gradient_given_as_a_list_or_a_numpy_scalar_is_still_taken():
    y = sg.tensor([1.0, 2.0], requires_grad=True)
    (y * 3.0).backward([1.0, 0.5])
    np.testing.assert_array_equal(host(y.grad), [3.0, 1.5])
    z = sg.tensor(2.0, requires_grad=True)
    (z * z).backward(np.float32(1.0))
    assert z.grad == 4.0


# ------------------------------------------------------------------ the engine checks what ops return


class _Scale(sg.autograd.Function):
    """y = 2·a + b with a backward that a test replaces by a broken one."""

    def forward(self, a, b):
        return 2 * a + b

    def backward(self, grad):
        return grad * 2.0, grad


def _broken(backward):
    return type("Broken", (_Scale,), {"backward": backward}).apply


def test_a_backward_returning_too_few_gradients_is_an_error_naming_the_op():
    a, b = t64([1.0, 2.0]), t64([3.0, 4.0])
    op = _broken(lambda self, grad: grad * 2.0)
    with pytest.raises(RuntimeError, match=r"broken.backward returned 1 gradient\(s\) but the op has 2 input\(s\)"):
        op(a, b).sum().backward()
    assert a.grad is None and b.grad is None


def test_a_gradient_of_the_wrong_shape_names_the_op_the_input_and_both_shapes():
    a, b = t64([1.0, 2.0]), t64([3.0, 4.0])
    op = _broken(lambda self, grad: (grad * 2.0, grad.reshape(2, 1) * sg.tensor(np.ones((2, 3)))))
    with pytest.raises(ValueError, match=r"broken.backward returned a gradient of shape \(2, 3\) for input 1 of shape \(2,\)"):
        op(a, b).sum().backward()


def test_a_gradient_of_the_wrong_dtype_or_type_is_an_error():
    a, b = t64([1.0, 2.0]), t64([3.0, 4.0])
    as_float32 = _broken(lambda self, grad: (grad * 2.0, grad.astype(np.float32)))
    with pytest.raises(TypeError, match="broken.backward returned a float32 gradient for input 1, which is float64"):
        as_float32(a, b).sum().backward()
    as_array = _broken(lambda self, grad: (grad * 2.0, grad.data))
    with pytest.raises(TypeError, match=f"broken.backward returned a {type(a.data).__name__} for input 1; "
                                        "gradients are Tensors"):
        as_array(a, b).sum().backward()
    missing = _broken(lambda self, grad: (grad * 2.0, None))
    with pytest.raises(RuntimeError, match=r"returned None for input 1 \(shape \(2,\)\), which needs a gradient"):
        missing(a, b).sum().backward()


def test_a_seed_gradient_of_the_wrong_shape_is_an_error():
    x = t64([1.0, 2.0])
    y = x * 3.0
    with pytest.raises(ValueError, match=r"backward: the gradient given has shape \(3,\) but the tensor has shape \(2,\)"):
        y.backward(sg.backend.asarray(np.ones(3)))


def test_an_error_inside_a_forward_keeps_the_line_that_failed():
    class Fails(sg.autograd.Function):
        def forward(self, x):
            return x.reshape(7)  # the line a student needs to see

    with pytest.raises(ValueError, match=r"fails \(inputs of shapes \(2, 3\)\): cannot reshape") as info:
        Fails.apply(t64(np.ones((2, 3))))
    cause = info.value.__cause__
    assert isinstance(cause, ValueError)  # chained, not replaced: the original traceback is kept
    frames = [frame.name for frame in info.traceback] + [f.name for f in __import__("traceback").extract_tb(cause.__traceback__)]
    assert "forward" in frames


def test_a_tensor_changed_in_place_after_use_is_not_differentiated_at_its_new_value():
    x = t64([1.0, 2.0])
    y = (x * x).sum()
    x.data += 1.0  # an in-place change, as an optimiser step makes
    with pytest.raises(RuntimeError, match=r"mul: its input 0 \(shape \(2,\)\) was changed in place after mul used it \(version 0, now 1\)"):
        y.backward()
    z = x.exp()
    z.data = z.data * 2
    with pytest.raises(RuntimeError, match="exp: its output .* was changed in place"):
        z.sum().backward()


def test_use_backend_leaves_the_random_stream_where_it_was():
    sg.manual_seed(3)
    first = sg.randn(4).numpy()
    with sg.use_backend("numpy"):
        pass
    after_block = sg.randn(4).numpy()
    sg.manual_seed(3)
    sg.randn(4)
    np.testing.assert_array_equal(after_block, sg.randn(4).numpy())  # the stream went on, not restarted
    assert not np.array_equal(first, after_block)


def test_a_parameter_shared_by_two_layers_is_listed_and_updated_once():
    nn = sg.nn
    first, second = nn.Linear(3, 3), nn.Linear(3, 3)
    second.weight = first.weight  # tied weights
    model = nn.Sequential(first, nn.Tanh(), second)
    params = model.parameters()
    assert len(params) == 3 and sum(p is first.weight for p in params) == 1
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias", "2.bias"]


def test_op_classes_and_layer_classes_never_share_a_name():
    op_names = {name for name, obj in vars(sg.ops).items() if isinstance(obj, type)}
    layer_names = {name for name, obj in vars(sg.nn).items() if isinstance(obj, type)}
    assert not op_names & layer_names


def test_the_graph_keeps_only_what_some_backward_reads():
    """x·3 + 1: the sum's backward reads neither of its inputs, so the product, once the caller drops it,
    is freed before the backward, which still gives the right gradient."""
    import weakref

    x = t64([1.0, 2.0])
    product = x * 3.0
    total = product + 1.0
    alive = weakref.ref(product)
    del product
    assert alive() is None
    total.sum().backward()
    np.testing.assert_array_equal(host(x.grad), [3.0, 3.0])


def test_an_output_the_caller_dropped_is_rebuilt_for_the_backward_and_differentiates_again():
    """exp's backward reads its output: the op keeps the output's data, and a tensor on it stands in the
    graph for the dropped one, so even the second derivative comes out right."""
    x = t64([0.5, -1.0])
    (first,) = sg.grad(x.exp().sum(), x, create_graph=True)  # the exp output is never held by the caller
    (second,) = sg.grad(first.sum(), x)
    np.testing.assert_allclose(first.numpy(), np.exp([0.5, -1.0]))
    np.testing.assert_allclose(second.numpy(), np.exp([0.5, -1.0]))


def test_a_backward_that_reads_an_input_its_op_does_not_keep_is_an_error_naming_both():
    class Careless(sg.autograd.Function):
        saved_inputs = ()

        def forward(self, x):
            return x * x

        def backward(self, grad):
            return grad * 2 * self.inputs[0]  # reads x, which the op said it does not keep

    x = t64([1.0, 2.0])
    with pytest.raises(RuntimeError, match=r"careless.backward read the values of input 0, which the op does not keep"):
        Careless.apply(x).sum().backward()

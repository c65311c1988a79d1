"""Tests of normalisation: scratchgen.ops.norm and the BatchNorm1d / BatchNorm2d layers, and GroupNorm.

The forward pass against the formula in NumPy, the gradients by gradcheck (training and evaluation mode),
the running statistics against PyTorch's update rule written out in NumPy, and the state's names. Group
norm against a loop over samples and groups, gradchecked from one group (layer norm) to one per channel
(instance norm), and its fused op against the Tensor ops it replaced (forward, backward and a gradient
penalty), on contiguous inputs and on a convolution's transposed output.
"""

import numpy as np
import pytest
from conftest import NoHostReads, t64

import scratchgen as sg
from scratchgen import nn
from scratchgen.nn import functional as F


def reference_batch_norm(x, gamma, beta, eps=1e-5):
    """x̂ = (x - μ) / √(σ² + ε) per channel (axis 1), σ² biased, then γ·x̂ + β."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean, var = x.mean(axis=axes, keepdims=True), x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma.reshape(shape) + beta.reshape(shape)


def as_float64(layer):
    """The layer with float64 parameters and buffers, for gradcheck."""
    for p in layer.parameters():
        p.data = p.data.astype(np.float64)
    for name in ("running_mean", "running_var"):
        getattr(layer, name).data = getattr(layer, name).data.astype(np.float64)
    return layer


@pytest.mark.parametrize("layer_type, shape", [
    (nn.BatchNorm1d, (6, 4)), (nn.BatchNorm1d, (3, 4, 5)), (nn.BatchNorm2d, (2, 3, 4, 5)),
    (nn.BatchNorm2d, (1, 2, 3, 3)),
])
def test_training_forward_matches_the_formula(layer_type, shape, rng):
    layer = layer_type(shape[1])
    layer.weight.data = sg.backend.asarray(rng.standard_normal(shape[1]).astype(np.float32))
    layer.bias.data = sg.backend.asarray(rng.standard_normal(shape[1]).astype(np.float32))
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    out = layer(sg.tensor(x))
    expected = reference_batch_norm(x.astype(np.float64), layer.weight.numpy(), layer.bias.numpy())
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-5)
    assert out.dtype == np.float32


@pytest.mark.parametrize("layer_type, shape", [
    (nn.BatchNorm1d, (5, 3)), (nn.BatchNorm1d, (2, 3, 4)), (nn.BatchNorm2d, (2, 3, 3, 4)),
    (nn.BatchNorm2d, (1, 2, 3, 3)),
])
def test_gradients_in_training_and_evaluation_mode(layer_type, shape, rng):
    layer = as_float64(layer_type(shape[1]))
    layer.weight.data = sg.backend.asarray(rng.standard_normal(shape[1]) + 1)
    layer.bias.data = sg.backend.asarray(rng.standard_normal(shape[1]))
    x = t64(rng.standard_normal(shape) * 2 + 1)
    # Training: μ and σ² depend on x, so every element's gradient flows through all of its channel.
    assert sg.gradcheck(lambda x, w, b: layer(x), [x, layer.weight, layer.bias])
    assert sg.gradgradcheck(lambda x, w, b: layer(x), [x, layer.weight, layer.bias])
    layer.eval()
    layer.running_mean.data = sg.backend.asarray(rng.standard_normal(shape[1]))
    layer.running_var.data = sg.backend.asarray(rng.random(shape[1]) + 0.5)
    assert sg.gradcheck(lambda x, w, b: layer(x), [x, layer.weight, layer.bias])
    assert sg.gradgradcheck(lambda x, w, b: layer(x), [x, layer.weight, layer.bias])


@pytest.mark.parametrize("training", [True, False])
def test_functional_batch_norm_gradients_with_and_without_affine(training, rng):
    x = t64(rng.standard_normal((4, 3, 2, 2)))
    mean, var = rng.standard_normal(3), rng.random(3) + 0.5
    weight, bias = t64(rng.standard_normal(3)), t64(rng.standard_normal(3))
    assert sg.gradcheck(lambda x, w, b: F.batch_norm(x, sg.backend.asarray(mean.copy()), sg.backend.asarray(var.copy()), w, b, training), [x, weight, bias])
    assert sg.gradgradcheck(lambda x, w, b: F.batch_norm(x, sg.backend.asarray(mean.copy()), sg.backend.asarray(var.copy()), w, b, training), [x, weight, bias])
    assert sg.gradcheck(lambda x: F.batch_norm(x, sg.backend.asarray(mean.copy()), sg.backend.asarray(var.copy()), training=training), [x])
    assert sg.gradgradcheck(lambda x: F.batch_norm(x, sg.backend.asarray(mean.copy()), sg.backend.asarray(var.copy()), training=training), [x])


def test_running_statistics_update_as_in_pytorch(rng):
    """running ← 0.9·running + 0.1·batch, with the unbiased variance m/(m-1)·σ² (m values per channel)."""
    layer = nn.BatchNorm2d(3)
    running_mean, running_var = np.zeros(3), np.ones(3)
    for _ in range(4):
        x = (rng.standard_normal((5, 3, 4, 2)) * np.array([1.0, 2.0, 3.0])[None, :, None, None] + 1).astype(np.float32)
        out = layer(sg.tensor(x))
        m = 5 * 4 * 2
        batch_var = x.var(axis=(0, 2, 3))
        running_mean = 0.9 * running_mean + 0.1 * x.mean(axis=(0, 2, 3))
        running_var = 0.9 * running_var + 0.1 * batch_var * m / (m - 1)
        # The batch itself is normalised with the biased variance.
        np.testing.assert_allclose(out.numpy().var(axis=(0, 2, 3)), batch_var / (batch_var + 1e-5), rtol=1e-3)
    np.testing.assert_allclose(layer.running_mean.numpy(), running_mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer.running_var.numpy(), running_var, rtol=1e-5)
    assert int(layer.num_batches_tracked.numpy()) == 4


def test_momentum_none_keeps_a_plain_average_of_the_batches(rng):
    layer = nn.BatchNorm1d(2, momentum=None)
    batches = [rng.standard_normal((8, 2)).astype(np.float32) + i for i in range(3)]
    for x in batches:
        layer(sg.tensor(x))
    average = np.mean([x.mean(axis=0) for x in batches], axis=0)
    np.testing.assert_allclose(layer.running_mean.numpy(), average, rtol=1e-5)


def test_momentum_none_does_not_read_the_batch_counter_back_to_the_host(rng):
    """int(num_batches_tracked) waits for the GPU on every training step. The counter here is an array
    that refuses every host read; the plain average must come out as before."""
    layer = nn.BatchNorm1d(2, momentum=None)
    strict = sg.get_backend() == "strict"  # there, the backend itself counts every host read
    if not strict:
        layer.num_batches_tracked.data = layer.num_batches_tracked.data.view(NoHostReads)
    batches = [rng.standard_normal((8, 2)).astype(np.float32) + i for i in range(3)]
    for x in batches:
        x_on_device = sg.tensor(x)
        sg.backend.strict_host_reads(reset=True)
        layer(x_on_device)
        if strict:
            assert sg.backend.strict_host_reads() == 0, "a host read of a device value in BatchNorm's step"
    average = np.mean([x.mean(axis=0) for x in batches], axis=0)
    np.testing.assert_allclose(layer.running_mean.numpy(), average, rtol=1e-5)
    assert layer.running_mean.dtype == np.float32


def test_evaluation_mode_uses_the_running_statistics(rng):
    layer = nn.BatchNorm1d(3)
    for _ in range(3):
        layer(sg.tensor(rng.standard_normal((16, 3)).astype(np.float32) * 2 + 5))
    saved_mean, saved_var = layer.running_mean.numpy(), layer.running_var.numpy()
    layer.eval()
    x = rng.standard_normal((4, 3)).astype(np.float32)
    out = layer(sg.tensor(x)).numpy()
    np.testing.assert_allclose(out, (x - saved_mean) / np.sqrt(saved_var + 1e-5), rtol=1e-5, atol=1e-6)
    # One example's output does not depend on the rest of its batch, and the statistics stay put.
    np.testing.assert_allclose(layer(sg.tensor(x[:1])).numpy(), out[:1], rtol=1e-6)
    np.testing.assert_array_equal(layer.running_mean.numpy(), saved_mean)
    assert int(layer.num_batches_tracked.numpy()) == 3


def test_state_dict_has_pytorchs_names_and_round_trips(rng):
    layer = nn.BatchNorm2d(4)
    layer(sg.tensor(rng.standard_normal((2, 4, 3, 3)).astype(np.float32)))
    state = layer.state_dict()
    assert sorted(state) == ["bias", "num_batches_tracked", "running_mean", "running_var", "weight"]
    assert state["num_batches_tracked"].shape == () and state["running_var"].shape == (4,)
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]
    copy = nn.BatchNorm2d(4)
    copy.load_state_dict({k: np.array(sg.backend.to_numpy(v)) for k, v in state.items()})
    np.testing.assert_array_equal(copy.running_var.numpy(), layer.running_var.numpy())
    assert int(copy.num_batches_tracked.numpy()) == 1


def test_without_affine_or_running_statistics(rng):
    layer = nn.BatchNorm1d(3, affine=False, track_running_stats=False)
    assert layer.parameters() == [] and layer.state_dict() == {}
    x = rng.standard_normal((6, 3))
    layer.eval()  # without running statistics, evaluation also uses the batch's
    np.testing.assert_allclose(layer(sg.tensor(x)).numpy(), reference_batch_norm(x, np.ones(3), np.zeros(3)), rtol=1e-6)


def test_errors_name_the_layer_and_the_shapes():
    with pytest.raises(ValueError, match=r"BatchNorm2d\(3.*\(N, C, H, W\) with C = 3, got shape \(2, 4, 5, 5\)"):
        nn.BatchNorm2d(3)(sg.zeros(2, 4, 5, 5))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3.*\(N, C\) or \(N, C, L\).*got shape \(2, 3, 4, 4\)"):
        nn.BatchNorm1d(3)(sg.zeros(2, 3, 4, 4))
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3.*more than one value per channel.*\(1, 3\)"):
        nn.BatchNorm1d(3)(sg.zeros(1, 3))
    with pytest.raises(ValueError, match="both weight and bias"):
        F.batch_norm(sg.zeros(2, 3), None, None, weight=sg.ones(3), training=True)


# ------------------------------------------------------------------------------------------- group norm


def reference_group_norm(x, groups, gamma, beta, eps=1e-5):
    """The definition, one sample and one group at a time: normalise the group's C/G channels and every
    position together (biased variance), then γ and β per channel."""
    out = np.empty_like(x)
    size = x.shape[1] // groups
    for n in range(x.shape[0]):
        for g in range(groups):
            block = x[n, g * size:(g + 1) * size]
            out[n, g * size:(g + 1) * size] = (block - block.mean()) / np.sqrt(block.var() + eps)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    return out * gamma.reshape(shape) + beta.reshape(shape)


@pytest.mark.parametrize("groups, shape", [(1, (2, 4, 3, 3)), (2, (3, 4, 5, 2)), (4, (2, 4, 3, 3)), (3, (2, 6, 7)),
                                           (2, (5, 4))])
def test_group_norm_forward_matches_a_loop_over_samples_and_groups(groups, shape, rng):
    layer = nn.GroupNorm(groups, shape[1])
    layer.weight.data = sg.backend.asarray(rng.standard_normal(shape[1]).astype(np.float32))
    layer.bias.data = sg.backend.asarray(rng.standard_normal(shape[1]).astype(np.float32))
    x = (rng.standard_normal(shape) * 3 + 2).astype(np.float32)
    out = layer(sg.tensor(x))
    expected = reference_group_norm(x.astype(np.float64), groups, layer.weight.numpy(), layer.bias.numpy())
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-5)
    assert out.dtype == np.float32
    # Each sample on its own: the first sample alone gives the same numbers, in either mode.
    layer.eval()
    np.testing.assert_allclose(layer(sg.tensor(x[:1])).numpy(), out.numpy()[:1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("groups", [1, 2, 4])  # layer norm, groups of two channels, instance norm
def test_group_norm_gradients_first_and_second(groups, rng):
    layer = nn.GroupNorm(groups, 4)
    layer.weight.data = sg.backend.asarray(rng.standard_normal(4) + 1)
    layer.bias.data = sg.backend.asarray(rng.standard_normal(4))
    x = t64(rng.standard_normal((2, 4, 3, 2)) * 2 + 1)
    assert sg.gradcheck(lambda x, w, b: layer(x), [x, layer.weight, layer.bias])
    assert sg.gradgradcheck(lambda x, w, b: layer(x), [x, layer.weight, layer.bias])
    assert sg.gradcheck(lambda x: F.group_norm(x, groups), [x])
    assert sg.gradgradcheck(lambda x: F.group_norm(x, groups), [x])


def test_group_norm_state_and_without_affine(rng):
    layer = nn.GroupNorm(2, 6)
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"] and sorted(layer.state_dict()) == ["bias", "weight"]
    np.testing.assert_array_equal(layer.weight.numpy(), np.ones(6))
    np.testing.assert_array_equal(layer.bias.numpy(), np.zeros(6))
    plain = nn.GroupNorm(3, 6, affine=False)
    assert plain.parameters() == [] and plain.state_dict() == {}
    x = rng.standard_normal((2, 6, 4))  # float64 is fine for a layer without parameters
    np.testing.assert_allclose(plain(sg.tensor(x)).numpy(), reference_group_norm(x, 3, np.ones(6), np.zeros(6)), rtol=1e-10)


def test_group_norm_errors_name_the_layer_and_the_numbers():
    with pytest.raises(ValueError, match=r"GroupNorm: num_channels must be divisible by num_groups, got 6 channels and 4 groups"):
        nn.GroupNorm(4, 6)
    with pytest.raises(ValueError, match=r"GroupNorm\(2, 4.*input of shape \(2, 6, 3, 3\) has 6 channels in axis 1, expected 4"):
        nn.GroupNorm(2, 4)(sg.zeros(2, 6, 3, 3))
    with pytest.raises(ValueError, match=r"GroupNorm\(2, 4.*at least 2 dimensions, got shape \(4,\)"):
        nn.GroupNorm(2, 4)(sg.zeros(4))
    with pytest.raises(ValueError, match=r"GroupNorm: num_groups must be a positive int, got 0"):
        nn.GroupNorm(0, 4)
    with pytest.raises(ValueError, match=r"group_norm: the input's 6 channels .* do not divide into 4 groups"):
        F.group_norm(sg.zeros(2, 6, 3), 4)
    with pytest.raises(ValueError, match="both weight and bias"):
        F.group_norm(sg.zeros(2, 4), 2, weight=sg.ones(4))
    with pytest.raises(ValueError, match=r"group_norm: bias has shape \(3,\) but the input \(2, 4\) has 4 channels"):
        F.group_norm(sg.zeros(2, 4), 2, sg.ones(4), sg.zeros(3))


def test_group_norm_matches_pytorch(rng):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed; the loop reference above still holds")
    x = rng.standard_normal((3, 6, 4, 5))
    gamma, beta = rng.standard_normal(6), rng.standard_normal(6)
    expected = torch.nn.functional.group_norm(torch.from_numpy(x), 3, torch.from_numpy(gamma), torch.from_numpy(beta))
    got = F.group_norm(sg.tensor(x), 3, sg.tensor(gamma), sg.tensor(beta))
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-10, atol=1e-12)


def composed_group_norm(x, groups, weight=None, bias=None, eps=1e-5):
    """Group norm composed of Tensor ops, as F.group_norm was before the fused op: the reference the op
    must reproduce, forward and backward."""
    rows = x.reshape(x.shape[0], groups, -1)  # (N, G, C/G·...): one row per group of each sample
    centred = rows - rows.mean(axis=2, keepdims=True)
    x_hat = (centred / ((centred * centred).mean(axis=2, keepdims=True) + eps).sqrt()).reshape(x.shape)
    if weight is None:
        return x_hat
    per_channel = (1, x.shape[1]) + (1,) * (x.ndim - 2)
    return x_hat * weight.reshape(per_channel) + bias.reshape(per_channel)


@pytest.mark.parametrize("groups, shape", [(1, (2, 4, 3, 3)), (2, (3, 4, 5, 2)), (4, (2, 4, 3, 3)), (3, (2, 6, 7)),
                                           (2, (5, 4)), (2, (2, 4, 2, 3, 2))])
@pytest.mark.parametrize("affine", [True, False])
def test_group_norm_op_matches_the_composed_ops_forward_and_backward(groups, shape, affine, rng):
    x = t64(rng.standard_normal(shape) * 3 + 2)
    parameters = [t64(rng.standard_normal(shape[1]) + 1), t64(rng.standard_normal(shape[1]))] if affine else []
    seed = sg.tensor(rng.standard_normal(shape))
    results = []
    for fn in (F.group_norm, composed_group_norm):
        out = fn(x, groups, *parameters)
        grads = sg.grad(out, [x, *parameters], seed)
        results.append([out.numpy()] + [g.numpy() for g in grads])
    for got, expected in zip(*results):
        np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def conv_layout(array):
    """An (N, C, H, W) tensor laid out as a convolution's output is: (C, H, W', N) in memory with W' > W,
    viewed as (N, C, H, W): neither C- nor F-contiguous, batch fastest."""
    n, c, h, w = array.shape
    wide = np.zeros((c, h, w + 2, n), dtype=array.dtype)
    wide[:, :, :w] = array.transpose(1, 2, 3, 0)
    return sg.tensor(wide)[:, :, :w].transpose(3, 0, 1, 2)


def test_group_norm_of_a_transposed_view_gives_the_same_numbers_in_the_same_layout(rng):
    x = (rng.standard_normal((4, 6, 3, 5)) * 2 + 1).astype(np.float32)
    gamma, beta = sg.tensor(rng.standard_normal(6).astype(np.float32)), sg.tensor(rng.standard_normal(6).astype(np.float32))
    view = conv_layout(x)
    assert not view.data.flags.c_contiguous
    out = F.group_norm(view, 3, gamma, beta)
    np.testing.assert_allclose(out.numpy(), F.group_norm(sg.tensor(x), 3, gamma, beta).numpy(), rtol=1e-5, atol=1e-6)
    if isinstance(out.data, np.ndarray):  # NumPy lays results out in their inputs' memory order
        # Batch fastest, as the input: a layout the next convolution reads without a transposing copy.
        assert out.data.strides[0] == out.data.itemsize


@pytest.mark.parametrize("affine", [True, False])
def test_group_norm_gradients_first_and_second_of_a_transposed_view(affine, rng):
    x = t64(rng.standard_normal((3, 4, 2, 3)) * 2 + 1)
    parameters = [t64(rng.standard_normal(4) + 1), t64(rng.standard_normal(4))] if affine else []

    def fn(x, *parameters):
        # conv_layout's view made with ops, so that the gradient flows back to x
        wide = sg.ops.concatenate([x.transpose(1, 2, 3, 0), sg.zeros(4, 2, 2, 3, dtype=x.dtype)], axis=2)
        return F.group_norm(wide[:, :, :3].transpose(3, 0, 1, 2), 2, *parameters)

    assert sg.gradcheck(fn, [x, *parameters])
    assert sg.gradgradcheck(fn, [x, *parameters])


def test_group_norm_gradient_penalty_matches_the_composed_ops(rng):
    """A gradient of a gradient, as a WGAN-GP's penalty takes it: ∂/∂(x, γ) of ‖∂(Σ v·y)/∂x‖² (β does not
    reach ∂y/∂x)."""
    x = t64(rng.standard_normal((2, 4, 3, 3)))
    gamma, beta = t64(rng.standard_normal(4) + 1), t64(rng.standard_normal(4))
    v = sg.tensor(rng.standard_normal((2, 4, 3, 3)))
    results = []
    for fn in (F.group_norm, composed_group_norm):
        grad_x, = sg.grad((fn(x, 2, gamma, beta) * v).sum(), [x], create_graph=True)
        results.append([g.numpy() for g in sg.grad((grad_x * grad_x).sum(), [x, gamma])])
    for got, expected in zip(*results):
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)

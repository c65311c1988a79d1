"""The promises every layer and loss keeps about bad arguments and bad inputs (issue 15, "Layers that
accept nonsense"): read the test names as the list.

A wrong setting stops at construction and a wrong input stops at the call, each with a message that
names the layer and the value, never later in NumPy's words (a ZeroDivisionError, an IndexError, a
broadcast error) and never silently (an output from ``dilation=0``, a float32 result from a float16
input, a NaN loss from an empty batch).

The tests are driven by two tables, ``LAYERS`` and ``BAD_SETTINGS``, and by introspection: every class
that :mod:`scratchgen.nn` exports must have a row in ``LAYERS``, and every argument of its constructor
must have bad values in ``BAD_SETTINGS`` (or a reason in ``NOT_TRIED``), so a layer or a setting added
later cannot be left out without a test failing.
"""

import inspect
import math
import re
import warnings

import numpy as np
import pytest

import scratchgen as sg

nn, F = sg.nn, sg.nn.functional

# ------------------------------------------------------------------------------------------ the tables

# name: (valid constructor arguments, a valid input shape, the input ranks accepted (None: any),
#        the axis whose size the layer knows (None: none))
LAYERS = {
    "Linear": (dict(in_features=3, out_features=2), (4, 3), range(1, 6), -1),
    "MaskedLinear": (dict(in_features=3, out_features=2), (4, 3), range(1, 6), -1),
    "Conv2d": (dict(in_channels=2, out_channels=3, kernel_size=3), (2, 2, 5, 5), (4,), 1),
    "ConvTranspose2d": (dict(in_channels=2, out_channels=3, kernel_size=3), (2, 2, 5, 5), (4,), 1),
    "MaskedConv2d": (dict(in_channels=2, out_channels=3, kernel_size=3), (2, 2, 5, 5), (4,), 1),
    "MaxPool2d": (dict(kernel_size=2), (2, 2, 4, 4), (4,), None),
    "AvgPool2d": (dict(kernel_size=2), (2, 2, 4, 4), (4,), None),
    "Upsample": (dict(scale_factor=2), (2, 2, 3, 3), (4,), None),
    "BatchNorm1d": (dict(num_features=3), (4, 3), (2, 3), 1),
    "BatchNorm2d": (dict(num_features=2), (4, 2, 3, 3), (4,), 1),
    "GroupNorm": (dict(num_groups=2, num_channels=4), (2, 4, 3, 3), range(2, 6), 1),
    "Dropout": (dict(), (4, 3), None, None),
    "Identity": (dict(), (4, 3), None, None),
    "Flatten": (dict(), (4, 2, 3), range(1, 6), None),
    "Unflatten": (dict(shape=(2, 3)), (4, 6), (2,), 1),
    "ReLU": (dict(), (4, 3), None, None),
    "LeakyReLU": (dict(), (4, 3), None, None),
    "Sigmoid": (dict(), (4, 3), None, None),
    "Tanh": (dict(), (4, 3), None, None),
    "Softplus": (dict(), (4, 3), None, None),
    "SiLU": (dict(), (4, 3), None, None),
}

CONTAINERS = {  # exported Module classes that are not layers: they hold layers and check nothing themselves
    "Module": "the base class",
    "ModuleList": "a list of modules, with no forward",
    "Sequential": "runs its layers in turn; each checks its own input",
}

NAN, INF = float("nan"), float("inf")
BAD_SETTINGS = {  # constructor argument: values that no layer taking that argument may accept
    "in_features": [0, -1, 2.5, True, "3"],
    "out_features": [0, -1, 2.5],
    "in_channels": [0, -2, 2.0],
    "out_channels": [0, -2, None],
    "num_features": [0, -3, 3.0],
    "num_groups": [0, -1, 2.0],
    "num_channels": [0, -2, 4.0],
    "kernel_size": [0, -1, (3, 0), (3,), (3, 3, 3), 2.5, (2.5, 3), "3"],
    "stride": [0, -1, (1, 0), 1.5],
    "padding": [-1, (0, -1), 0.5],
    "dilation": [0, -1, (1, 0)],
    "output_padding": [-1, (0, -1), 1],  # 1 with stride 1 and dilation 1: it must be smaller than both
    "scale_factor": [0, -2, 1.5, (2, 0)],
    "mode": ["bilinear"],
    "mask_type": ["C", "a"],
    "shape": [(), (0, 3), (2, -1), (2, 2.5), 6],
    "p": [-0.1, 1.0, 1.5, NAN, "0.5"],
    "eps": [0, -1e-5, NAN, INF],
    "momentum": [-0.1, 1.5, NAN],
    "negative_slope": [NAN, INF, "0.2", None],
    "bias": [None, "yes", 1],
    "affine": [None, "no"],
    "track_running_stats": [None, 0],
}

NOT_TRIED = {  # (layer, argument): why the table above does not try it
    ("MaskedLinear", "mask"): "tests/test_nn_masked.py checks the mask's shape and its 0/1 values",
}


def make(name, **changes):
    kwargs, *_ = LAYERS[name]
    return getattr(nn, name)(**{**kwargs, **changes})


def valid_input(name, dtype=np.float32):
    shape = LAYERS[name][1]
    return sg.tensor(np.random.default_rng(0).standard_normal(shape).astype(dtype))


def settings_of(name):
    return [p for p in inspect.signature(getattr(nn, name).__init__).parameters if p != "self"]


def exported_modules():
    return sorted(name for name, value in vars(nn).items()
                  if isinstance(value, type) and issubclass(value, nn.Module))


def mentions(text, *words):
    """True if ``text`` holds each of ``words``."""
    return all(word in text for word in words)


# ----------------------------------------------------------------------------- nothing is left out


def test_every_module_class_nn_exports_is_a_row_of_the_layer_table_or_a_container():
    assert set(exported_modules()) == set(LAYERS) | set(CONTAINERS)


def test_every_setting_of_every_layer_is_tried_with_bad_values():
    untried = [(name, arg) for name in LAYERS for arg in settings_of(name)
               if arg not in BAD_SETTINGS and (name, arg) not in NOT_TRIED]
    assert untried == []


# ------------------------------------------------------------------------------- at construction

BAD_CONSTRUCTIONS = [(name, arg, value) for name in LAYERS for arg in settings_of(name)
                     for value in BAD_SETTINGS.get(arg, [])]


@pytest.mark.parametrize("name, arg, value", BAD_CONSTRUCTIONS,
                         ids=[f"{n}-{a}={v!r}" for n, a, v in BAD_CONSTRUCTIONS])
def test_every_layer_refuses_a_bad_setting_at_construction_naming_itself_the_setting_and_the_value(name, arg, value):
    with pytest.raises((ValueError, TypeError)) as caught:
        make(name, **{arg: value})
    assert mentions(str(caught.value), f"{name}: ", arg, f"got {value!r}"), str(caught.value)


ISSUE_EXAMPLES = {  # the reproductions in issue 15, each of which once returned or failed in NumPy's words
    "Conv2d(dilation=0) returned an output": lambda: nn.Conv2d(2, 3, 3, dilation=0),
    "Linear(0, 3): ZeroDivisionError": lambda: nn.Linear(0, 3),
    "Conv2d(kernel_size=0): ZeroDivisionError": lambda: nn.Conv2d(2, 3, 0),
    "Conv2d(stride=0): ZeroDivisionError": lambda: nn.Conv2d(2, 3, 3, stride=0),
    "MaxPool2d(0): ZeroDivisionError": lambda: nn.MaxPool2d(0),
    "Conv2d(padding=-1): a broadcast error": lambda: nn.Conv2d(2, 3, 3, padding=-1),
    "Conv2d(0, 3, 3): ZeroDivisionError": lambda: nn.Conv2d(0, 3, 3),
}


@pytest.mark.parametrize("example", list(ISSUE_EXAMPLES))
def test_the_issues_examples_of_bad_settings_are_refused_when_the_layer_is_built(example):
    with pytest.raises(ValueError, match=r"^(Linear|Conv2d|MaxPool2d): \w+ must be"):
        ISSUE_EXAMPLES[example]()


def test_a_zero_stride_is_refused_in_words_that_name_the_layer_the_setting_and_the_rule():
    with pytest.raises(ValueError) as caught:
        nn.Conv2d(2, 3, 3, stride=0)
    assert str(caught.value) == "Conv2d: stride must be an int or a pair of ints, at least 1, got 0"


@pytest.mark.parametrize("name", ["MaxPool2d", "AvgPool2d"])
def test_a_pooling_layer_refuses_padding_of_more_than_half_its_kernel_at_construction(name):
    with pytest.raises(ValueError, match=rf"^{name}\(kernel_size=\(2, 2\).*\): padding \(2, 2\) must be at most half"):
        make(name, padding=2)


def test_settings_given_as_numpy_integers_are_taken_as_ints():
    layer = nn.Conv2d(np.int64(2), np.int64(3), np.int64(3), stride=(np.int64(1), 2))
    assert layer.kernel_size == (3, 3) and layer.stride == (1, 2)
    assert all(type(v) is int for v in layer.kernel_size + layer.stride)


@pytest.mark.parametrize("call", [
    lambda x: F.conv2d(x, sg.zeros(3, 2, 3, 3), stride=0),
    lambda x: F.conv2d(x, sg.zeros(3, 2, 3, 3), dilation=0),
    lambda x: F.conv_transpose2d(x, sg.zeros(2, 3, 3, 3), padding=-1),
    lambda x: F.max_pool2d(x, 0),
    lambda x: F.avg_pool2d(x, 2, stride=0),
    lambda x: F.interpolate(x, 0),
    lambda x: F.dropout(x, 1.5),
], ids=["conv2d", "conv2d-dilation", "conv_transpose2d", "max_pool2d", "avg_pool2d", "interpolate", "dropout"])
def test_the_functional_forms_refuse_the_settings_their_layers_refuse_naming_the_function(call):
    with pytest.raises(ValueError, match=r"^(conv2d|conv_transpose2d|max_pool2d|avg_pool2d|interpolate|dropout): "
                                         r"\w+ must be"):
        call(sg.zeros(2, 2, 6, 6))


# -------------------------------------------------------------------------------------- at the call


def wrong_rank_shapes(name):
    _, shape, ranks, _ = LAYERS[name]
    candidates = [(), shape[1:], shape + (2,)]
    return [s for s in candidates if ranks is not None and len(s) not in ranks]


WRONG_RANKS = [(name, shape) for name in LAYERS for shape in wrong_rank_shapes(name)]


@pytest.mark.parametrize("name, shape", WRONG_RANKS, ids=[f"{n}-{s}" for n, s in WRONG_RANKS])
def test_every_layer_refuses_an_input_of_the_wrong_rank_naming_itself_and_the_shape(name, shape):
    layer = make(name)
    with pytest.raises(ValueError) as caught:
        layer(sg.zeros(*shape))
    assert mentions(str(caught.value), repr(layer), f"{tuple(shape)}"), str(caught.value)


def test_linear_on_a_0d_input_is_a_value_error_naming_the_layer_not_an_index_error():
    with pytest.raises(ValueError, match=r"^Linear\(3, 2\): expected an input .* got shape \(\)"):
        nn.Linear(3, 2)(sg.tensor(1.0))


WRONG_SIZES = [name for name in LAYERS if LAYERS[name][3] is not None]


@pytest.mark.parametrize("name", WRONG_SIZES)
def test_every_layer_that_knows_its_input_size_refuses_another_naming_itself_and_the_shape(name):
    layer, shape, axis = make(name), list(LAYERS[name][1]), LAYERS[name][3]
    shape[axis] += 1
    with pytest.raises(ValueError) as caught:
        layer(sg.zeros(*shape))
    assert mentions(str(caught.value), repr(layer), f"{tuple(shape)}"), str(caught.value)


@pytest.mark.parametrize("name", list(LAYERS))
def test_every_layer_refuses_what_is_not_a_tensor_saying_how_to_make_one(name):
    with pytest.raises(TypeError, match=r"expected a Tensor, got ndarray.*scratchgen.tensor"):
        make(name)(np.zeros(LAYERS[name][1], dtype=np.float32))


# ------------------------------------------------------------------------------------------- dtypes


def has_float_state(layer):
    return any(t.dtype.kind == "f" for t in layer.parameters()) or any(
        t.dtype.kind == "f" for _, t in layer.named_buffers())


def as_float64(layer):
    for p in layer.parameters():
        p.data = p.data.astype(np.float64)
    for name, buffer in layer.named_buffers():
        if buffer.dtype.kind == "f":
            buffer.data = buffer.data.astype(np.float64)
    return layer


@pytest.mark.parametrize("name", list(LAYERS))
def test_every_layer_computes_in_float32_and_returns_float32(name):
    assert make(name)(valid_input(name)).dtype == np.float32


@pytest.mark.parametrize("name", list(LAYERS))
def test_every_layer_computes_in_float64_when_its_parameters_are_float64(name):
    layer = as_float64(make(name))
    assert layer(valid_input(name, np.float64)).dtype == np.float64


@pytest.mark.parametrize("dtype", [np.float16, np.int64, np.bool_])
@pytest.mark.parametrize("name", list(LAYERS))
def test_every_layer_refuses_other_dtypes_naming_itself_the_dtype_and_how_to_convert(name, dtype):
    layer = make(name)
    with pytest.raises(TypeError) as caught:
        layer(valid_input(name, dtype))
    message = str(caught.value)
    assert mentions(message, repr(layer), np.dtype(dtype).name, ".astype('float32')"), message
    if has_float_state(layer):
        assert "parameters are float32" in message, message


@pytest.mark.parametrize("name", [name for name in LAYERS if has_float_state(make(name))])
def test_a_layer_with_parameters_refuses_an_input_of_another_float_dtype_naming_both(name):
    layer = make(name)
    with pytest.raises(TypeError, match=r"input of dtype float64 but the layer's parameters are float32"):
        layer(valid_input(name, np.float64))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_dropout_refuses_float16_in_its_own_words_in_either_mode(mode):
    layer = getattr(nn.Dropout(0.5), mode)()
    with pytest.raises(TypeError, match=r"^Dropout\(p=0.5\): input of dtype float16"):
        layer(sg.tensor(np.zeros((2, 3), np.float16)))


def test_the_functional_dropout_refuses_float16_naming_itself():
    with pytest.raises(TypeError, match=r"^dropout: input of dtype float16"):
        F.dropout(sg.tensor(np.zeros((2, 3), np.float16)), 0.5)


def test_the_dtype_rule_is_written_in_the_nn_package_docstring():
    assert "float16" in nn.__doc__ and "float32" in nn.__doc__ and "float64" in nn.__doc__


# --------------------------------------------------------------------------------------------- losses

LOSSES = {  # name: a call on an empty batch of shape (0, 3)
    "binary_cross_entropy_with_logits":
        lambda x, r: F.binary_cross_entropy_with_logits(x, np.zeros(x.shape, np.float32), reduction=r),
    "cross_entropy": lambda x, r: F.cross_entropy(x, np.zeros(x.shape[:1], np.int64), reduction=r),
    "mse_loss": lambda x, r: F.mse_loss(x, np.zeros(x.shape, np.float32), reduction=r),
    "gaussian_kl": lambda x, r: F.gaussian_kl(x, x, reduction=r),
}


def test_every_loss_in_functional_is_in_the_loss_table():
    with_reduction = {name for name in F.__all__ if "reduction" in inspect.signature(getattr(F, name)).parameters}
    assert with_reduction == set(LOSSES)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("name", list(LOSSES))
def test_every_loss_refuses_an_empty_batch_naming_itself_and_the_shape_without_numpy_warnings(name, reduction):
    empty = sg.tensor(np.zeros((0, 3), np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a NumPy "Mean of empty slice" warning fails the test
        with pytest.raises(ValueError, match=rf"^{name}: .*{re.escape('(0, 3)')}.*empty"):
            LOSSES[name](empty, reduction)


@pytest.mark.parametrize("name", list(LOSSES))
def test_reduction_none_of_an_empty_batch_is_an_empty_result_not_an_error(name):
    empty = sg.tensor(np.zeros((0, 3), np.float32))
    out = LOSSES[name](empty, "none")
    assert out.size == 0 and not math.isnan(float(np.sum(out.numpy())))

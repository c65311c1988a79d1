"""Module bookkeeping and dense layers: parameter discovery, names, state dicts, modes, Linear, init."""

import numpy as np
import pytest

import scratchgen as sg
from conftest import host, t64

nn = sg.nn


class TwoLayer(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(4, 8)
        self.head = nn.Sequential(nn.ReLU(), nn.Dropout(0.5), nn.Linear(8, 2))

    def forward(self, x):
        return self.head(self.hidden(x))


def test_parameters_are_found_by_attribute_with_pytorch_names():
    model = TwoLayer()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["hidden.weight", "hidden.bias", "head.2.weight", "head.2.bias"]
    assert model.hidden.weight.shape == (8, 4)  # (out, in), as in PyTorch
    assert model.num_parameters() == 8 * 4 + 8 + 2 * 8 + 2


def test_state_dict_round_trip_and_strict_checks():
    a, b = TwoLayer(), TwoLayer()
    assert not np.array_equal(host(a.hidden.weight), host(b.hidden.weight))
    b.load_state_dict(a.state_dict())
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters()):
        np.testing.assert_array_equal(host(pa.data), host(pb.data), err_msg=name)
        assert pa.data is not pb.data
    with pytest.raises(KeyError, match=r"missing keys \['head.2.bias'\]"):
        b.load_state_dict({k: v for k, v in a.state_dict().items() if k != "head.2.bias"})
    bad = dict(a.state_dict())
    bad["hidden.weight"] = np.zeros((4, 8), dtype=np.float32)
    with pytest.raises(ValueError, match=r"hidden.weight has shape \(4, 8\) in the state dict but \(8, 4\)"):
        b.load_state_dict(bad)


def test_train_and_eval_switch_every_child():
    model = TwoLayer()
    model.eval()
    assert all(not m.training for m in model.modules())
    x = sg.randn(3, 4)
    np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())  # dropout off
    model.train()
    assert all(m.training for m in model.modules())


def test_linear_forward_matches_formula_and_gradcheck_of_its_parameters(rng):
    layer = nn.Linear(3, 2)
    for p in layer.parameters():  # float64 copies of the parameters, for gradcheck
        p.data = p.data.astype(np.float64)
    x = t64(rng.normal(size=(5, 3)))
    expected = x.numpy() @ layer.weight.numpy().T + layer.bias.numpy()
    np.testing.assert_allclose(layer(x).numpy(), expected, rtol=1e-12)
    assert sg.gradcheck(lambda inp, w, b: layer(inp), [x, layer.weight, layer.bias])
    assert sg.gradgradcheck(lambda inp, w, b: layer(inp), [x, layer.weight, layer.bias])


def test_every_activation_layer_is_twice_differentiable(rng):
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 4), nn.Sigmoid(), nn.Linear(4, 4), nn.Softplus(),
                          nn.Linear(4, 4), nn.LeakyReLU(0.2), nn.Linear(4, 4), nn.ReLU(), nn.Dropout(0.5),
                          nn.Unflatten((2, 2)), nn.Flatten(), nn.Identity())
    model.eval()  # dropout off: its mask would differ between the finite-difference evaluations
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    x = t64(rng.normal(size=(5, 3)))
    params = model.parameters()
    assert sg.gradgradcheck(lambda inp, *weights: model(inp), [x] + params)


def test_linear_rejects_wrong_feature_count():
    with pytest.raises(ValueError, match=r"Linear\(3, 2\): input of shape \(5, 4\) has 4 features"):
        nn.Linear(3, 2)(sg.zeros(5, 4))


def test_linear_initialisation_is_pytorchs_uniform():
    layer = nn.Linear(400, 300)
    w = layer.weight.numpy()
    bound = 1 / np.sqrt(400)
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert w.std() == pytest.approx(bound / np.sqrt(3), rel=0.02)
    assert w.dtype == np.float32


@pytest.mark.parametrize("name,std", [
    ("xavier_normal_", np.sqrt(2 / (200 + 300))),
    ("xavier_uniform_", np.sqrt(6 / (200 + 300)) / np.sqrt(3)),
    ("kaiming_normal_", np.sqrt(2) / np.sqrt(200)),
])
def test_initialisers_have_their_stated_spread(name, std):
    w = nn.Parameter(np.zeros((300, 200), dtype=np.float32))
    if name.startswith("kaiming"):
        getattr(nn.init, name)(w, nonlinearity="relu")
    else:
        getattr(nn.init, name)(w)
    assert w.numpy().std() == pytest.approx(std, rel=0.02)
    assert abs(w.numpy().mean()) < 0.01 * std * 10


def test_a_parameter_made_from_a_host_array_lives_on_the_active_backend():
    """nn.Parameter(numpy array) on a device backend moves the array, as sg.tensor does, instead of keeping a
    host array that the first op would refuse (the strict backend stands in for CuPy)."""
    host = np.arange(6, dtype=np.float32).reshape(2, 3)
    with sg.use_backend("strict"):
        w = nn.Parameter(host)
        assert sg.backend.is_array(w.data) and not isinstance(w.data, np.ndarray)
        assert sg.backend.device_of(w.data) == "device (strict)"
        ((w * 2.0).sum()).backward()  # an op takes it: no "input 0 is on host" error
        np.testing.assert_array_equal(w.numpy(), host)
        np.testing.assert_array_equal(sg.backend.to_numpy(w.grad), np.full((2, 3), 2.0, np.float32))
    with sg.use_backend("numpy"):
        assert nn.Parameter(host).data is host  # already on the active backend: no copy


def test_activation_modules_match_their_functions(rng):
    x = sg.tensor(rng.normal(size=(4, 5)).astype(np.float32))
    F = nn.functional
    for module, fn in [(nn.ReLU(), F.relu), (nn.Sigmoid(), F.sigmoid), (nn.Tanh(), F.tanh), (nn.Softplus(), F.softplus),
                       (nn.SiLU(), F.silu)]:
        np.testing.assert_array_equal(module(x).numpy(), fn(x).numpy())
    np.testing.assert_array_equal(nn.LeakyReLU(0.2)(x).numpy(), np.where(x.numpy() > 0, x.numpy(), np.float32(0.2) * x.numpy()))
    assert nn.Flatten()(sg.zeros(2, 3, 4)).shape == (2, 12)
    assert nn.Unflatten((3, 4))(sg.zeros(2, 12)).shape == (2, 3, 4)

"""Optimisers: their updates against the update rules written out in NumPy, and their saved state."""

import copy

import numpy as np
import pytest

import scratchgen as sg
from conftest import host


def _quadratic_grads(theta, target):
    return 2 * (theta - target)  # gradient of Σ(θ - target)²


def _run(optimizer_cls, steps=5, **kwargs):
    target = np.array([1.0, -2.0, 3.0], dtype=np.float32)
    p = sg.nn.Parameter(sg.tensor(np.zeros(3, dtype=np.float32)))
    opt = optimizer_cls([p], **kwargs)
    trajectory = []
    for _ in range(steps):
        opt.zero_grad()
        ((p - sg.tensor(target)) ** 2).sum().backward()
        opt.step()
        trajectory.append(p.numpy())
    return np.array(trajectory), target


def test_sgd_with_momentum_and_weight_decay_follows_the_rule():
    got, target = _run(sg.optim.SGD, lr=0.1, momentum=0.9, weight_decay=0.01)
    theta, buffer = np.zeros(3, dtype=np.float32), None
    for row in got:
        d = _quadratic_grads(theta, target) + 0.01 * theta
        buffer = d if buffer is None else 0.9 * buffer + d
        theta = theta - 0.1 * buffer
        np.testing.assert_allclose(row, theta, rtol=1e-6)


def test_adam_follows_the_rule():
    got, target = _run(sg.optim.Adam, lr=0.01, betas=(0.8, 0.99), eps=1e-8)
    theta, m, v = np.zeros(3), np.zeros(3), np.zeros(3)
    for t, row in enumerate(got, start=1):
        g = _quadratic_grads(theta, target)
        m = 0.8 * m + 0.2 * g
        v = 0.99 * v + 0.01 * g * g
        theta = theta - 0.01 * (m / (1 - 0.8**t)) / (np.sqrt(v / (1 - 0.99**t)) + 1e-8)
        np.testing.assert_allclose(row, theta, rtol=1e-5)


def test_optimisers_do_not_write_into_gradients():
    p = sg.nn.Parameter(sg.tensor(np.ones(3, dtype=np.float32)))
    (p * 2.0).sum().backward()
    before = p.grad.copy()
    sg.optim.Adam([p], weight_decay=0.1).step()
    sg.optim.SGD([p], lr=0.1, momentum=0.5, weight_decay=0.1).step()
    np.testing.assert_array_equal(host(p.grad), host(before))


def test_optimizer_state_dict_resumes_identically():
    def make():
        sg.manual_seed(0)
        model = sg.nn.Linear(3, 2)
        return model, sg.optim.Adam(model.parameters(), lr=0.05)

    x = sg.randn(8, 3)

    def step(model, opt):
        opt.zero_grad()
        (model(x) ** 2).mean().backward()
        opt.step()

    model, opt = make()
    for _ in range(3):
        step(model, opt)
    # state dicts hold references to the live arrays, as in PyTorch: copy them to keep a snapshot.
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(opt.state_dict())
    step(model, opt)
    model2, opt2 = make()
    model2.load_state_dict(saved_model)
    opt2.load_state_dict(saved_opt)
    step(model2, opt2)
    for (name, a), (_, b) in zip(model.named_parameters(), model2.named_parameters()):
        np.testing.assert_array_equal(host(a.data), host(b.data), err_msg=name)


def test_bad_settings_are_refused():
    p = sg.nn.Parameter(np.ones(2, dtype=np.float32))
    with pytest.raises(ValueError, match="learning rate must be positive"):
        sg.optim.SGD([p], lr=0)
    with pytest.raises(ValueError, match="empty parameter list"):
        sg.optim.Adam([])
    with pytest.raises(ValueError, match="momentum must be in"):
        sg.optim.SGD([p], lr=0.1, momentum=1.5)


def test_adam_and_sgd_update_a_zero_dimensional_parameter():
    for opt_cls, kwargs in ((sg.optim.Adam, {"lr": 0.1}), (sg.optim.SGD, {"lr": 0.1, "momentum": 0.9})):
        p = sg.nn.Parameter(sg.tensor(np.array(2.0, dtype=np.float32)))
        opt = opt_cls([p], **kwargs)
        for _ in range(3):
            opt.zero_grad()
            (p * p).backward()
            opt.step()
        assert p.shape == () and abs(p.item()) < 2.0


def test_linear_decay_holds_then_falls_linearly_to_zero():
    from scratchgen.optim import linear_decay

    schedule = [linear_decay(1e-3, step, 100, decay_from=0.5) for step in range(101)]
    assert schedule[:50] == [1e-3] * 50  # held for the first half
    np.testing.assert_allclose(schedule[50:], 1e-3 * (100 - np.arange(50, 101)) / 50)  # then down to 0 at the end
    assert [linear_decay(0.1, step, 10, decay_from=1.0) for step in range(10)] == [0.1] * 10  # 1: never


# ------------------------------------------------------------------------ exponential moving average


def _set_weights(model, values):
    """Every parameter of ``model`` filled with one number: the weights "after a step", known exactly."""
    for p in model.parameters():
        p.data = sg.backend.asarray(np.full(p.shape, values, dtype=p.dtype))


@pytest.mark.parametrize("bias_correction", [True, False])
def test_ema_after_n_updates_is_the_closed_form(bias_correction):
    """θ̄_n = Σ_k (1−d) d^(n−k) θ_k / (1 − d^n) with the correction; d^n θ_0 + Σ_k (1−d) d^(n−k) θ_k without."""
    model, decay = sg.nn.Linear(3, 2), 0.9
    _set_weights(model, 5.0)  # θ_0, the weights when the average starts
    ema = sg.optim.EMA(model, decay=decay, bias_correction=bias_correction)
    steps = np.array([1.0, -2.0, 0.5, 3.0, 4.0, -1.0, 2.0])  # θ_1 .. θ_n
    for value in steps:
        _set_weights(model, value)
        ema.update()
    n = len(steps)
    weights = (1 - decay) * decay ** (n - np.arange(1, n + 1))
    expected = (weights @ steps / (1 - decay ** n) if bias_correction else decay ** n * 5.0 + weights @ steps)
    for name, average in ema.shadow.items():
        np.testing.assert_allclose(host(average), np.full(average.shape, expected), rtol=1e-5, err_msg=name)
    assert ema.num_updates == n
    if bias_correction:  # the first update takes the weights as they are; nothing of θ_0 remains
        fresh = sg.optim.EMA(model, decay=decay)
        _set_weights(model, 7.0)
        fresh.update()
        np.testing.assert_array_equal(host(fresh.shadow["weight"]), np.full((2, 3), 7.0, dtype=np.float32))


def test_ema_evaluates_with_the_average_and_puts_the_weights_back():
    model = sg.nn.Linear(3, 2)
    ema = sg.optim.EMA(model, decay=0.5)
    for value in (1.0, 3.0):
        _set_weights(model, value)
        ema.update()
    average = (0.5 * 1.0 + 1.0 * 3.0) / 1.5  # weights 0.5, 1 for θ_1, θ_2, normalised
    x = sg.ones(1, 3)
    with ema.average_parameters():
        np.testing.assert_allclose(model(x).numpy(), np.full((1, 2), 4 * average), rtol=1e-6)
    np.testing.assert_array_equal(model.weight.numpy(), np.full((2, 3), 3.0))  # its own weights again
    with pytest.raises(RuntimeError, match="inside"):
        with ema.average_parameters():
            raise RuntimeError("an error inside the block")
    np.testing.assert_array_equal(model.weight.numpy(), np.full((2, 3), 3.0))
    other = sg.nn.Linear(3, 2)
    ema.copy_to(other)
    np.testing.assert_allclose(other.bias.numpy(), np.full(2, average), rtol=1e-6)
    ema.shadow["bias"][0] = -1.0  # the copy is the module's own, not the average's array
    assert other.bias.numpy()[0] != -1.0
    with pytest.raises(ValueError, match="not the averaged ones"):
        ema.copy_to(sg.nn.Linear(3, 2, bias=False))


def test_ema_checkpoint_round_trip_resumes_identically():
    def trained(ema_state=None, steps=3):
        sg.manual_seed(0)
        model = sg.nn.Linear(3, 2)
        ema = sg.optim.EMA(model, decay=0.8)
        if ema_state is not None:
            ema.load_state_dict(ema_state)
        for i in range(steps):
            _set_weights(model, float(i))
            ema.update()
        return ema

    ema = trained(steps=2)
    saved = copy.deepcopy(ema.state_dict())
    assert saved["num_updates"] == 2 and sorted(saved["shadow"]) == ["bias", "weight"]
    resumed = trained(saved, steps=0)
    for name in ema.shadow:
        np.testing.assert_array_equal(host(resumed.shadow[name]), host(ema.shadow[name]))
    # One more update on both: the same numbers, because the count (and so d_n) came back too.
    for e in (ema, resumed):
        _set_weights(e.module, 9.0)
        e.update()
    for name in ema.shadow:
        np.testing.assert_array_equal(host(resumed.shadow[name]), host(ema.shadow[name]))


def test_ema_refuses_bad_settings_and_mismatched_states():
    model = sg.nn.Linear(3, 2)
    with pytest.raises(ValueError, match=r"EMA: decay must be in \[0, 1\), got 1"):
        sg.optim.EMA(model, decay=1)
    with pytest.raises(ValueError, match="has no parameters"):
        sg.optim.EMA(sg.nn.ReLU())
    ema = sg.optim.EMA(model)
    before = {name: array.copy() for name, array in ema.shadow.items()}
    state = copy.deepcopy(ema.state_dict())
    state["shadow"]["weight"] = sg.backend.asarray(np.zeros((3, 2), dtype=np.float32))
    with pytest.raises(ValueError, match=r"weight has shape \(3, 2\) in the state dict but \(2, 3\)"):
        ema.load_state_dict(state)
    del state["shadow"]["bias"]
    with pytest.raises(ValueError, match=r"none for \['bias'\]"):
        ema.load_state_dict(state)
    with pytest.raises(ValueError, match="num_updates must be a count"):
        ema.load_state_dict({**ema.state_dict(), "num_updates": -1})
    for name in before:  # nothing was half loaded
        np.testing.assert_array_equal(host(ema.shadow[name]), host(before[name]))

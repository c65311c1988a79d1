"""Optimisers: their updates against the update rules written out in NumPy, and their saved state."""

import copy

import numpy as np
import pytest

import scratchgen as sg


def _quadratic_grads(theta, target):
    return 2 * (theta - target)  # gradient of Σ(θ - target)²


def _run(optimizer_cls, steps=5, **kwargs):
    target = np.array([1.0, -2.0, 3.0], dtype=np.float32)
    p = sg.nn.Parameter(np.zeros(3, dtype=np.float32))
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
    p = sg.nn.Parameter(np.ones(3, dtype=np.float32))
    (p * 2.0).sum().backward()
    before = p.grad.copy()
    sg.optim.Adam([p], weight_decay=0.1).step()
    sg.optim.SGD([p], lr=0.1, momentum=0.5, weight_decay=0.1).step()
    np.testing.assert_array_equal(p.grad, before)


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
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)


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
        p = sg.nn.Parameter(np.array(2.0, dtype=np.float32))
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

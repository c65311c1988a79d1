"""Grader of assignment 8: RealNVP's affine coupling layer.

    python -m pytest coursework/08_coupling                          # grades coupling.py in this folder
    python -m pytest coursework/08_coupling --solution my_coupling.py  # grades another file

Checks, in the order a student meets them: the kept half passes unchanged (both ways of splitting);
the forward against the library's ``scratchgen.models.flow.AffineCoupling`` with the same weights; one
log-determinant per example; the log-determinant against log |det| of a Jacobian by central differences
(float64, D = 3); the inverse undoing the forward and the forward the inverse; the forward
differentiable (``scratchgen.gradcheck``); and a flow of four of your couplings learning the two moons,
measured with the library's density.
"""

import math

import numpy as np

import scratchgen as sg
from scratchgen import optim
from scratchgen.models.flow import AffineCoupling, Flow, RealNVP

STARTER = "coupling.py"
REQUIRED = ("Coupling",)


def _float64(module, scale=1.0):
    for p in module.parameters():
        p.data = p.data.astype(np.float64) * scale
    return module


def _layer(solution, features=3, flip=False, seed=0):
    """The student's coupling in float64, with weights scaled up so that s and t are far from 0."""
    sg.manual_seed(seed)
    return _float64(solution.Coupling(features, flip=flip, hidden_sizes=(16, 16)), scale=2.0)


def _library_twin(layer):
    """The library's coupling with the same weights (the starter's s_net and t_net)."""
    twin = _float64(AffineCoupling(layer.features, flip=layer.flip, hidden_sizes=(16, 16)))
    twin.load_state_dict(layer.state_dict())
    return twin


def _scale_and_shift(layer, kept):
    """s and t (arrays) that the layer's networks give for the kept half ``kept`` (an array)."""
    with sg.no_grad():
        s, t = _library_twin(layer)._scale_and_shift(sg.tensor(kept))
    return s.numpy(), t.numpy()


def _points(n=6, d=3, seed=0):
    return sg.tensor(np.random.default_rng(seed).standard_normal((n, d)) * 1.5)


def _kept(d, flip):
    return list(range(d // 2, d)) if flip else list(range(d // 2))


def _run(layer, x):
    with sg.no_grad():
        u, log_det = layer(x)
    return u.numpy(), np.asarray(log_det.numpy(), dtype=np.float64)


def _numerical_log_dets(layer, x, h=1e-6):
    """log |det ∂u/∂x| of each example, from a Jacobian by central differences (each example alone)."""
    x = x.numpy()
    n, d = x.shape
    jacobian = np.empty((n, d, d))
    for j in range(d):
        step = np.zeros(d)
        step[j] = h
        plus, minus = _run(layer, sg.tensor(x + step))[0], _run(layer, sg.tensor(x - step))[0]
        jacobian[:, :, j] = (plus - minus) / (2 * h)
    return np.linalg.slogdet(jacobian)[1]


# ------------------------------------------------------------------------------------------ the forward


def test_the_kept_half_passes_unchanged(solution):
    for flip in (False, True):
        layer, x = _layer(solution, features=5, flip=flip), _points(d=5)
        u, _ = _run(layer, x)
        kept, moved = _kept(5, flip), [j for j in range(5) if j not in _kept(5, flip)]
        assert u.shape == (6, 5), f"forward(x) gave u of shape {u.shape} for x of shape (6, 5)"
        assert np.array_equal(u[:, kept], x.numpy()[:, kept]), (
            f"with D = 5 and flip={flip} the kept half is coordinates {kept}, which must pass unchanged (u_a = x_a), "
            f"but they changed: split x into (kept, moved) as the docstring says, and join them back in their places")
        assert not np.allclose(u[:, moved], x.numpy()[:, moved]), (
            f"with flip={flip} the moved coordinates {moved} came out unchanged: u_b = x_b ⊙ exp(s) + t")


def test_forward_matches_the_library(solution):
    for flip in (False, True):
        layer, x = _layer(solution, flip=flip), _points()
        u, log_det = _run(layer, x)
        expected_u, expected_log_det = _run(_library_twin(layer), x)
        hint = ""
        if not np.allclose(u, expected_u, rtol=1e-10, atol=1e-10):
            kept_half, moved_half = _kept(3, flip), [j for j in range(3) if j not in _kept(3, flip)]
            s, t = _scale_and_shift(layer, x.numpy()[:, kept_half])
            if np.allclose(u[:, moved_half], (x.numpy()[:, moved_half] + t) * np.exp(s)):
                hint = " You shift before you scale, (x_b + t) ⊙ exp(s): RealNVP scales first, x_b ⊙ exp(s) + t."
            elif np.allclose(u[:, moved_half], x.numpy()[:, moved_half] * np.exp(-s) + t):
                hint = " You scale by exp(−s): the forward multiplies by exp(s)."
        assert not hint and np.allclose(u, expected_u, rtol=1e-10, atol=1e-10), (
            f"with flip={flip} your u differs from the library's AffineCoupling with the same s_net and t_net by up "
            f"to {np.abs(u - expected_u).max():.3g}.{hint}")
        if log_det.shape == expected_log_det.shape:
            assert np.allclose(log_det, expected_log_det, rtol=1e-10, atol=1e-10), (
                f"with flip={flip} your log-det {np.round(log_det, 5)} differs from the library's "
                f"{np.round(expected_log_det, 5)} (Σ_j s_j per example)"
                f"{': yours is its negative' if np.allclose(log_det, -expected_log_det) else ''}")


def test_log_det_has_one_value_per_example(solution):
    layer, x = _layer(solution), _points()
    _, log_det = _run(layer, x)
    n = len(x.numpy())
    _, expected = _run(_library_twin(layer), x)
    if log_det.size == 1 and abs(float(log_det.ravel()[0]) - expected.sum()) < 1e-8 * max(1, abs(expected.sum())):
        raise AssertionError(f"forward returned one log-det, {float(log_det.ravel()[0]):.6g}, for {n} examples: the "
                             f"sum over the whole batch. Sum s over the features only, s.sum(axis=1): one log-det "
                             f"per example, shape ({n},)")
    assert log_det.shape == (n,), (f"forward returned a log-det of shape {log_det.shape} for {n} examples; expected "
                                   f"({n},): Σ_j s_j for each example, s.sum(axis=1)")
    other = x.numpy().copy()
    other[1:] += 1.0  # change every example but the first
    assert abs(_run(layer, sg.tensor(other))[1][0] - log_det[0]) < 1e-12, (
        "the first example's log-det changed when only the other examples did: each example's is its own")


def test_log_det_is_log_abs_det_of_the_jacobian(solution):
    for flip in (False, True):
        layer, x = _layer(solution, flip=flip, seed=1), _points(n=4, seed=1)
        _, log_det = _run(layer, x)
        expected = _numerical_log_dets(layer, x)
        log_det = np.broadcast_to(log_det, expected.shape) if log_det.size == 1 else log_det
        hint = (" It is the negative: log |det ∂u/∂x| = +Σ s, since ∂u_b/∂x_b = diag(exp(s))."
                if np.allclose(log_det, -expected, atol=1e-6) else
                f" It is the sum over the whole batch of {len(expected)}: one log-det per example, s.sum(axis=1)."
                if np.allclose(log_det, expected.sum(), atol=1e-6) else "")
        assert log_det.shape == expected.shape and np.allclose(log_det, expected, rtol=0, atol=1e-6), (
            f"with flip={flip} your log-det is {np.round(log_det, 6)}, but log |det| of the Jacobian of your own u "
            f"by central differences (float64, step 1e-6) is {np.round(expected, 6)}.{hint}")


# ------------------------------------------------------------------------------------------ the inverse


def test_inverse_undoes_forward(solution):
    for flip in (False, True):
        layer, x = _layer(solution, flip=flip, seed=2), _points(seed=2)
        u, _ = _run(layer, x)
        with sg.no_grad():
            back = layer.inverse(sg.tensor(u)).numpy()
        hint = ""
        if not np.allclose(back, x.numpy(), rtol=0, atol=1e-10):
            kept_half, moved_half = _kept(3, flip), [j for j in range(3) if j not in _kept(3, flip)]
            s, t = _scale_and_shift(layer, u[:, kept_half])
            if np.allclose(back[:, moved_half], (u[:, moved_half] - t) * np.exp(s)):
                hint = (" Your inverse multiplies by exp(s): solving u_b = x_b ⊙ exp(s) + t for x_b divides by it, "
                        "x_b = (u_b − t) ⊙ exp(−s).")
            elif np.allclose(back[:, moved_half], u[:, moved_half] * np.exp(-s) - t):
                hint = " Undo the shift before the scale: x_b = (u_b − t) ⊙ exp(−s), not u_b ⊙ exp(−s) − t."
        assert np.allclose(back, x.numpy(), rtol=0, atol=1e-10), (
            f"with flip={flip}, inverse(forward(x)) differs from x by up to "
            f"{np.abs(back - x.numpy()).max():.3g}.{hint}")
        u_given = _points(seed=3).numpy()
        with sg.no_grad():
            again = layer(layer.inverse(sg.tensor(u_given)))[0].numpy()
        assert np.allclose(again, u_given, rtol=0, atol=1e-10), (
            f"with flip={flip}, forward(inverse(u)) differs from u by up to {np.abs(again - u_given).max():.3g}")


def test_forward_differentiates_by_gradcheck(solution):
    layer = _layer(solution, seed=4)
    x = sg.tensor(_points(n=4, seed=4).numpy(), requires_grad=True)
    weight = layer.s_net[0].weight

    def outputs(x, _):
        u, log_det = layer(x)
        return sg.concatenate([u, log_det.reshape(-1, 1)], axis=1) if log_det.ndim == 1 else u.sum() + log_det

    try:
        sg.gradcheck(outputs, [x, weight])
    except sg.GradcheckError as err:
        raise AssertionError(f"{err} (input 0 is x, input 1 is s_net's first weight). Write u and the log-det "
                             f"with Tensor ops only, never on .numpy() arrays") from None


# ------------------------------------------------------------------------------------------ learning


def test_a_flow_of_your_couplings_learns_the_two_moons(solution):
    """Four couplings of 32-32, 150 Adam steps on 2,000 standardised points (about two seconds), then the
    weights are copied into the library's RealNVP, whose density measures the fit on fresh points."""
    x = sg.data.two_moons(2000, rng=0)
    mean, scale = x.mean(axis=0), x.std(axis=0)
    z, z_test = (x - mean) / scale, (sg.data.two_moons(2000, rng=10) - mean) / scale
    best_gaussian = -(1 + math.log(2 * math.pi)) - 0.5 * np.linalg.slogdet(np.corrcoef(z, rowvar=False))[1]
    sg.manual_seed(0)
    flow = Flow([solution.Coupling(2, flip=k % 2 == 1, hidden_sizes=(32, 32)) for k in range(4)])
    opt = optim.Adam(flow.parameters(), lr=1e-2)
    loader = sg.data.DataLoader(z, batch_size=200, shuffle=True, seed=0)
    for _ in range(15):
        for (batch,) in loader:
            opt.zero_grad()
            loss = -flow.log_prob(batch).mean()
            loss.backward()
            opt.step()
    library = RealNVP(2, 4, (32, 32))
    library.load_state_dict(flow.state_dict())
    with sg.no_grad():
        test = library.log_prob(sg.tensor(z_test)).mean().item()
        yours = flow.log_prob(sg.tensor(z_test)).mean().item()
    assert np.isfinite(test) and test > best_gaussian + 0.4, (
        f"after 150 Adam steps a flow of four of your couplings reaches a test log-likelihood of {test:.3f} nats per "
        f"point by the library's density (by your own log-det it says {yours:.3f}); the best Gaussian gets "
        f"{best_gaussian:.3f}, and a correct coupling beats it by more than 0.4. Maximum likelihood follows the "
        f"log-det: a wrong one trains the flow toward a wrong density (see the log-det checks above)")

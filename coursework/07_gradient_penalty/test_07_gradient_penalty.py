"""Grader of assignment 7: WGAN-GP's gradient penalty, written with scratchgen.grad(..., create_graph=True).

    python -m pytest coursework/07_gradient_penalty                                # grades gradient_penalty.py
    python -m pytest coursework/07_gradient_penalty --solution my_penalty.py        # grades another file

Checks, in the order a student meets them: x̂ on the segments between data and generated samples, one
ε ~ U[0, 1] per sample (recovered from x̂ element by element: not one per batch, not one per pixel); the
gradient norms per sample over all non-batch axes, on a linear critic (whose gradient is its weight
vector everywhere) and against the library's on a tanh critic; the penalty λ(‖w‖ − 1)² of a linear
critic, and the library's on the points your penalty chose; the penalty's gradient reaching the critic's
weights (a double backward, checked by ``scratchgen.gradcheck`` on the weights); and a linear critic
trained with your penalty settling at the slope the penalty's optimum predicts.
"""

import numpy as np

import scratchgen as sg
from scratchgen import nn, optim
from scratchgen.backend import asarray
from scratchgen.models.gan import critic_loss
from scratchgen.models.penalties import sample_gradients

STARTER = "gradient_penalty.py"
REQUIRED = ("interpolate", "gradient_norms", "gradient_penalty")

IMAGE = (2, 3, 3)  # one sample: 2 channels of 3 x 3 pixels, 18 numbers


def _float64(module):
    for p in module.parameters():
        p.data = p.data.astype(np.float64)
    return module


def _linear_critic(seed=0):
    """D(x) = w·flatten(x) + b, whose gradient is w at every x̂: ‖∇D‖ = ‖w‖ for every sample."""
    sg.manual_seed(seed)
    critic = _float64(nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(IMAGE)), 1)))
    weight = np.random.default_rng(seed).standard_normal((1, int(np.prod(IMAGE)))) * 0.4
    critic[1].weight.data = asarray(weight)  # from the host to the backend the critic runs on
    return critic, critic[1].weight.numpy().ravel()


def _tanh_critic(seed=0):
    sg.manual_seed(seed)
    return _float64(nn.Sequential(nn.Flatten(), nn.Linear(int(np.prod(IMAGE)), 5), nn.Tanh(), nn.Linear(5, 1)))


class _Recording(nn.Module):
    """A critic that keeps a copy of every input it is shown."""

    def __init__(self, critic):
        super().__init__()
        self.critic, self.inputs = critic, []

    def forward(self, x):
        self.inputs.append(x.numpy())
        return self.critic(x)


def _images(n=12, seed=0):
    rng = np.random.default_rng(seed)
    return (sg.tensor(rng.standard_normal((n,) + IMAGE)), sg.tensor(rng.standard_normal((n,) + IMAGE) + 2.0))


def _epsilons(mixed, real, fake):
    """ε recovered from x̂ = ε·real + (1 − ε)·fake at every element: (N, elements of one sample)."""
    real, fake = real.numpy(), fake.numpy()
    return ((mixed - fake) / (real - fake)).reshape(len(real), -1)


def _epsilon_mistake(epsilon) -> str:
    """'' if ε is one number per sample, in [0, 1], varying between samples; else what is wrong."""
    if epsilon.min() < -1e-6 or epsilon.max() > 1 + 1e-6:
        return (f"ε ranges from {epsilon.min():.3g} to {epsilon.max():.3g}: x̂ must lie between the two samples, "
                f"ε ~ U[0, 1] (sg.rand, not sg.randn)")
    if np.abs(epsilon - epsilon[:, :1]).max() > 1e-6:
        return ("ε differs between the elements of one sample (one ε per pixel): x̂ must lie on the straight line "
                "between the two samples, so draw one ε per sample, shaped (N, 1, ..., 1)")
    if np.ptp(epsilon[:, 0]) < 1e-9:
        return (f"every sample got the same ε = {epsilon[0, 0]:.4f} (one ε for the whole batch): draw one per "
                f"sample, shaped (N, 1, ..., 1), so that the points cover the segments")
    return ""


# ----------------------------------------------------------------------------------------- interpolate


def test_interpolate_lies_on_the_segments_with_one_epsilon_per_sample(solution):
    real, fake = _images()
    mixed = solution.interpolate(real, fake)
    assert tuple(mixed.shape) == tuple(real.shape), f"interpolate gave shape {mixed.shape}; expected {real.shape}"
    mistake = _epsilon_mistake(_epsilons(mixed.numpy(), real, fake))
    assert not mistake, f"x̂ = ε·real + (1 − ε)·fake: {mistake}"
    assert mixed.requires_grad, ("interpolate returned x̂ with requires_grad=False: the penalty differentiates "
                                 "with respect to x̂, so call x̂.requires_grad_() on it")


def test_epsilon_is_uniform_on_0_1(solution):
    n = 4000
    real, fake = sg.tensor(np.ones((n, 2))), sg.tensor(np.zeros((n, 2)))  # x̂ = ε itself
    epsilon = solution.interpolate(real, fake).numpy()[:, 0]
    mean, var = float(epsilon.mean()), float(epsilon.var())
    # U[0, 1] has mean 1/2 and variance 1/12; over 4,000 draws their standard errors are 0.0046 and 0.0013
    assert abs(mean - 0.5) < 0.025 and abs(var - 1 / 12) < 0.008, (
        f"over {n} samples your ε has mean {mean:.4f} and variance {var:.4f}; ε ~ U[0, 1] has mean 0.5 and "
        f"variance 1/12 = 0.0833 (draw it with sg.rand)")


# -------------------------------------------------------------------------------------- gradient norms


def test_gradient_norms_of_a_linear_critic_are_its_weights_norm(solution):
    critic, w = _linear_critic()
    real, _ = _images()
    x_hat = sg.tensor(real.numpy(), requires_grad=True)
    norms = np.asarray(solution.gradient_norms(critic, x_hat).numpy(), dtype=np.float64)
    n, expected = len(real), np.linalg.norm(w)
    if norms.size == 1 and abs(float(norms.ravel()[0]) - np.sqrt(n) * expected) < 1e-6:
        raise AssertionError(f"gradient_norms gave one number, {float(norms.ravel()[0]):.6g} = √N·‖w‖, for a batch "
                             f"of N = {n}: that is the norm over the whole batch. Take one norm per sample, over "
                             f"its own axes only: reshape the gradient to (N, -1) and sum over axis 1")
    assert norms.shape == (n,), (f"gradient_norms gave shape {norms.shape} for {n} samples of shape {IMAGE}; "
                                 f"expected ({n},): one norm per sample, over all its non-batch axes (reshape the "
                                 f"gradient to (N, -1) first)")
    assert np.allclose(norms, expected, rtol=1e-9), (
        f"the linear critic D(x) = w·x + b has gradient w at every point, so every norm is ‖w‖ = {expected:.6g}; "
        f"yours range from {norms.min():.6g} to {norms.max():.6g}")


def test_gradient_norms_match_the_library_on_a_tanh_critic(solution):
    critic = _tanh_critic()
    real, _ = _images(seed=1)
    norms = solution.gradient_norms(critic, sg.tensor(real.numpy(), requires_grad=True)).numpy()
    expected = np.sqrt((sample_gradients(critic, sg.tensor(real.numpy(), requires_grad=True)).numpy() ** 2).sum(1))
    assert norms.shape == expected.shape, (f"gradient_norms gave shape {norms.shape}; expected {expected.shape}, one "
                                           f"norm per sample over all its non-batch axes")
    assert np.allclose(norms, expected, rtol=1e-7), (
        f"gradient_norms differs from ‖∇ₓD‖ per sample by up to {np.abs(norms - expected).max():.3g} on a tanh "
        f"critic: yours {np.round(norms[:3], 5)}..., expected {np.round(expected[:3], 5)}...")


def test_gradient_norms_are_differentiable_again(solution):
    critic = _tanh_critic()
    real, _ = _images()
    norms = solution.gradient_norms(critic, sg.tensor(real.numpy(), requires_grad=True))
    assert norms.requires_grad, (
        "the norms do not require grad: the gradient was taken without create_graph=True, so the engine sees it "
        "as a constant and a penalty on it gives the critic's weights no gradient. Call "
        "sg.grad(..., create_graph=True)")


# ---------------------------------------------------------------------------------------- the penalty


def test_penalty_of_a_linear_critic_is_lambda_times_norm_minus_one_squared(solution):
    critic, w = _linear_critic()
    real, fake = _images()
    n = len(real)
    for gp_lambda in (10.0, 0.5):
        got = solution.gradient_penalty(critic, real, fake, gp_lambda).item()
        expected = gp_lambda * (np.linalg.norm(w) - 1) ** 2
        over_batch = gp_lambda * (np.sqrt(n) * np.linalg.norm(w) - 1) ** 2
        hint = (f" That is λ(√N·‖w‖ − 1)²: the norm was taken over the whole batch of N = {n}, not per sample."
                if abs(got - over_batch) < 1e-6 * over_batch else
                " That is λ·(‖w‖ − 1): square it." if abs(got - gp_lambda * (np.linalg.norm(w) - 1)) < 1e-9 else
                f" That is {n} times the mean: take the mean over the batch, not the sum."
                if abs(got - n * expected) < 1e-6 * n * expected else "")
        assert abs(got - expected) < 1e-8 * max(1.0, expected), (
            f"a linear critic has ∇D = w at every x̂, so the penalty is λ(‖w‖ − 1)² = {expected:.6g} with λ = "
            f"{gp_lambda}; yours is {got:.6g}.{hint}")


def test_penalty_matches_the_library_at_the_points_it_chose(solution):
    critic = _Recording(_tanh_critic())
    real, fake = _images(seed=2)
    got = solution.gradient_penalty(critic, real, fake, 10.0).item()
    shown = [x for x in critic.inputs if x.shape == tuple(real.shape)]
    assert shown, "the critic was never shown a batch of x̂ of the data's shape"
    mixed = shown[-1]
    mistake = _epsilon_mistake(_epsilons(mixed, real, fake))
    assert not mistake, f"the points your penalty showed the critic are not x̂ = ε·real + (1 − ε)·fake: {mistake}"
    gradients = sample_gradients(critic.critic, sg.tensor(mixed, requires_grad=True)).numpy()
    expected = 10.0 * float(((np.sqrt((gradients ** 2).sum(axis=1)) - 1) ** 2).mean())
    over_batch = 10.0 * (np.sqrt((gradients ** 2).sum()) - 1) ** 2
    hint = (" That is the penalty of one norm over the whole batch: take one norm per sample."
            if abs(got - over_batch) < 1e-6 * over_batch else "")
    assert abs(got - expected) < 1e-8 * max(1.0, expected), (
        f"at the points x̂ your penalty chose, λ·mean (‖∇D(x̂)‖ − 1)² is {expected:.6g} (by the library's "
        f"gradients, on a tanh critic); yours is {got:.6g}.{hint}")


def test_the_penalty_gradient_reaches_the_critics_weights(solution):
    critic = _tanh_critic()
    real, fake = _images(n=5)
    weights = [critic[1].weight, critic[3].weight]

    def penalty(*_):  # the weights are perturbed in place; the same ε on every call
        sg.manual_seed(7)
        return solution.gradient_penalty(critic, real, fake, 10.0)

    value = penalty()
    assert value.requires_grad, (
        "the penalty does not require grad, so backward() gives the critic's weights no gradient: the gradient "
        "∇D(x̂) was taken without create_graph=True. Call sg.grad(..., create_graph=True) in gradient_norms")
    try:
        sg.gradcheck(penalty, weights)
    except sg.GradcheckError as err:
        raise AssertionError(f"{err} (input 0 is the first layer's weight, input 1 the last one's). The penalty's "
                             f"gradient in D's weights runs through the backward of D (a double backward): take "
                             f"∇D(x̂) with create_graph=True and build the penalty from Tensor ops") from None


def test_a_linear_critic_trained_with_your_penalty_settles_at_its_optimum(solution):
    # Data at one point, generated samples at another, a distance d = 3 away. A linear critic of slope s
    # earns s·d in the critic loss and pays λ(s − 1)², so it settles where d = 2λ(s − 1): s = 1 + d/(2λ) =
    # 1.15 for λ = 10. Without the penalty's gradient nothing holds s back.
    sg.manual_seed(0)
    critic = nn.Sequential(nn.Flatten(), nn.Linear(2, 1))
    adam = optim.Adam(critic.parameters(), lr=0.02, betas=(0.5, 0.9))
    real = sg.tensor(np.zeros((16, 2), dtype=np.float32))
    fake = sg.tensor(np.full((16, 2), 3 / np.sqrt(2), dtype=np.float32))
    for _ in range(300):
        loss = critic_loss(critic(real), critic(fake)) + solution.gradient_penalty(critic, real, fake, 10.0)
        adam.zero_grad()
        loss.backward()
        adam.step()
    slope = float(np.linalg.norm(critic[1].weight.numpy()))
    hint = (" It kept growing: the penalty sent no gradient into the weights (create_graph=True?)." if slope > 2 else
            " It settled below 1: the penalty held a norm larger than each sample's own near 1 (the norm of the "
            "whole batch's gradient, √16 = 4 times a sample's?)." if slope < 0.9 else "")
    assert abs(slope - 1.15) < 0.02, (
        f"after 300 Adam steps on critic loss + your penalty (λ = 10), the critic's slope is {slope:.3f}; the "
        f"optimum of s·d − λ(s − 1)² with d = 3 is s = 1 + d/(2λ) = 1.15.{hint}")

"""Grader of assignment 4: one iteration of the GAN's Algorithm 1.

    python -m pytest coursework/04_gan                            # grades gan_step.py in this folder
    python -m pytest coursework/04_gan --solution my_gan_step.py   # grades another file

The grader hands your ``train_iteration`` a generator that records the noise it is given and
optimisers that, at every ``step()``, record which network they update, the gradients they are about to
apply and both networks' parameters. From that record it checks Algorithm 1 step by step against the
library's losses in ``scratchgen.models.gan``: k discriminator steps then one generator step, fresh
noise and data for each, each step applying exactly the gradient of its own loss, the other network left
alone, and a GAN that learns a 1-D Gaussian. The record keeps NumPy copies on the host (``.numpy()``,
``to_numpy``), whatever backend the networks run on.
"""

import numpy as np

import scratchgen as sg
from scratchgen import optim
from scratchgen.backend import to_numpy
from scratchgen.models import gan
from scratchgen.models.gan import MLPDiscriminator, MLPGenerator

STARTER = "gan_step.py"
REQUIRED = ("discriminator_loss", "generator_loss", "train_iteration")


class _Generator(MLPGenerator):
    """A small MLP generator that keeps a copy of every noise batch it is given."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.inputs, self.recording = [], True

    def forward(self, z):
        if self.recording:
            self.inputs.append(z.numpy())
        return super().forward(z)


def _grad_copy(p):
    """A host copy of the gradient ``p`` holds now (None if it has none): later steps change p.grad."""
    return None if p.grad is None else to_numpy(p.grad).copy()


class _Record:
    """What happened at each optimiser step of one call of train_iteration."""

    def __init__(self, generator, discriminator):
        self.generator, self.discriminator = generator, discriminator
        self.steps, self.batches = [], []

    def real_batch(self, data):
        def next_batch():
            self.batches.append(data[len(self.batches) % len(data)])
            return sg.tensor(self.batches[-1])
        return next_batch

    def _library_loss(self, who, noise, real):
        """The loss the step of ``who`` should descend, at the current parameters, and its gradients."""
        G, D = self.generator, self.discriminator
        params = (D if who == "discriminator" else G).parameters()
        saved = [(p, p.grad, p.requires_grad) for p in G.parameters() + D.parameters()]
        for p in params:
            p.grad, p.requires_grad = None, True
        G.recording = False
        try:
            if who == "discriminator":
                with sg.no_grad():
                    fake = G(sg.tensor(noise))
                loss = gan.discriminator_loss(D(sg.tensor(real)), D(fake))
            else:
                loss = gan.generator_loss(D(G(sg.tensor(noise))), "non_saturating")
            loss.backward()
            grads = [np.zeros(p.shape) if p.grad is None else _grad_copy(p) for p in params]
        finally:
            G.recording = True
            for p, grad, requires_grad in saved:
                p.grad, p.requires_grad = grad, requires_grad
        return loss.item(), grads

    def step(self, who, optimizer):
        noise = self.generator.inputs[-1] if self.generator.inputs else None
        real = self.batches[-1] if self.batches else None
        entry = {
            "who": who, "noise": noise, "real": real,
            "grads": [_grad_copy(p) for p in optimizer.params],
            "G": [p.numpy() for p in self.generator.parameters()],
            "D_before": [p.numpy() for p in self.discriminator.parameters()],
            "G_grads": [_grad_copy(p) for p in self.generator.parameters()],
        }
        if noise is not None and (real is not None or who == "generator"):
            entry["loss"], entry["expected"] = self._library_loss(who, noise, real)
        optimizer.step()
        entry["D_after"] = [p.numpy() for p in self.discriminator.parameters()]
        if who == "discriminator" and "loss" in entry:
            entry["loss_after"] = self._library_loss(who, noise, real)[0]
        self.steps.append(entry)


class _Spy:
    """An optimiser that tells the record about every step it takes."""

    def __init__(self, optimizer, who, record):
        self._optimizer, self.who, self._record = optimizer, who, record

    def __getattr__(self, name):
        return getattr(self._optimizer, name)

    def zero_grad(self):
        self._optimizer.zero_grad()

    def step(self):
        self._record.step(self.who, self._optimizer)


def _run(solution, k=1, m=16, lr=0.01, seed=0):
    """One call of the student's train_iteration on a 2-D toy problem, with everything recorded."""
    sg.manual_seed(seed)
    G = _Generator(latent_dim=3, out_shape=(2,), hidden=(8,))
    D = MLPDiscriminator(in_shape=(2,), hidden=(8,))
    record = _Record(G, D)
    rng = np.random.default_rng(seed)
    data = [(rng.standard_normal((m, 2)) + 3.0).astype(np.float32) for _ in range(k)]
    G_start = [p.numpy() for p in G.parameters()]
    result = solution.train_iteration(G, D, _Spy(optim.SGD(G.parameters(), lr=lr), "generator", record),
                                      _Spy(optim.SGD(D.parameters(), lr=lr), "discriminator", record),
                                      record.real_batch(data), k=k)
    return record, result, G_start, m


def _order(record):
    return ", ".join(s["who"] for s in record.steps) or "none"


def _close(a, b):
    return all(np.allclose(x, y, rtol=1e-4, atol=1e-6) for x, y in zip(a, b))


def _steps_mistake(record, k) -> str:
    """'' if the optimiser steps were k discriminator steps then one generator step; else what was wrong."""
    order = [s["who"] for s in record.steps]
    expected = ["discriminator"] * k + ["generator"]
    if order == expected:
        return ""
    d, g = order.count("discriminator"), order.count("generator")
    said = f"with k = {k} the optimiser steps were [{_order(record)}], expected [{', '.join(expected)}]: "
    if g > 1:
        return said + (f"g_optimizer.step() was called {g} times. Algorithm 1 takes one generator step per "
                       f"iteration, after all k discriminator steps (not one after each)")
    if d != k:
        return said + (f"d_optimizer.step() was called {d} times; take exactly k discriminator steps, each on "
                       f"its own minibatch, with one step() each")
    if g == 0:
        return said + "g_optimizer.step() was never called: the iteration ends with one generator step"
    return said + "the generator's step comes after the k discriminator steps"


# ------------------------------------------------------------------------------------------ the losses


def test_discriminator_loss_is_minus_the_value_function(solution):
    rng = np.random.default_rng(0)
    real, fake = (sg.tensor(rng.standard_normal((6, 1)) * 2) for _ in range(2))
    got, expected = solution.discriminator_loss(real, fake).item(), gan.discriminator_loss(real, fake).item()
    hint = (" (that is +V: the discriminator descends −V)" if abs(got + expected) < 1e-9 else
            " (that is 6 times −V: you summed over the minibatch of 6; take the means)"
            if abs(got - 6 * expected) < 1e-9 else "")
    assert abs(got - expected) < 1e-9, (f"discriminator_loss = {got:.6g}, but −V = −(mean log D(x) + mean "
                                        f"log(1 − D(G(z)))) = {expected:.6g}{hint}")
    extreme = solution.discriminator_loss(sg.tensor([[100.0], [-100.0]]), sg.tensor([[100.0], [-100.0]])).item()
    assert np.isfinite(extreme) and abs(extreme - 100.0) < 1e-6, (
        f"with logits ±100 the loss is {extreme} instead of 100: log σ(l) overflows once σ(l) rounds to 0 or 1. "
        f"Write log σ(l) = −softplus(−l) and log(1 − σ(l)) = −softplus(l)")


def test_generator_loss_is_the_non_saturating_loss(solution):
    fake = sg.tensor(np.random.default_rng(1).standard_normal((6, 1)) * 2)
    got = solution.generator_loss(fake).item()
    expected = gan.generator_loss(fake, "non_saturating").item()
    saturating = gan.generator_loss(fake, "saturating").item()
    hint = (" That is the saturating loss mean log(1 − D(G(z))), whose gradient vanishes when D rejects the "
            "samples; use mean −log D(G(z))." if abs(got - saturating) < 1e-9 else
            " That is 6 times the mean: you summed over the minibatch of 6; take the mean."
            if abs(got - 6 * expected) < 1e-9 else "")
    assert abs(got - expected) < 1e-9, f"generator_loss = {got:.6g}, mean −log D(G(z)) = {expected:.6g}.{hint}"
    extreme = solution.generator_loss(sg.tensor([[-100.0]])).item()
    assert np.isfinite(extreme), "generator_loss overflows at logit −100: write −log σ(l) as softplus(−l)"


# ------------------------------------------------------------------------------------------ Algorithm 1


def test_k_discriminator_steps_then_one_generator_step(solution):
    for k in (1, 3):
        record, _, _, _ = _run(solution, k=k)
        mistake = _steps_mistake(record, k)
        assert not mistake, mistake
        assert len(record.batches) == k, (f"with k = {k}, real_batch() was called {len(record.batches)} times: "
                                          f"each discriminator step takes a fresh minibatch of data")


def test_each_step_draws_fresh_noise_of_m_samples(solution):
    record, _, _, m = _run(solution, k=2)
    noises = [s["noise"] for s in record.steps]
    assert all(n is not None for n in noises), "the generator was not called before every step"
    for n in noises:
        assert n.shape == (m, 3), f"the noise had shape {n.shape}; expected (m, latent_dim) = ({m}, 3), m = len(real)"
    for i in range(len(noises) - 1):
        assert not np.array_equal(noises[i], noises[i + 1]), (
            f"steps {i + 1} and {i + 2} used the same noise: Algorithm 1 samples a fresh minibatch of noise "
            f"for every step")


def test_the_other_network_is_left_alone(solution):
    record, _, G_start, _ = _run(solution, k=2)
    mistake = _steps_mistake(record, 2)  # an extra step of one optimiser changes its network in the other's turn
    assert not mistake, mistake
    for i, s in enumerate(record.steps[:-1], 1):
        assert _close(s["G"], G_start), (
            f"the generator's parameters changed before discriminator step {i} without any generator step: only "
            f"g_optimizer.step() may change them (are they updated by hand, or in place?)")
    g_step = record.steps[-1]
    assert _close(g_step["D_after"], g_step["D_before"]), "the generator step changed the discriminator's parameters"


def test_the_discriminator_step_sends_no_gradient_into_the_generator(solution):
    record, _, _, _ = _run(solution, k=2)
    before = [None] * len(record.generator.parameters())  # G's gradients as the previous step left them
    d_steps = 0
    for s in record.steps:
        if s["who"] == "discriminator":
            d_steps += 1
            reached = [g is not None and np.abs(g).max() > 0 and (b is None or not np.array_equal(g, b))
                       for g, b in zip(s["G_grads"], before)]
            assert not any(reached), (
                f"at discriminator step {d_steps} the generator's parameters hold new gradients: the backward of "
                f"the discriminator's loss went on through G, because the fake samples were not detached from it. "
                f"Make them under `with sg.no_grad():` (or call .detach() on them): in this step G is fixed, and a "
                f"gradient left in its parameters is added to the generator's own unless something clears it")
        before = s["G_grads"]


def test_discriminator_steps_ascend_the_value_function(solution):
    record, _, _, _ = _run(solution, k=2)
    d_steps = [s for s in record.steps if s["who"] == "discriminator"]
    assert d_steps, f"no discriminator step was taken: [{_order(record)}]"
    for i, s in enumerate(d_steps, 1):
        assert "expected" in s, "the discriminator stepped before any data and noise were drawn"
        got = [np.zeros_like(e) if g is None else g for g, e in zip(s["grads"], s["expected"])]
        m = len(s["real"])
        if not _close(got, s["expected"]):
            hint = ("they are the negatives of the right ones: the discriminator must ascend V, i.e. descend −V"
                    if _close([-g for g in got], s["expected"]) else
                    f"they are {m} times the right ones: your loss sums over the minibatch of m = {m}; "
                    f"−V takes the means" if _close(got, [m * e for e in s["expected"]]) else
                    "compute the loss on this step's data and noise, and call d_optimizer.zero_grad() before "
                    "backward so that no older gradient is added in")
        else:
            hint = ""
        assert not hint, (f"discriminator step {i}: the gradients it applied are not those of −V on its minibatch: "
                          f"{hint}")
        assert s["loss_after"] < s["loss"], (f"discriminator step {i} did not raise V on its own minibatch "
                                             f"(−V went from {s['loss']:.5g} to {s['loss_after']:.5g})")


def test_generator_step_descends_the_non_saturating_loss(solution):
    record, _, _, _ = _run(solution, k=1)
    s = record.steps[-1]
    assert s["who"] == "generator" and "expected" in s, (f"no generator step after the noise was drawn: "
                                                         f"[{_order(record)}]")
    got = [np.zeros_like(e) if g is None else g for g, e in zip(s["grads"], s["expected"])]
    d_step_left = any(g is not None and np.abs(g).max() > 0 for g in record.steps[0]["G_grads"])
    m = len(s["noise"])
    hint = ("The discriminator step left gradients in the generator's parameters (its fake samples were not "
            "made under sg.no_grad()), and they were not cleared: call g_optimizer.zero_grad() before the "
            "generator's backward." if d_step_left else
            f"They are {m} times the right ones: your loss sums over the minibatch of m = {m}; take the mean."
            if _close(got, [m * e for e in s["expected"]]) else
            "The generator descends mean −log D(G(z)) on fresh noise: check g_optimizer.zero_grad() and the sign.")
    assert _close(got, s["expected"]), f"the generator step applied gradients that are not those of its loss. {hint}"


def test_train_iteration_returns_the_losses_of_its_last_steps(solution):
    record, result, _, m = _run(solution, k=2)
    d_last = [x for x in record.steps if x["who"] == "discriminator" and "loss" in x][-1:]
    g_last = [x for x in record.steps if x["who"] == "generator" and "loss" in x][-1:]
    assert d_last and g_last, f"the steps were [{_order(record)}]: no discriminator or no generator step"
    for name, step in (("d_loss", d_last[0]), ("g_loss", g_last[0])):
        got, want = float(result[name]), step["loss"]
        summed = f" ({m} times as much: a sum over the minibatch of m = {m}, not a mean)" if abs(
            got - m * want) < 1e-4 * abs(m * want) else ""
        assert abs(got - want) < 1e-4 * max(1.0, abs(want)), (
            f"train_iteration returned {name} = {got:.6g}, but the loss of its last "
            f"{'discriminator' if name == 'd_loss' else 'generator'} step, measured with the library's, was "
            f"{want:.6g}{summed}")


def test_a_gan_learns_a_gaussian(solution):
    rng = np.random.default_rng(0)
    G = MLPGenerator(latent_dim=1, out_shape=(1,), hidden=(16,))
    D = MLPDiscriminator(in_shape=(1,), hidden=(32,))
    g_opt = optim.Adam(G.parameters(), lr=5e-3, betas=(0.5, 0.999))
    d_opt = optim.Adam(D.parameters(), lr=5e-3, betas=(0.5, 0.999))
    for _ in range(300):
        solution.train_iteration(G, D, g_opt, d_opt,
                                 lambda: sg.tensor((2.0 + 0.5 * rng.standard_normal((64, 1))).astype(np.float32)))
    with sg.no_grad():
        samples = G(sg.randn(2000, 1)).numpy()
    mean, std = float(samples.mean()), float(samples.std())
    assert abs(mean - 2.0) < 0.25 and 0.15 < std < 0.9, (
        f"after 300 iterations on data N(2, 0.5²) the generator's samples have mean {mean:.3f} and standard "
        f"deviation {std:.3f}; a correct iteration gives a mean within 0.25 of 2 and a spread between 0.15 and 0.9")

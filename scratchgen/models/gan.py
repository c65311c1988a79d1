"""Generative adversarial networks: a generator and a discriminator trained against each other.

The implicit density of the lecture (Goodfellow et al., "Generative Adversarial Nets", 2014). A generator
G maps noise z ~ N(0, I) to a sample G(z); a discriminator D maps a sample x to the probability D(x) that
it came from the data rather than from G. They play

    min_G max_D  V(D, G) = E_x[log D(x)] + E_z[log(1 − D(G(z)))].

:class:`GANTrainer` follows the paper's Algorithm 1: each iteration takes ``k`` discriminator steps, each
on a fresh minibatch of m noise samples and m data samples, ascending V; then one generator step on
fresh noise, descending either the paper's *saturating* loss log(1 − D(G(z))) or the *non-saturating*
−log D(G(z)) that the paper recommends in practice (its gradient is strong exactly when D rejects G's
samples, early in training). Both players are optimised by whatever optimiser they are given: SGD with
momentum, as in the paper, or Adam, as in DCGAN.

The networks output logits l (D(x) = σ(l)), never probabilities, and the losses use

    log D(x) = log σ(l) = −softplus(−l),        log(1 − D(x)) = log σ(−l) = −softplus(l),

which stay finite for logits of any size, where log(σ(l)) would give log(0) = −inf once σ saturates.

The networks, unconditional or class-conditional, live in :mod:`scratchgen.models.gan_networks` and are
re-exported here: the dense pair, and the small DCGAN for 28×28 images.

**Conditional and joint games.** With a conditional pair (built with ``classes=C``), the trainer plays the
same Algorithm 1 for p(x | y) (Mirza and Osindero 2014): each real minibatch comes with its labels, each
fake one is G(z, y) for labels y drawn from the label prior p(y), and D judges the pairs (x, y). With a
:class:`~scratchgen.models.gan_networks.JointGenerator`, G draws the label itself, (x, p(y|z)) = G(z),
and D judges those pairs against the real (x, y): a GAN of the joint p(x, y).

Two gradient penalties keep D smooth in its input:

* **WGAN-GP** (Gulrajani et al., "Improved Training of Wasserstein GANs", 2017). The discriminator is a
  *critic* with a raw, unbounded output; it descends E[D(G(z))] − E[D(x)] + λ·E[(‖∇ₓ D(x̂)‖ − 1)²], and
  G descends −E[D(G(z))]. The first two terms are the negated Kantorovich-Rubinstein estimate of the
  Wasserstein distance, valid for a 1-Lipschitz critic; the :func:`gradient_penalty` enforces the
  Lipschitz bound softly where it matters, at points x̂ on the lines between real and generated samples.
  The paper's Algorithm 1 takes n_critic = 5 critic steps per generator step, λ = 10, Adam with
  lr 1e-4 and β = (0, 0.9); the authors' code for their toy and MNIST experiments uses β = (0.5, 0.9).
  A critic's constant offset cancels in its loss, so the last bias of a critic never moves.
* **R1** (Mescheder et al., "Which Training Methods for GANs do actually Converge?", 2018): the usual
  GAN losses plus γ/2·E‖∇ₓ D(x)‖² on real data (:func:`r1_penalty`, D's logit), added to D's loss: near
  the equilibrium it damps the oscillation that the unregularised game cannot escape.

Both penalties are gradients of D's output with respect to its *input*, differentiated once more with
respect to D's weights (:func:`scratchgen.autograd.grad` with ``create_graph=True``). They need a D that
treats each sample on its own: batch norm in training mode mixes the samples of a batch, so a sample's
input gradient would carry the others' (the WGAN-GP paper, section 4, drops batch norm from its critic
for this reason). Neither discriminator here has batch norm, and both penalties refuse a D that has.

Both discriminators can *pack* (Lin et al., "PacGAN", 2018): with ``packing=p`` D judges p samples at
once, all real or all fake, concatenated along the features (or channels). A generator that puts all
its samples on a few modes makes packs that look unlike real ones (too many near-duplicates), so D can
punish mode collapse, which it cannot see one sample at a time. A packing D is a function of the whole
pack, so both penalties treat a pack as one point of the product space: one gradient norm per pack, and
for WGAN-GP one ε per pack, so that x̂ lies on the line between a real pack and a generated pack.

Builds on :mod:`scratchgen.nn` (layers, softplus, batch norm, convolutions), :mod:`scratchgen.optim` and
:mod:`scratchgen.models.penalties` (the two gradient penalties).
"""

from __future__ import annotations

from contextlib import contextmanager

import numpy

from scratchgen import backend, nn
from scratchgen.autograd import no_grad
from scratchgen.models.gan_networks import (  # noqa: F401  re-exported: the networks GANTrainer trains
    DCGANDiscriminator, DCGANGenerator, JointGenerator, MLPDiscriminator, MLPGenerator, dcgan_init_, pack,
)
from scratchgen.models.penalties import gradient_penalty, r1_penalty
from scratchgen.nn import functional as F
from scratchgen.ops import concatenate
from scratchgen.tensor import Tensor, randn

__all__ = [
    "value_function", "discriminator_loss", "generator_loss", "critic_loss", "GENERATOR_LOSSES",
    "gradient_penalty", "r1_penalty", "pack", "MLPGenerator", "MLPDiscriminator",
    "DCGANGenerator", "DCGANDiscriminator", "JointGenerator", "dcgan_init_", "GANTrainer", "frozen",
]

# The games GANTrainer plays, named by the generator's loss: the two of Goodfellow et al. and WGAN-GP.
GENERATOR_LOSSES = ("non_saturating", "saturating", "wgan-gp")


# ------------------------------------------------------------------------------------------- losses


def value_function(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """V(D, G) = mean log D(x) + mean log(1 − D(G(z))) on a minibatch, from D's logits.

    Args:
        real_logits: D's logits on data, (m, 1) or (m,).
        fake_logits: D's logits on generated samples, (m, 1) or (m,).

    Returns:
        A scalar tensor, at most 0; D ascends it and G (saturating loss) descends it.
    """
    return -F.softplus(-real_logits).mean() - F.softplus(fake_logits).mean()


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """−V(D, G): the discriminator ascends V by descending this.

    It is the binary cross-entropy of D with "real" labels on data and "fake" labels on G's samples,
    summed over the two halves of the minibatch.
    """
    return -value_function(real_logits, fake_logits)


def generator_loss(fake_logits: Tensor, loss: str = "non_saturating") -> Tensor:
    """What the generator descends, from D's logits (or, for WGAN-GP, the critic's scores) on its samples.

    Args:
        fake_logits: D's logits on G(z), (m, 1) or (m,).
        loss: "saturating", mean log(1 − D(G(z))) = V's second term, the minimax game itself (its
            gradient vanishes when D confidently rejects G's samples); "non_saturating",
            mean −log D(G(z)), the paper's practical choice, with the same fixed point; or "wgan-gp",
            −mean D(G(z)) with D the critic's raw score (Gulrajani et al. 2017, Algorithm 1).

    Returns:
        A scalar tensor.
    """
    if loss == "saturating":
        return -F.softplus(fake_logits).mean()
    if loss == "non_saturating":
        return F.softplus(-fake_logits).mean()
    if loss == "wgan-gp":
        return -fake_logits.mean()
    raise ValueError(f"generator_loss: loss must be one of {GENERATOR_LOSSES}, got {loss!r}")


def critic_loss(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """mean D(G(z)) − mean D(x): the WGAN critic's loss, before the gradient penalty.

    For a 1-Lipschitz critic, −critic_loss = mean D(x) − mean D(G(z)) is a lower bound on the Wasserstein-1
    distance between the data and G's distribution (Kantorovich-Rubinstein duality), tight for the best
    critic: the critic descends this loss to tighten the bound, and −critic_loss is the run's estimate of
    the distance.

    Args:
        real_scores: the critic's raw outputs on data, (m, 1) or (m,); no sigmoid.
        fake_scores: its raw outputs on generated samples, (m, 1) or (m,).

    Returns:
        A scalar tensor.
    """
    return fake_scores.mean() - real_scores.mean()


# -------------------------------------------------------------------------------------- Algorithm 1


@contextmanager
def frozen(module: nn.Module):
    """Let gradients flow *through* ``module`` but not *into* its parameters, for the block.

    In the generator step, D is a fixed judge: its weights need no gradient, and not computing one saves
    a third of D's backward pass.
    """
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad = False
    try:
        yield module
    finally:
        for p in params:
            p.requires_grad = True


class GANTrainer:
    """Algorithm 1 of Goodfellow et al. (2014): k discriminator steps, then one generator step; or the
    same loop for WGAN-GP (Gulrajani et al. 2017, Algorithm 1), with n_critic = k critic steps.

    Args:
        generator: maps noise (m, latent_dim) to samples; must have a ``latent_dim`` attribute.
        discriminator: maps samples to logits (m / packing, 1); for WGAN-GP, the critic, whose output is
            used raw (no sigmoid).
        generator_optimizer, discriminator_optimizer: optimisers over each network's parameters.
        k: discriminator steps per iteration (the paper's k, which it set to 1; WGAN-GP's n_critic). By
            default 1, or 5 with ``loss="wgan-gp"``, as in each paper.
        loss: the game, named by the generator's loss: "non_saturating" (the default) or "saturating"
            (see :func:`generator_loss`), or "wgan-gp" (the critic descends :func:`critic_loss` plus
            :func:`gradient_penalty`; G descends −mean D(G(z))).
        gp_lambda: λ, the gradient penalty's weight, for "wgan-gp" only; by default the paper's 10.
        r1_gamma: γ of the :func:`r1_penalty` added to D's loss, for the two GAN losses; 0 turns it off.
        r1_every: add the R1 penalty on one discriminator step in this many, weighted by r1_every so that
            its average gradient is unchanged: StyleGAN2's "lazy regularisation" (Karras et al. 2020,
            section 3.1), which saves most of the penalty's double backward. 1: every step.
        label_prior: for a conditional pair, p(y), the probabilities of the C labels that fake samples are
            asked for (C numbers summing to 1); uniform by default.

    A pair of networks built with ``classes=C`` plays the conditional game: the minibatches that
    ``real_batch`` returns are pairs (x, y) of samples and integer labels, and G's samples are pairs
    (G(z, y), y) with y ~ p(y). A :class:`JointGenerator` makes pairs (x, p(y|z)) itself; D then judges
    each pair, with the real labels as one-hot rows.

    Raises:
        ValueError: an unknown loss, k < 1, a negative λ or γ, ``gp_lambda`` without "wgan-gp",
            ``r1_gamma`` with it (WGAN-GP has its own penalty), or ``r1_every`` < 1 or without ``r1_gamma``;
            a generator and a discriminator conditioned on different numbers of classes; "wgan-gp" with
            labels; a label prior that is not C probabilities.

    Attributes:
        iteration: iterations completed. discriminator_steps, generator_steps: updates made so far.

    Example::

        trainer = GANTrainer(G, D, optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999)),
                             optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999)))
        for _ in range(20_000):
            stats = trainer.train_iteration(lambda: sg.tensor(ring8(100)))

        wgan = GANTrainer(G, D, optim.Adam(G.parameters(), 1e-4, betas=(0.5, 0.9)),
                          optim.Adam(D.parameters(), 1e-4, betas=(0.5, 0.9)), loss="wgan-gp")
    """

    def __init__(self, generator: nn.Module, discriminator: nn.Module, generator_optimizer, discriminator_optimizer,
                 k: int | None = None, loss: str = "non_saturating", gp_lambda: float | None = None,
                 r1_gamma: float = 0.0, r1_every: int = 1, label_prior=None):
        if loss not in GENERATOR_LOSSES:
            raise ValueError(f"GANTrainer: loss must be one of {GENERATOR_LOSSES}, got {loss!r}")
        k = (5 if loss == "wgan-gp" else 1) if k is None else k
        if k < 1:
            raise ValueError(f"GANTrainer: k (discriminator steps per iteration) must be at least 1, got {k}")
        if loss == "wgan-gp":
            if r1_gamma:
                raise ValueError(f"GANTrainer: r1_gamma={r1_gamma} is for the non_saturating and saturating losses; "
                                 "loss='wgan-gp' has its own gradient penalty, weighted by gp_lambda")
            gp_lambda = 10.0 if gp_lambda is None else gp_lambda
            if not gp_lambda >= 0:  # written so that NaN fails too
                raise ValueError(f"GANTrainer: gp_lambda (the gradient penalty's weight) must be at least 0, "
                                 f"got {gp_lambda}")
        elif gp_lambda is not None:
            raise ValueError(f"GANTrainer: gp_lambda={gp_lambda} weights WGAN-GP's gradient penalty and needs "
                             f"loss='wgan-gp', not {loss!r} (these losses take r1_gamma)")
        if not r1_gamma >= 0:
            raise ValueError(f"GANTrainer: r1_gamma (the R1 penalty's weight) must be at least 0, got {r1_gamma}")
        if not (isinstance(r1_every, int) and r1_every >= 1):
            raise ValueError(f"GANTrainer: r1_every (discriminator steps per R1 penalty) must be an int at least 1, "
                             f"got {r1_every!r}")
        if r1_every != 1 and not r1_gamma:
            raise ValueError(f"GANTrainer: r1_every={r1_every} spaces out the R1 penalty, which is off (r1_gamma=0)")
        self.classes = self._check_classes(generator, discriminator, loss)
        self.joint = isinstance(generator, JointGenerator)  # G draws its own labels
        self.label_prior = self._check_prior(label_prior)
        self.generator, self.discriminator = generator, discriminator
        self.generator_optimizer, self.discriminator_optimizer = generator_optimizer, discriminator_optimizer
        self.k, self.loss = k, loss
        self.gp_lambda, self.r1_gamma, self.r1_every = gp_lambda, float(r1_gamma), r1_every
        self.last_r1_penalty = None  # the latest R1 penalty, reported between its lazy steps
        self.iteration = self.discriminator_steps = self.generator_steps = 0

    @staticmethod
    def _check_classes(generator, discriminator, loss: str) -> int:
        """C, the number of labels both networks read (0: an unconditional game)."""
        classes, judged = getattr(generator, "classes", 0), getattr(discriminator, "classes", 0)
        if classes != judged:
            raise ValueError(f"GANTrainer: the generator is conditioned on {classes} classes and the discriminator on "
                             f"{judged}; build both with the same classes (0 for an unconditional GAN)")
        if classes and loss == "wgan-gp":
            raise ValueError("GANTrainer: loss='wgan-gp' is for unconditional pairs here (its penalty interpolates "
                             "between samples, which labelled pairs would need a rule for); use a GAN loss, with r1_gamma")
        return classes

    def _check_prior(self, label_prior):
        """p(y) as a device array of C probabilities, or None for an unconditional game."""
        if not self.classes:
            if label_prior is not None:
                raise ValueError("GANTrainer: label_prior is for a conditional pair (built with classes=C)")
            return None
        prior = numpy.full(self.classes, 1 / self.classes) if label_prior is None else numpy.asarray(label_prior, float)
        if prior.shape != (self.classes,) or (prior < 0).any() or abs(prior.sum() - 1) > 1e-6:
            raise ValueError(f"GANTrainer: label_prior must be {self.classes} probabilities summing to 1, got {prior}")
        return backend.asarray(prior / prior.sum())

    def noise(self, m: int) -> Tensor:
        """m draws of z ~ N(0, I), (m, latent_dim), from scratchgen's seeded generator."""
        return randn(m, self.generator.latent_dim)

    def labels(self, m: int):
        """m labels drawn from the label prior p(y): an integer array (m,) on the active device."""
        return backend.categorical(self.label_prior, m)

    def generate(self, noise: Tensor, labels=None):
        """G's samples as D judges them, from the noise: (samples, labels), with labels None for an
        unconditional G; y ~ p(y) (or ``labels``) for a conditional one; p(y|z) for a joint one."""
        if self.joint:
            return self.generator(noise)
        if not self.classes:
            return self.generator(noise), None
        labels = self.labels(len(noise)) if labels is None else labels
        return self.generator(noise, labels), labels

    def judge(self, x: Tensor, labels=None) -> Tensor:
        """D's logits on samples x, with their labels for a conditional D."""
        return self.discriminator(x) if labels is None else self.discriminator(x, labels)

    def _split(self, real):
        """A real minibatch as (samples, labels): labels None in an unconditional game."""
        if not self.classes:
            return real, None
        if not (isinstance(real, (tuple, list)) and len(real) == 2):
            raise ValueError("GANTrainer: a conditional game needs real minibatches of pairs (samples, labels), "
                             f"got {type(real).__name__}")
        return real

    def discriminator_step(self, real: Tensor, noise: Tensor | None = None) -> dict:
        """One descent step of D's loss in D's parameters, on a minibatch of data and of fresh noise.

        D's loss is −V(D, G) (ascending V), plus :func:`r1_penalty` when ``r1_gamma`` > 0; for WGAN-GP it
        is :func:`critic_loss` plus :func:`gradient_penalty`.

        Args:
            real: m data samples, (m, ...); in a conditional game the pair (samples, labels (m,)).
            noise: the m noise draws, (m, latent_dim); fresh ones by default.

        Returns:
            Detached scalar tensors: "d_loss", the loss D descended, penalty included; for the GAN losses
            "real_score" mean D(x) and "fake_score" mean D(G(z)), as probabilities, and "r1_penalty" when
            R1 is on; for WGAN-GP "wasserstein", the critic's estimate mean D(x) − mean D(G(z)) of the
            Wasserstein distance (a critic's scores have no meaning one by one, being defined up to a
            constant), and "gradient_penalty".
        """
        real, real_labels = self._split(real)
        noise = self.noise(len(real)) if noise is None else noise
        with no_grad():  # G is held fixed: record nothing of its graph
            fake, fake_labels = self.generate(noise)
        real_out, fake_out = self.judge(real, real_labels), self.judge(fake, fake_labels)
        if self.loss == "wgan-gp":
            wasserstein_loss = critic_loss(real_out, fake_out)
            penalty = gradient_penalty(self.discriminator, real, fake, self.gp_lambda)
            loss = wasserstein_loss + penalty
            stats = {"wasserstein": -wasserstein_loss, "gradient_penalty": penalty}
        else:
            loss = discriminator_loss(real_out, fake_out)
            stats = {"real_score": F.sigmoid(real_out.detach()).mean(),
                     "fake_score": F.sigmoid(fake_out.detach()).mean()}
            if self.r1_gamma:
                # Lazily every r1_every steps, and on a run's (or a resume's) first, so there is one to report.
                if self.discriminator_steps % self.r1_every == 0 or self.last_r1_penalty is None:
                    penalty = r1_penalty(self.discriminator, real, self.r1_gamma, real_labels)
                    loss = loss + self.r1_every * penalty
                    self.last_r1_penalty = penalty.detach()
                stats["r1_penalty"] = self.last_r1_penalty
        self.discriminator_optimizer.zero_grad()
        loss.backward()
        self.discriminator_optimizer.step()
        self.discriminator_steps += 1
        return {"d_loss": loss.detach(), **{name: value.detach() for name, value in stats.items()}}

    def generator_step(self, m: int, noise: Tensor | None = None) -> dict:
        """One descent step of the generator's loss in G's parameters, on m fresh noise draws.

        Returns:
            Detached scalar tensors: "g_loss", the generator's loss, and "g_grad_norm", the global norm
            ‖∇_θ loss‖ = sqrt(Σ over G's parameters of their squared gradients), taken before the step
            (and before a distributed optimiser averages it over the ranks): the strength of G's learning
            signal, which the saturating loss loses while D rejects G's samples.
        """
        noise = self.noise(m) if noise is None else noise
        with frozen(self.discriminator):
            loss = generator_loss(self.judge(*self.generate(noise)), self.loss)
            self.generator_optimizer.zero_grad()
            loss.backward()
        grads = [p.grad for p in self.generator.parameters() if p.grad is not None]
        # On the device, no host sync; asarray, as NumPy's sums are scalars, not arrays.
        grad_norm = Tensor(backend.xp.asarray(backend.xp.sqrt(sum((g * g).sum() for g in grads))))
        self.generator_optimizer.step()
        self.generator_steps += 1
        return {"g_loss": loss.detach(), "g_grad_norm": grad_norm}

    def train_iteration(self, real_batch) -> dict:
        """k discriminator steps, each on ``real_batch()`` and fresh noise; then one generator step.

        Args:
            real_batch: a function of no arguments returning the next minibatch of m data samples.

        Returns:
            The last discriminator step's statistics and the generator step's (its loss and gradient norm).
        """
        for _ in range(self.k):
            real = real_batch()
            stats = self.discriminator_step(real)
        stats.update(self.generator_step(len(self._split(real)[0])))
        self.iteration += 1
        return stats

    def sample(self, n: int, batch_size: int = 1000, noise: Tensor | None = None, labels=None) -> Tensor:
        """n samples of G in evaluation mode (batch norm on its running statistics), without a graph.

        Args:
            n: number of samples. batch_size: how many to generate at once.
            noise: (n, latent_dim) to use instead of fresh draws (to follow fixed codes through training).
            labels: for a conditional G, the labels asked for, (n,) integers or (n, C) label rows (a blend
                of two digits); drawn from the label prior by default.
        """
        return self.sample_pairs(n, batch_size, noise, labels)[0]

    def sample_pairs(self, n: int, batch_size: int = 1000, noise: Tensor | None = None, labels=None):
        """n draws (x′, y′) of the joint p(x, y) that G models, in evaluation mode, without a graph.

        A conditional G draws y′ from the label prior (or takes ``labels``), then x′ = G(z, y′); a joint G
        draws both at once and y′ is the most probable label of its p(y|z). Unconditional: labels None.

        Returns:
            (samples Tensor (n, ...), labels: an integer array (n,) on the device, the rows given, or None).
        """
        noise = self.noise(n) if noise is None else noise
        if self.classes and not self.joint and labels is None:
            labels = self.labels(n)
        was_training = self.generator.training
        self.generator.eval()
        samples, drawn = [], []
        try:
            with no_grad():
                for i in range(0, len(noise), batch_size):
                    rows = None if labels is None else labels[i:i + batch_size]
                    x, y = self.generate(noise[i:i + batch_size], rows)
                    samples.append(x)
                    if self.joint:
                        drawn.append(y.data.argmax(axis=1))
        finally:
            self.generator.train(was_training)
        x = samples[0] if len(samples) == 1 else concatenate(samples)
        if not self.joint:
            return x, labels  # None for an unconditional G
        return x, drawn[0] if len(drawn) == 1 else backend.xp.concatenate(drawn)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict:
        """Both networks, both optimisers and the step counters: all a resumed run needs besides the RNG."""
        return {
            "generator": self.generator.state_dict(), "discriminator": self.discriminator.state_dict(),
            "generator_optimizer": self.generator_optimizer.state_dict(),
            "discriminator_optimizer": self.discriminator_optimizer.state_dict(),
            "counters": {"iteration": self.iteration, "discriminator_steps": self.discriminator_steps,
                         "generator_steps": self.generator_steps},
            "settings": self.settings(),
        }

    def settings(self) -> dict:
        """The game this trainer plays: loss, k, gp_lambda, r1_gamma and r1_every."""
        return {"loss": self.loss, "k": self.k, "gp_lambda": self.gp_lambda, "r1_gamma": self.r1_gamma,
                "r1_every": self.r1_every}

    def load_state_dict(self, state: dict) -> None:
        """Load :meth:`state_dict`'s output into this trainer, built with the same settings.

        Raises:
            ValueError: the state was saved by a trainer with other settings (a run resumed with another
                loss or penalty would silently become a different run); nothing is loaded then. A state
                saved before the trainer recorded its settings is loaded unchecked.
        """
        saved = state.get("settings")
        if saved is not None and saved != self.settings():
            changed = {name: (saved.get(name), value) for name, value in self.settings().items()
                       if saved.get(name) != value}
            raise ValueError(f"GANTrainer.load_state_dict: the state was saved with other settings (saved, here): "
                             f"{changed}; build the trainer with the saved settings to resume it")
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.generator_optimizer.load_state_dict(state["generator_optimizer"])
        self.discriminator_optimizer.load_state_dict(state["discriminator_optimizer"])
        for name, value in state["counters"].items():
            setattr(self, name, int(value))

"""Reference answer to assignment 4, by the library: scratchgen.models.gan (GANTrainer is Algorithm 1)."""

from scratchgen.models import gan


def discriminator_loss(real_logits, fake_logits):
    return gan.discriminator_loss(real_logits, fake_logits)


def generator_loss(fake_logits):
    return gan.generator_loss(fake_logits, "non_saturating")


def train_iteration(generator, discriminator, g_optimizer, d_optimizer, real_batch, k=1):
    trainer = gan.GANTrainer(generator, discriminator, g_optimizer, d_optimizer, k=k, loss="non_saturating")
    stats = trainer.train_iteration(real_batch)
    return {"d_loss": stats["d_loss"].item(), "g_loss": stats["g_loss"].item()}

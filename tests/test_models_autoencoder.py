"""Autoencoders: encode/decode shapes and round trips on each backend, gradients, noise, and learning tests.

The learning tests train on 256 embedded MNIST digits for a second or two each and require the
reconstruction's squared error to fall well below 0.067, what the best *constant* reconstruction (the
mean image) scores on those digits: only a code that carries information about each digit gets there.
"""

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import optim
from scratchgen.data import DataLoader, load_mnist, to_float
from scratchgen.models import (
    Autoencoder, ConvAutoencoder, DeepAutoencoder, DenoisingAutoencoder, DenseAutoencoder, corrupt,
    reconstruction_loss,
)

MODELS = {
    "dense": lambda code: DenseAutoencoder(code),
    "deep": lambda code: DeepAutoencoder(code),
    "conv": lambda code: ConvAutoencoder(code),
    "denoising": lambda code: DenoisingAutoencoder(DenseAutoencoder(code)),
}


def _digits(n, split="train"):
    return to_float(load_mnist("embedded", split)[0][:n])[:, None]  # (n, 1, 28, 28) in [0, 1]


# ------------------------------------------------------------------------------ shapes and round trips


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("code_size", [2, 7])
def test_encode_decode_shapes_and_round_trip(name, code_size, backend):
    model = MODELS[name](code_size).eval()
    x = sg.rand(5, 1, 28, 28)
    z = model.encode(x)
    logits = model.decode(z)
    assert z.shape == (5, code_size) and logits.shape == (5, 1, 28, 28)
    assert sg.backend.is_array(z.data) and sg.backend.is_array(logits.data)
    np.testing.assert_array_equal(model(x).numpy(), logits.numpy())  # forward is decode ∘ encode
    images = model.reconstruct(x).numpy()
    np.testing.assert_allclose(images, 1 / (1 + np.exp(-logits.numpy())), rtol=1e-5, atol=1e-6)
    assert images.min() >= 0 and images.max() <= 1


@pytest.mark.parametrize("name", list(MODELS))
def test_backends_agree_on_the_same_weights(name, backend):
    """The model built on NumPy, its weights moved to the backend under test, gives the same outputs."""
    with sg.use_backend("numpy"):
        sg.manual_seed(3)
        reference = MODELS[name](4).eval()
        x = np.random.default_rng(0).random((3, 1, 28, 28), dtype=np.float32)
        expected_z = reference.encode(sg.tensor(x)).numpy()
        expected = reference.reconstruct(sg.tensor(x)).numpy()
        state = reference.state_dict()
    model = MODELS[name](4).eval()
    model.load_state_dict(state)
    np.testing.assert_allclose(model.encode(sg.tensor(x)).numpy(), expected_z, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(model.reconstruct(sg.tensor(x)).numpy(), expected, rtol=1e-4, atol=1e-5)


def test_conv_autoencoder_layer_shapes():
    """The architecture of the issue: 28 -> 14 -> 7 -> code -> 7 -> 14 -> 28."""
    model = ConvAutoencoder(32)
    x = sg.rand(2, 1, 28, 28)
    shapes = []
    for layer in list(model.encoder) + list(model.decoder):
        x = layer(x)
        shapes.append(x.shape[1:])
    assert shapes == [(32, 14, 14), (32, 14, 14), (64, 7, 7), (64, 7, 7), (3136,), (32,),
                      (3136,), (3136,), (64, 7, 7), (32, 14, 14), (32, 14, 14), (1, 28, 28)]
    assert model.num_parameters() == (32 * 9 + 32) + (64 * 32 * 9 + 64) + (3136 * 32 + 32) \
        + (32 * 3136 + 3136) + (64 * 32 * 9 + 32) + (32 * 9 + 1)


def test_dense_autoencoder_widths_and_smaller_images():
    model = DenseAutoencoder(3, hidden=(20, 10), image_shape=(1, 6, 6))
    assert repr(model).startswith("DenseAutoencoder(36-20-10-3-10-20-36")
    assert [p.shape for p in model.parameters()] == [(20, 36), (20,), (10, 20), (10,), (3, 10), (3,),
                                                     (10, 3), (10,), (20, 10), (20,), (36, 20), (36,)]
    assert model(sg.rand(4, 1, 6, 6)).shape == (4, 1, 6, 6)


def test_bad_shapes_and_settings_are_clear_errors():
    model = DenseAutoencoder(8)
    with pytest.raises(ValueError, match=r"DenseAutoencoder.encode: images of shape \(2, 784\)"):
        model.encode(sg.rand(2, 784))
    with pytest.raises(ValueError, match=r"DenseAutoencoder.decode: codes of shape \(2, 5\); expected \(N, 8\)"):
        model.decode(sg.rand(2, 5))
    with pytest.raises(ValueError, match="code_size must be a positive integer"):
        ConvAutoencoder(0)
    with pytest.raises(ValueError, match="cannot be halved"):
        ConvAutoencoder(4, channels=(8, 8, 8))  # 28 -> 14 -> 7 -> 3.5
    with pytest.raises(ValueError, match="unknown noise"):
        DenoisingAutoencoder(DenseAutoencoder(2), noise="pepper")
    with pytest.raises(ValueError, match="loss must be 'bce' or 'mse'"):
        reconstruction_loss(sg.rand(2, 1, 28, 28), sg.rand(2, 1, 28, 28), loss="l1")


def test_every_autoencoder_is_an_autoencoder_with_its_parameters_listed_once():
    for name, build in MODELS.items():
        model = build(3)
        assert isinstance(model, Autoencoder), name
        ids = [id(p) for p in model.parameters()]
        assert len(ids) == len(set(ids)), name
    inner = DenseAutoencoder(3)
    assert DenoisingAutoencoder(inner).parameters() == inner.parameters()


# -------------------------------------------------------------------------------------------- gradients


def _float64(model):
    for p in model.parameters():
        p.data = p.data.astype(np.float64)
    return model


@pytest.mark.parametrize("loss", ["bce", "mse"])
def test_gradcheck_through_a_small_conv_autoencoder_and_its_loss(loss):
    model = _float64(ConvAutoencoder(2, channels=(2, 3), image_shape=(1, 4, 4)))
    rng = np.random.default_rng(0)
    x = sg.tensor(rng.random((2, 1, 4, 4)), requires_grad=True)
    target = sg.tensor(rng.random((2, 1, 4, 4)))
    params = model.parameters()
    assert sg.gradcheck(lambda x, *p: reconstruction_loss(model(x), target, loss), [x] + params)


def test_gradcheck_through_a_small_dense_autoencoder():
    model = _float64(DenseAutoencoder(2, hidden=(5,), image_shape=(1, 3, 3)))
    x = sg.tensor(np.random.default_rng(1).random((3, 1, 3, 3)), requires_grad=True)
    assert sg.gradcheck(lambda x, *p: model(x), [x] + model.parameters())


def test_reconstruction_losses_match_their_formulas():
    rng = np.random.default_rng(2)
    logits, x = rng.normal(size=(3, 1, 4, 4)) * 3, rng.random((3, 1, 4, 4))
    p = 1 / (1 + np.exp(-logits))
    bce = reconstruction_loss(sg.tensor(logits), sg.tensor(x), "bce").item()
    mse = reconstruction_loss(sg.tensor(logits), sg.tensor(x), "mse").item()
    np.testing.assert_allclose(bce, np.mean(-x * np.log(p) - (1 - x) * np.log(1 - p)), rtol=1e-10)
    np.testing.assert_allclose(mse, np.mean((p - x) ** 2), rtol=1e-10)


# ------------------------------------------------------------------------------------------------ noise


def test_gaussian_noise_has_its_standard_deviation_and_stays_in_range(backend):
    x = sg.tensor(np.full((200, 1, 28, 28), 0.5, dtype=np.float32))
    noisy = corrupt(x, "gaussian", 0.1).numpy()
    assert noisy.dtype == np.float32 and noisy.shape == x.shape
    assert abs(noisy.mean() - 0.5) < 0.002 and abs(noisy.std() - 0.1) < 0.002  # 5σ away from clipping
    wide = corrupt(x, "gaussian", 2.0).numpy()
    assert wide.min() == 0 and wide.max() == 1  # clipped back to grey levels


def test_masking_noise_zeroes_the_given_share_and_keeps_the_rest(backend):
    x = sg.tensor(np.random.default_rng(0).uniform(0.1, 1.0, (100, 1, 28, 28)).astype(np.float32))
    noisy = corrupt(x, "masking", 0.3).numpy()
    masked = noisy == 0
    assert abs(masked.mean() - 0.3) < 0.01
    np.testing.assert_array_equal(noisy[~masked], x.numpy()[~masked])


def test_noise_is_reproducible_from_the_seed():
    x = sg.rand(4, 1, 28, 28)
    sg.manual_seed(7)
    first = corrupt(x).numpy()
    sg.manual_seed(7)
    np.testing.assert_array_equal(first, corrupt(x).numpy())


def test_denoising_autoencoder_corrupts_only_in_training_mode():
    model = DenoisingAutoencoder(DenseAutoencoder(3), noise="masking", level=0.5)
    x = sg.rand(4, 1, 28, 28)
    plain = model.autoencoder(x).numpy()
    np.testing.assert_array_equal(model.eval()(x).numpy(), plain)
    assert not np.allclose(model.train()(x).numpy(), plain)


# --------------------------------------------------------------------------------------------- learning


def _train(model, x, epochs, lr, batch_size, loss="bce"):
    opt = optim.Adam(model.parameters(), lr=lr)
    loader = DataLoader(x, batch_size=batch_size, shuffle=True, seed=0)
    model.train()
    for _ in range(epochs):
        for (batch,) in loader:
            opt.zero_grad()
            reconstruction_loss(model(batch), batch, loss).backward()
            opt.step()
    return model.eval()


def _mse(model, x):
    with sg.no_grad():
        return float(((model.reconstruct(sg.tensor(x)).numpy() - x) ** 2).mean())


# name, model, digits, epochs, lr, batch size, threshold on the training digits' MSE (the mean image: 0.067)
LEARNING = [
    ("dense", lambda: DenseAutoencoder(16, hidden=(128,)), 256, 20, 5e-3, 32, 0.025),
    ("deep", lambda: DeepAutoencoder(16, hidden=(256, 128)), 256, 20, 3e-3, 16, 0.04),
    ("conv", lambda: ConvAutoencoder(16, channels=(8, 16)), 256, 15, 1e-2, 16, 0.035),
]


@pytest.mark.parametrize("name, build, n, epochs, lr, batch_size, threshold", LEARNING,
                         ids=[case[0] for case in LEARNING])
def test_autoencoder_learns_to_reconstruct_small_data(name, build, n, epochs, lr, batch_size, threshold):
    x = _digits(n)
    assert ((x - x.mean(axis=0)) ** 2).mean() > 0.06  # the best constant reconstruction
    model = build()
    before = _mse(model, x)
    after = _mse(_train(model, x, epochs, lr, batch_size), x)
    assert after < threshold, f"{name}: reconstruction MSE {after:.4f} (before training {before:.4f})"


def test_denoising_autoencoder_output_is_closer_to_the_clean_digits_than_its_input():
    model = DenoisingAutoencoder(DenseAutoencoder(32, hidden=(128,)), noise="gaussian", level=0.5)
    _train(model, _digits(1024), epochs=6, lr=3e-3, batch_size=32)
    clean = _digits(256, "test")  # digits it never saw
    noisy = model.corrupt(sg.tensor(clean))
    noisy_mse = float(((noisy.numpy() - clean) ** 2).mean())
    with sg.no_grad():
        denoised_mse = float(((model.reconstruct(noisy).numpy() - clean) ** 2).mean())
    assert denoised_mse < 0.6 * noisy_mse, f"noisy input {noisy_mse:.4f}, output {denoised_mse:.4f}"

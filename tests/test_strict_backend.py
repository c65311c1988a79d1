"""The strict backend (scratchgen/_strict.py): its arrays meet NumPy as CuPy's do, its module has only CuPy's
names, it catches a planted host leak by name, and it counts the host reads of a training step."""

import numpy as np
import pytest

import scratchgen as sg
from scratchgen import backend
from scratchgen.autograd import Function

CUPY_MESSAGE = "Implicit conversion to a NumPy array is not allowed"


@pytest.fixture
def strict():
    with sg.use_backend("strict"):
        sg.manual_seed(0)
        backend.strict_host_reads(reset=True)
        yield


def test_its_arrays_refuse_to_become_numpy_arrays_and_get_copies_them(strict):
    a = backend.asarray(np.arange(6.0).reshape(2, 3))
    assert backend.is_array(a) and not isinstance(a, np.ndarray)
    assert backend.device_of(a) == "device (strict)"
    for convert in (np.asarray, np.array, lambda x: x.__array__()):
        with pytest.raises(TypeError, match=CUPY_MESSAGE):
            convert(a)
    host = a.get()
    host[0, 0] = 99.0  # a copy: the device array keeps its value
    assert isinstance(host, np.ndarray) and backend.to_numpy(a)[0, 0] == 0.0


def test_mixing_with_a_numpy_array_is_a_type_error_either_way_round(strict):
    a, host = backend.xp.ones(3), np.ones(3)
    with pytest.raises(TypeError, match="NumPy \\(host\\) array of shape \\(3,\\)"):
        a + host
    with pytest.raises(TypeError, match="NumPy \\(host\\) array of shape \\(3,\\)"):
        host * a
    with pytest.raises(TypeError, match="cupy.maximum got a NumPy"):
        backend.xp.maximum(a, host)
    np.testing.assert_array_equal((a + 1.0 + np.float32(1)).get(), [3.0, 3.0, 3.0])  # scalars are fine
    np.testing.assert_array_equal(a[np.array([0, 2])].get(), [1.0, 1.0])  # host indices too, as on CuPy


def test_its_module_and_generator_have_only_names_cupy_has(strict):
    with pytest.raises(AttributeError, match="module 'cupy' has no attribute 'busday_count'"):
        backend.xp.busday_count  # noqa: B018 (NumPy has it, CuPy does not)
    with pytest.raises(AttributeError, match="'cupy.random.Generator' object has no attribute 'normal'"):
        backend.rng().normal  # noqa: B018
    with pytest.raises(AttributeError, match="'cupy.ndarray' object has no attribute 'ctypes'"):
        backend.xp.zeros(2).ctypes  # noqa: B018
    assert backend.rng().standard_normal((2, 3), dtype=np.float32).dtype == np.float32
    assert isinstance(backend.xp.zeros(2).sum(), backend.xp.ndarray)  # a 0-d device array, not a NumPy scalar


def test_host_reads_are_counted_and_device_work_is_not(strict):
    a = backend.xp.arange(4.0)
    b = (a * 2.0).sum() + backend.xp.exp(a).max()
    assert backend.strict_host_reads() == 0
    float(b), int(b), bool(b), b.item(), a.tolist(), a.get(), backend.to_numpy(a)
    assert backend.strict_host_reads(reset=True) == 7
    assert backend.strict_host_reads() == 0


class LeakyExp(Function):
    """exp(x), computed on the host: the leak the strict backend exists to catch."""

    def forward(self, x):
        return np.exp(x)

    def backward(self, grad):
        raise NotImplementedError


def test_a_planted_host_leak_fails_under_strict_naming_the_op_and_passes_unseen_on_numpy():
    x = np.array([0.0, 1.0])
    with sg.use_backend("numpy"):  # NumPy cannot see it
        np.testing.assert_allclose(LeakyExp.apply(sg.tensor(x)).numpy(), np.exp(x))
    with sg.use_backend("strict"):
        with pytest.raises(TypeError, match=r"leakyexp \(inputs of shapes \(2,\)\): numpy.exp was called on a "
                                            r"device array"):
            LeakyExp.apply(sg.tensor(x))


def test_where_takes_a_host_mask_on_a_device(strict):
    """A leak the strict backend found: sg.where passed a NumPy mask straight to xp.where, which CuPy refuses."""
    out = sg.where(np.array([True, False]), sg.tensor([1.0, 2.0]), 0.0)
    np.testing.assert_array_equal(out.numpy(), [1.0, 0.0])


# ------------------------------------------------------------------ host reads of a training step


def _steps_and_reads(train) -> tuple:
    """Run ``train()`` (which returns its number of steps); the steps and the host reads they made."""
    backend.strict_host_reads(reset=True)
    steps = train()
    return steps, backend.strict_host_reads(reset=True)


def test_the_classifier_loop_reads_the_host_once_per_step(strict):
    from scratchgen.models.classifier import MLPClassifier, train_classifier

    images = backend.asarray(np.random.default_rng(0).random((96, 28, 28), dtype=np.float32))
    labels = backend.asarray(np.arange(96) % 10)

    def train():
        train_classifier(MLPClassifier(hidden=(16,)), images, labels, epochs=2, batch_size=32)
        return 2 * 3

    steps, reads = _steps_and_reads(train)
    assert reads == steps, f"{reads} host reads in {steps} steps: check_finite reads each step's loss, once"


def test_the_vae_loop_reads_the_host_once_per_step(strict):
    from scratchgen import optim
    from scratchgen.models.vae import DenseVAE
    from scratchgen.train import minimise_epoch

    model = DenseVAE(hidden=16, latent_dim=4)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    x = sg.tensor((np.random.default_rng(0).random((64, 1, 28, 28)) < 0.5).astype(np.float32))
    batches = [(x[i:i + 16],) for i in range(0, 64, 16)]

    def train():
        minimise_epoch(lambda batch: model.loss(batch).loss, batches, opt, epoch=1)
        return len(batches)

    steps, reads = _steps_and_reads(train)
    assert reads == steps, f"{reads} host reads in {steps} steps: check_finite reads each step's loss, once"


def test_a_gan_iteration_reads_nothing_back(strict):
    from scratchgen import optim
    from scratchgen.models.gan import GANTrainer, MLPDiscriminator, MLPGenerator

    generator, discriminator = MLPGenerator(latent_dim=2, out_shape=(2,), hidden=(8,)), MLPDiscriminator((2,), (8,))
    trainer = GANTrainer(generator, discriminator, optim.Adam(generator.parameters(), lr=1e-3),
                         optim.Adam(discriminator.parameters(), lr=1e-3), k=2)
    real = backend.rng().standard_normal((16, 2), dtype=np.float32)

    def train():
        for _ in range(3):
            trainer.train_iteration(lambda: sg.tensor(real))
        return 3

    _, reads = _steps_and_reads(train)
    assert reads == 0, f"GANTrainer.train_iteration read the host {reads} times; its statistics stay on the device"


def test_the_gan_demo_reads_the_host_once_per_point_of_its_curves(strict, tmp_path):
    # 250 iterations log 3 points (every 100 iterations and at the epoch's end): one read each, the table
    # of the window's statistics, from which the divergence check and the curves both come.
    from types import SimpleNamespace

    from conftest import load_demo

    demo = load_demo("gan")
    args = demo.parse_args(["--dataset", "ring8", "--iterations-per-epoch", "250", "--batch-size", "20",
                            "--out", str(tmp_path)])
    trainer = demo.build(args)
    mixture = sg.data.ring8_mixture()
    real = sg.tensor(mixture.sample(20, rng=0))
    run = SimpleNamespace(state={"curves": {"epoch": []}}, progress=lambda steps, epoch: steps)

    def train():
        demo.train_epoch(args, run, trainer, lambda: real, total=250, epoch=1)
        return 250

    _, reads = _steps_and_reads(train)
    assert reads == 3 and len(run.state["curves"]["epoch"]) == 3, f"{reads} host reads for 3 logged points"

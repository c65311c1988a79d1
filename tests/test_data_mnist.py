"""load_mnist (the embedded subset; full datasets placed by hand or from a file:// mirror) and the pixel forms."""

import dataclasses
import hashlib
import shutil

import numpy as np
import pytest

import scratchgen as sg
from scratchgen.data import (
    DataLoader, DownloadError, bernoulli_pixels, binarize, binarize_stochastic, load_mnist, scored_pixels, to_float,
    write_idx,
)
from scratchgen.data import download, mnist

EMBEDDED_SHA256 = "bbe2f0f7ba51aaf766c97e62b2316a027e91502a842c8abdbe45fde632c8f756"


def test_the_shipped_file_is_the_published_one():
    assert hashlib.sha256(mnist.EMBEDDED_PATH.read_bytes()).hexdigest() == EMBEDDED_SHA256
    assert mnist.EMBEDDED_SHA256 == EMBEDDED_SHA256
    assert (mnist.EMBEDDED_PATH.parent / "README.md").read_text().count("CC BY-SA 3.0") >= 1


@pytest.mark.parametrize("split, per_class", [("train", 400), ("test", 100)])
def test_embedded_shapes_dtypes_and_class_balance(split, per_class):
    images, labels = load_mnist(split=split)
    assert images.shape == (10 * per_class, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10 * per_class,) and labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(labels, minlength=10), [per_class] * 10)
    assert images.min() == 0 and images.max() == 255
    assert 0.10 < (images > 127).mean() < 0.16  # digits are thin strokes on a dark background
    assert len(np.unique(labels[:50])) > 5  # shuffled, not sorted by class


def test_embedded_splits_do_not_share_an_image():
    train, _ = load_mnist(split="train")
    test, _ = load_mnist(split="test")
    assert not {x.tobytes() for x in train} & {x.tobytes() for x in test}


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "cifar"}, "unknown dataset 'cifar'"),
    ({"split": "validation"}, "unknown split 'validation'"),
])
def test_bad_names_are_explained(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_mnist(**kwargs)


@pytest.fixture
def fake_full_mnist(tmp_path, rng, monkeypatch):
    """Small fake MNIST files in a folder, with the dataset table pointing at their checksums."""
    arrays = {
        "train-images-idx3-ubyte.gz": rng.integers(0, 256, (5, 28, 28)).astype(np.uint8),
        "train-labels-idx1-ubyte.gz": rng.integers(0, 10, 5).astype(np.uint8),
        "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (2, 28, 28)).astype(np.uint8),
        "t10k-labels-idx1-ubyte.gz": rng.integers(0, 10, 2).astype(np.uint8),
    }
    folder = tmp_path / "files"
    folder.mkdir()
    for name, array in arrays.items():
        write_idx(folder / name, array)
    table = {name: (download.sha256_of(folder / name), None) for name in arrays}
    monkeypatch.setitem(download.DATASETS, "mnist", dataclasses.replace(download.DATASETS["mnist"], files=table))
    return arrays, folder


def test_full_dataset_placed_by_hand_loads_offline(tmp_path, fake_full_mnist):
    arrays, folder = fake_full_mnist
    shutil.copytree(folder, tmp_path / "cache" / "mnist")
    images, labels = load_mnist("mnist", "train", cache_dir=tmp_path / "cache", download=False)
    np.testing.assert_array_equal(images, arrays["train-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(labels, arrays["train-labels-idx1-ubyte.gz"])
    assert labels.dtype == np.int64


def test_full_dataset_from_a_mirror_url(tmp_path, fake_full_mnist):
    arrays, folder = fake_full_mnist
    images, labels = load_mnist("mnist", "test", cache_dir=tmp_path / "cache", base_url=folder.as_uri())
    np.testing.assert_array_equal(images, arrays["t10k-images-idx3-ubyte.gz"])
    np.testing.assert_array_equal(labels, arrays["t10k-labels-idx1-ubyte.gz"])
    assert (tmp_path / "cache" / "mnist" / "t10k-images-idx3-ubyte.gz").exists()


def test_files_that_do_not_fit_together_are_refused(tmp_path, fake_full_mnist, monkeypatch):
    _, folder = fake_full_mnist
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.zeros(3, dtype=np.uint8))  # 3 labels for 2 images
    table = dict(download.DATASETS["mnist"].files)
    table["t10k-labels-idx1-ubyte.gz"] = (download.sha256_of(folder / "t10k-labels-idx1-ubyte.gz"), None)
    monkeypatch.setitem(download.DATASETS, "mnist", dataclasses.replace(download.DATASETS["mnist"], files=table))
    with pytest.raises(ValueError, match=r"labels \(3,\)"):
        load_mnist("mnist", "test", cache_dir=tmp_path / "cache", base_url=folder.as_uri())


def test_real_dataset_missing_offline_says_what_to_place_where(tmp_path):
    with pytest.raises(DownloadError) as info:
        load_mnist("fashion_mnist", "train", cache_dir=tmp_path, download=False)
    message = str(info.value)
    assert str(tmp_path / "fashion_mnist") in message
    assert "train-images-idx3-ubyte.gz" in message and "train-labels-idx1-ubyte.gz" in message


# ------------------------------------------------------------------------------------- pixel forms


def test_to_float_is_division_by_255():
    images = np.array([[0, 1, 127], [128, 254, 255]], dtype=np.uint8)
    floats = to_float(images)
    assert floats.dtype == np.float32
    np.testing.assert_array_equal(floats, images.astype(np.float32) / np.float32(255))
    assert floats.min() == 0.0 and floats.max() == 1.0


def test_binarize_is_strictly_above_the_threshold():
    images = np.array([0, 100, 127, 128, 200, 255], dtype=np.uint8)
    np.testing.assert_array_equal(binarize(images), [0, 0, 0, 1, 1, 1])
    np.testing.assert_array_equal(binarize(images, threshold=100), [0, 0, 1, 1, 1, 1])
    assert binarize(images).dtype == np.float32
    np.testing.assert_array_equal(binarize(to_float(images), threshold=0.5), [0, 0, 0, 1, 1, 1])
    with pytest.raises(ValueError, match="0..255 scale"):
        binarize(to_float(images))


def test_binarize_stochastic_has_the_intensity_as_mean():
    probabilities = np.repeat(np.array([0.0, 0.1, 0.5, 0.9, 1.0], dtype=np.float32), 40000).reshape(5, -1)
    samples = binarize_stochastic(probabilities, rng=0)
    assert samples.dtype == np.float32 and set(np.unique(samples)) <= {0.0, 1.0}
    means = samples.mean(axis=1)
    tolerance = 5 * np.sqrt(0.25 / 40000)  # five binomial standard errors at the worst case p = 1/2
    np.testing.assert_allclose(means, [0.0, 0.1, 0.5, 0.9, 1.0], atol=tolerance)
    assert means[0] == 0.0 and means[-1] == 1.0  # certain pixels are never flipped


def test_binarize_stochastic_is_reproducible():
    x = to_float(load_mnist(split="test")[0][:8])
    np.testing.assert_array_equal(binarize_stochastic(x, rng=3), binarize_stochastic(x, rng=np.random.default_rng(3)))
    assert not np.array_equal(binarize_stochastic(x, rng=3), binarize_stochastic(x, rng=4))
    sg.manual_seed(7)
    first = sg.backend.to_numpy(binarize_stochastic(x))
    sg.manual_seed(7)
    np.testing.assert_array_equal(sg.backend.to_numpy(binarize_stochastic(x)), first)
    with pytest.raises(TypeError, match="to_float"):
        binarize_stochastic(load_mnist(split="test")[0])


def test_dynamic_binarisation_draws_new_digits_each_epoch_with_the_grey_levels_as_means():
    images = load_mnist(split="train")[0][:20]
    grey = bernoulli_pixels(images, "train", "dynamic")  # the demos' training data: intensities to draw from
    np.testing.assert_array_equal(grey, to_float(images))
    loader = DataLoader(grey, batch_size=10)  # the same grey levels, in the same order, every epoch
    epochs = np.stack([np.concatenate([binarize_stochastic(x).numpy() for (x,) in loader]) for _ in range(400)])
    assert set(np.unique(epochs)) == {0.0, 1.0}
    assert not np.array_equal(epochs[0], epochs[1])
    uncertain = (grey > 0) & (grey < 1)
    z = (epochs.mean(axis=0) - grey)[uncertain] / np.sqrt(grey * (1 - grey) / 400)[uncertain]
    assert np.abs(z).max() < 6 and abs(z.mean()) < 5 / np.sqrt(z.size)  # each pixel's mean is its grey level
    assert np.all(epochs[:, grey == 0] == 0) and np.all(epochs[:, grey == 1] == 1)


def test_bernoulli_pixels_binarise_the_test_split_once_by_one_fixed_draw():
    images = load_mnist(split="test")[0]
    np.testing.assert_array_equal(bernoulli_pixels(images, "test"), binarize(images))  # threshold: the default
    np.testing.assert_array_equal(bernoulli_pixels(images, "train", "threshold"), binarize(images))
    sg.manual_seed(5)
    fixed = bernoulli_pixels(images, "test", "dynamic")
    sg.manual_seed(6)  # the draw does not follow the run's seed: every run is tested on the same digits
    np.testing.assert_array_equal(bernoulli_pixels(images, "test", "dynamic"), fixed)
    np.testing.assert_array_equal(bernoulli_pixels(images[:7], "test", "dynamic"), fixed[:7])  # --limit keeps it
    assert set(np.unique(fixed)) == {0.0, 1.0} and fixed.dtype == np.float32
    p = to_float(images)
    assert abs(fixed.mean() - p.mean()) < 5 * np.sqrt((p * (1 - p)).sum()) / p.size
    assert not np.array_equal(fixed, binarize(images))
    with pytest.raises(ValueError, match="'fixed'"):
        bernoulli_pixels(images, "test", "fixed")


def test_scored_pixels_are_the_training_digits_drawn_as_the_test_digits_are():
    images = load_mnist(split="train")[0][:50]
    binary = bernoulli_pixels(images, "train", "threshold")
    assert scored_pixels(binary, "threshold") is binary  # already what is scored
    grey = bernoulli_pixels(images, "train", "dynamic")
    sg.manual_seed(3)  # not the run's stream: one fixed draw, the test split's
    np.testing.assert_array_equal(scored_pixels(grey, "dynamic"), bernoulli_pixels(images, "test", "dynamic"))


def test_pixel_forms_take_and_give_tensors_on_the_active_backend(backend):
    images = load_mnist(split="test")[0][:4]
    t = sg.tensor(images)
    for result in (to_float(t), binarize(t), binarize_stochastic(to_float(t))):
        assert isinstance(result, sg.Tensor) and sg.backend.is_array(result.data)
        assert result.dtype == np.float32 and result.shape == (4, 28, 28)
    np.testing.assert_array_equal(to_float(t).numpy(), to_float(images))
    np.testing.assert_array_equal(binarize(t).numpy(), binarize(images))

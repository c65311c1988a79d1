"""Pictures: each function writes a valid PNG atomically; image conversion and tiling are right."""

import os

import numpy as np
import pytest
from matplotlib.image import imread

import scratchgen as sg
from scratchgen import plot
from scratchgen.data import ring8_mixture
from scratchgen.train import History

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _assert_png(path, min_size=(100, 100)):
    """A PNG file, at least min_size (height, width) pixels, and nothing else left in its folder."""
    with open(path, "rb") as file:
        assert file.read(8) == PNG_MAGIC
    pixels = imread(path)
    assert pixels.ndim == 3 and pixels.shape[0] >= min_size[0] and pixels.shape[1] >= min_size[1], pixels.shape
    assert pixels.std() > 0, "a blank picture"
    assert [f for f in os.listdir(os.path.dirname(path)) if f.endswith(".tmp")] == []
    return pixels


def _digits(n=16, seed=0):
    return np.random.default_rng(seed).random((n, 28, 28), dtype=np.float32)


# ---------------------------------------------------------------------------- converting and tiling


@pytest.mark.parametrize("make", [
    lambda x: x,
    lambda x: x[:, None],
    lambda x: x.reshape(len(x), -1),
    lambda x: sg.tensor(x[:, None]),
])
def test_images_of_every_layout_become_n_h_w(make):
    x = _digits(5)
    np.testing.assert_array_equal(plot._as_images(make(x), (0.0, 1.0), "test"), x)


def test_value_range_maps_to_black_and_white_and_clips():
    x = np.array([[[-1.0, 0.0, 1.0, 3.0]]], np.float32)
    np.testing.assert_allclose(plot._as_images(x, (-1.0, 1.0), "test"), [[[0.0, 0.5, 1.0, 1.0]]])


def test_colour_images_become_channels_last():
    x = np.random.default_rng(0).random((2, 3, 4, 5))
    assert plot._as_images(x, (0, 1), "test").shape == (2, 4, 5, 3)


def test_bad_image_shape_is_named():
    with pytest.raises(ValueError, match=r"image_grid: images of shape \(4, 10\)"):
        plot.image_grid(np.zeros((4, 10)), "unused.png")


def test_tile_places_images_row_by_row():
    images = np.stack([np.full((2, 3), i, np.float32) for i in range(5)])
    canvas = plot._tile(images, nrow=2, pad=1)
    assert canvas.shape == (3 * 3 + 1, 2 * 4 + 1)
    for i in range(5):
        r, c = divmod(i, 2)
        np.testing.assert_array_equal(canvas[1 + 3 * r:3 + 3 * r, 1 + 4 * c:4 + 4 * c], i)
    assert canvas[0, 0] == 0.5 and canvas[7, 5] == 0.5  # padding, and the empty sixth slot


# ------------------------------------------------------------------------------- each picture


def test_image_grid(tmp_path):
    path = plot.image_grid(sg.tensor(_digits() * 2 - 1), tmp_path / "grid.png", nrow=8, title="samples",
                           value_range=(-1, 1))
    assert path == str(tmp_path / "grid.png")
    pixels = _assert_png(path)
    assert pixels.shape[1] > 2 * pixels.shape[0] * 0.8  # 8 per row, 2 rows: wider than tall


def test_reconstructions(tmp_path):
    x = _digits(9)
    _assert_png(plot.reconstructions(x, x.reshape(9, 784) * 0.5, tmp_path / "recon.png"))
    with pytest.raises(ValueError, match="differ in shape"):
        plot.reconstructions(x, x[:4], tmp_path / "bad.png")


@pytest.mark.parametrize("as_input", ["history", "records", "columns"])
def test_loss_curves(tmp_path, as_input):
    history = History()
    for epoch in range(1, 6):
        history.log(epoch, loss=1 / epoch, **({"val_loss": 2 / epoch} if epoch % 2 else {}))
    given = {"history": history, "records": history.records, "columns": history.as_dict()}[as_input]
    _assert_png(plot.loss_curves(given, tmp_path / "loss.png", logy=True))
    assert plot._curves(given) == {"loss": ([1, 2, 3, 4, 5], [1, 0.5, 1 / 3, 0.25, 0.2]),
                                   "val_loss": ([1, 3, 5], [2.0, 2 / 3, 0.4])}
    with pytest.raises(KeyError, match="kl"):
        plot.loss_curves(given, tmp_path / "x.png", keys=["kl"])


def test_loss_curves_of_plain_lists(tmp_path):
    _assert_png(plot.loss_curves({"d_loss": [1.0, 0.8, 0.9], "g_loss": [2.0, 1.5]}, tmp_path / "gan.png"))


def test_scatter_over_density_with_a_function_or_a_grid(tmp_path):
    mixture = ring8_mixture()
    samples = mixture.sample(300, rng=np.random.default_rng(0))
    _assert_png(plot.scatter_over_density(samples, tmp_path / "ring.png", mixture.log_prob, bounds=(-1.5, 1.5)))
    grid = np.zeros((50, 50))
    _assert_png(plot.scatter_over_density(sg.tensor(samples), tmp_path / "flat.png", grid, bounds=(-1.5, 1.5),
                                          title="samples"))
    _assert_png(plot.scatter_over_density(samples, tmp_path / "dots.png"))


def test_density_grid_evaluates_the_function_on_the_right_points():
    seen = {}

    def log_density(points):
        seen["dtype"] = points.dtype
        return sg.tensor(points[:, 0] + 10 * points[:, 1])  # a Tensor is fine too

    grid = plot._density_grid(log_density, ((0, 1), (2, 3)), 3)
    assert seen["dtype"] == np.float32
    np.testing.assert_allclose(np.log(grid[0]), [20, 20.5, 21], rtol=1e-6)  # bottom row: y = 2
    np.testing.assert_allclose(np.log(grid[:, 0]), [20, 25, 30], rtol=1e-6)  # left column: x = 0


def test_density_comparison(tmp_path):
    mixture = ring8_mixture(std=0.1)

    def learned(points):  # a standard normal
        return -0.5 * (points ** 2).sum(axis=1) - np.log(2 * np.pi)

    _assert_png(plot.density_comparison(mixture.log_prob, learned, tmp_path / "compare.png", bounds=(-2, 2),
                                        samples=mixture.sample(100, rng=np.random.default_rng(1))))


@pytest.mark.parametrize("dims", [2, 5])
def test_latent_scatter(tmp_path, dims):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 200)
    codes = rng.standard_normal((200, dims)) + labels[:, None]
    _assert_png(plot.latent_scatter(codes, labels, tmp_path / "latent.png"))
    _assert_png(plot.latent_scatter(sg.tensor(codes), None, tmp_path / "unlabelled.png"))


def test_latent_scatter_needs_two_dimensions(tmp_path):
    with pytest.raises(ValueError, match=r"\(10, 1\)"):
        plot.latent_scatter(np.zeros((10, 1)), None, tmp_path / "x.png")


def test_manifold_decodes_a_grid_laid_out_like_a_scatter_plot(tmp_path):
    calls = []

    def decoder(z):
        calls.append(z)
        return sg.tensor(np.repeat((z[:, :1] + 2) / 4, 28 * 28, axis=1))  # (25, 784), brightness from z1

    _assert_png(plot.manifold(decoder, tmp_path / "manifold.png", grid=5, bounds=(-2, 2)))
    z = calls[0]
    assert z.shape == (25, 2) and z.dtype == np.float32
    np.testing.assert_allclose(z[:5, 0], [-2, -1, 0, 1, 2])  # z1 increases along a row
    np.testing.assert_allclose(z[::5, 1], [2, 1, 0, -1, -2])  # z2 decreases down the picture


def test_manifold_axes_are_in_z_with_each_image_centred_on_its_code(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plot, "save_figure", lambda fig, path, title=None: figures.append(fig) or str(path))
    plot.manifold(lambda z: np.zeros((len(z), 784), np.float32), tmp_path / "m.png", grid=5, bounds=(-2, 2),
                  title="a title")
    ax = figures[0].axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel(), ax.get_title()) == ("$z_1$", "$z_2$", "a title")
    (left, right), (bottom, top) = ax.get_xlim(), ax.get_ylim()
    width = 5 * (28 + 2) + 2  # five 28-pixel images, 2 pixels around each
    centres = [left + (2 + j * 30 + 14) * (right - left) / width for j in range(5)]
    np.testing.assert_allclose(centres, [-2, -1, 0, 1, 2], atol=1e-9)  # column j's image sits over z1 = its code
    assert top == pytest.approx(-bottom) and right == pytest.approx(-left)


def test_scatter_over_training_marks_the_modes(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(plot, "save_figure", lambda fig, path, title=None: figures.append(fig) or str(path))
    mixture = ring8_mixture()
    snapshots = [(step, mixture.sample(50)) for step in (100, 200, 300)]
    plot.scatter_over_training(snapshots, tmp_path / "t.png", bounds=(-1.5, 1.5), label="iteration",
                               modes=mixture.means)
    axes = figures[0].axes
    assert [ax.get_title() for ax in axes] == ["iteration 100", "iteration 200", "iteration 300"]
    # Each panel: the samples, then the 8 centres on top.
    assert all(len(ax.collections) == 2 and len(ax.collections[1].get_offsets()) == 8 for ax in axes)
    monkeypatch.undo()
    _assert_png(plot.scatter_over_training(snapshots, tmp_path / "t.png", modes=mixture.means))


def test_curve_panels(tmp_path):
    panels = {"score": {"a": ([1, 2, 3], [0.5, 0.4, 0.1]), "b": ([1, 2], [0.5, 0.5])},
              "norm": {"a": ([1, 2, 3], [1.0, 1e-3, 1e-5]), "b": ([1, 2], [1.0, 2.0])}}
    pixels = _assert_png(plot.curve_panels(panels, tmp_path / "c.png", logy=("norm",), title="two runs"))
    assert pixels.shape[1] > 1.5 * pixels.shape[0]


def test_callbacks_run_without_recording_a_graph(tmp_path):
    w = sg.tensor(np.ones((2, 784), np.float32), requires_grad=True)
    recorded = []
    plot.manifold(lambda z: recorded.append((sg.tensor(z) @ w).requires_grad) or (sg.tensor(z) @ w).sigmoid(),
                  tmp_path / "m.png", grid=3)
    assert recorded == [False]


def test_nearest_training_puts_each_sample_above_its_neighbour(tmp_path, monkeypatch):
    train = _digits(40)
    samples = sg.tensor(train[[3, 17, 5, 29, 0, 11, 8]] * 0.9)  # near copies, in a short last row of 3
    shown, tile = [], plot._tile

    def recording_tile(images, nrow, pad=2):  # keeps what each group's canvas was made of
        shown.append(images)
        return tile(images, nrow, pad)

    monkeypatch.setattr(plot, "_tile", recording_tile)
    path = plot.nearest_training(samples, train[:, None], tmp_path / "nn.png", count=7, nrow=4)
    _assert_png(path)
    upper, lower = shown[1][:4], shown[1][4:]  # the second group: 3 samples and a blank, then their neighbours
    np.testing.assert_allclose(upper[:3], train[[0, 11, 8]] * 0.9, rtol=1e-6)
    np.testing.assert_array_equal(lower[:3], train[[0, 11, 8]])
    assert np.all(upper[3] == 0.5) and np.all(lower[3] == 0.5)


def test_interpolation_strip(tmp_path):
    rows = [_digits(7, seed=i) for i in range(3)]
    pixels = _assert_png(plot.interpolation_strip(rows, tmp_path / "interp.png"))
    assert pixels.shape[1] > 2 * pixels.shape[0]
    _assert_png(plot.interpolation_strip(np.stack(rows)[:, :, None], tmp_path / "interp4d.png"))


def test_samples_over_training(tmp_path):
    snapshots = [(epoch, sg.tensor(_digits(8, seed=epoch) * 2 - 1)) for epoch in (1, 5, 10)]
    pixels = _assert_png(plot.samples_over_training(snapshots, tmp_path / "gan.png", value_range=(-1, 1)))
    assert pixels.shape[1] > pixels.shape[0]


def test_suffix_picks_the_format(tmp_path):
    path = plot.image_grid(_digits(4), tmp_path / "grid.pdf")
    with open(path, "rb") as file:
        assert file.read(5) == b"%PDF-"


def test_toy_density_frame_is_square_around_the_points_and_exact_for_a_mixture():
    from scratchgen.data import TOYS

    points = np.array([[0.0, 0.0], [2.0, 1.0]])
    sampler, mixture = TOYS["ring8"]
    bounds, density, title = plot.toy_density_frame(points, mixture)
    np.testing.assert_allclose(bounds, ((-0.2, 2.2), (-0.7, 1.7)))  # centred, 1.2 times the wider spread
    assert density == mixture.log_prob and title == "true density"
    sampler, _ = TOYS["two_moons"]
    bounds, density, title = plot.toy_density_frame(points, None, sampler, seed=0)
    assert density.shape == (150, 150) and title == "true density (histogram)"

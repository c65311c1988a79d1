"""Pictures of what a generative model has learned, written as PNG files with Matplotlib.

Each function draws one kind of picture, writes it atomically (see
:func:`scratchgen.checkpoint.atomic_write`) and returns the path it wrote:

* :func:`image_grid`: a grid of images (samples, a batch of data);
* :func:`reconstructions`: originals beside an autoencoder's reconstructions;
* :func:`nearest_training`: samples above their nearest training images, a check for memorisation;
* :func:`loss_curves`: metrics per epoch from a :class:`~scratchgen.train.History`; :func:`curve_panels`,
  several runs' curves on several measures, one panel per measure;
* :func:`scatter_over_density`: 2-D samples over the true density, for the toy distributions;
* :func:`density_comparison`: a learned density beside the true one;
* :func:`latent_scatter`: codes of a 2-D latent space, coloured by label;
* :func:`manifold`: images decoded from a grid of 2-D latents (Kingma & Welling 2014, fig. 4);
* :func:`interpolation_strip`: rows of images decoded along paths between two codes;
* :func:`samples_over_training`: the same noise through the generator at several epochs, a GAN learning
  over time (after Goodfellow et al. 2014, fig. 2); :func:`scatter_over_training`, the same for 2-D samples;
* :func:`histogram_log_density`: a density from many samples, for toys without a closed form.

We use Matplotlib's object-oriented API (``matplotlib.figure.Figure``), not ``pyplot``: a figure made
this way belongs to no window and no global state, so it needs no display and no backend switch, and
is freed as soon as the function returns.

Images may be NumPy arrays, CuPy arrays or Tensors, shaped (N, H, W), (N, 1, H, W), (N, 3, H, W) or
flattened (N, H·W) with square images; ``value_range`` says what black and white are: (0, 1) for
sigmoid outputs and pixel probabilities, (-1, 1) for a tanh generator. Functions passed in (densities,
decoders) receive host NumPy float32 arrays, run without recording a graph, and may return NumPy
arrays or Tensors.
"""

from __future__ import annotations

import math
import os

import numpy
from matplotlib.figure import Figure

from scratchgen import backend
from scratchgen.autograd import no_grad
from scratchgen.checkpoint import atomic_write
from scratchgen.metrics import nearest_training_images
from scratchgen.train import History

__all__ = [
    "image_grid", "reconstructions", "loss_curves", "scatter_over_density", "density_comparison",
    "latent_scatter", "manifold", "interpolation_strip", "samples_over_training", "scatter_over_training",
    "histogram_log_density", "curve_panels", "nearest_training", "save_figure",
]

_PIXELS_PER_INCH = 40  # an MNIST digit becomes about 0.7 inch: readable without huge files


# ------------------------------------------------------------------------------------ shared helpers


def _call(fn, points: numpy.ndarray) -> numpy.ndarray:
    """``fn(points)`` outside autograd, as a host array."""
    with no_grad():
        return backend.to_numpy(fn(points.astype(numpy.float32)))


def _as_images(images, value_range, where: str) -> numpy.ndarray:
    """Images as (N, H, W) or (N, H, W, 3) floats in [0, 1] (0 black, 1 white)."""
    x = backend.to_numpy(images).astype(numpy.float32)
    if x.ndim == 2 and math.isqrt(x.shape[1]) ** 2 == x.shape[1]:
        x = x.reshape(len(x), math.isqrt(x.shape[1]), -1)
    elif x.ndim == 4 and x.shape[1] == 1:
        x = x[:, 0]
    elif x.ndim == 4 and x.shape[1] == 3:
        x = x.transpose(0, 2, 3, 1)
    elif x.ndim != 3:
        raise ValueError(f"{where}: images of shape {x.shape}; expected (N, H, W), (N, 1, H, W), (N, 3, H, W) "
                         f"or (N, H*W) with square images")
    low, high = value_range
    return numpy.clip((x - low) / (high - low), 0.0, 1.0)


def _tile(images: numpy.ndarray, nrow: int, pad: int = 2) -> numpy.ndarray:
    """One array with ``nrow`` images per row (the last row may be short), on a grey background."""
    n, h, w = images.shape[:3]
    rows = math.ceil(n / nrow)
    canvas = numpy.full((rows * (h + pad) + pad, nrow * (w + pad) + pad) + images.shape[3:], 0.5, numpy.float32)
    for i, image in enumerate(images):
        r, c = divmod(i, nrow)
        canvas[pad + r * (h + pad):(r + 1) * (h + pad), pad + c * (w + pad):(c + 1) * (w + pad)] = image
    return canvas


def _show(ax, canvas: numpy.ndarray, label: str | None = None) -> None:
    """Draw a tiled canvas with no ticks or frame; ``label`` goes on the left."""
    ax.imshow(canvas, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_visible(False)
    if label:
        ax.set_ylabel(label, rotation=0, ha="right", va="center")


def _image_figure(canvas: numpy.ndarray, panels: int = 1, rows: int = 1) -> Figure:
    height, width = canvas.shape[:2]
    return Figure(figsize=(max(2.5, panels * width / _PIXELS_PER_INCH), max(1.0, rows * height / _PIXELS_PER_INCH)))


def save_figure(fig: Figure, path, title: str | None = None) -> str:
    """Write ``fig`` atomically (a crash leaves the old file or none, never half of one), in the format the
    suffix names (PNG by default), under ``title`` if given; return the path. Every picture of the library
    and the demos is written by it."""
    if title:
        fig.suptitle(title)
    suffix = os.path.splitext(os.fspath(path))[1].lstrip(".").lower()
    with atomic_write(path) as file:
        fig.savefig(file, format=suffix or "png", dpi=100, bbox_inches="tight")
    return os.fspath(path)


def _bounds(bounds, points=None, margin: float = 0.1):
    """((x0, x1), (y0, y1)) from ``bounds`` given as (low, high) for both axes, as a pair of pairs,
    or, when None, from the points' extent plus a margin."""
    if bounds is None:
        if points is None:
            raise ValueError("bounds are needed when there are no samples to take them from")
        low, high = points.min(axis=0), points.max(axis=0)
        pad = margin * numpy.maximum(high - low, 1e-6)
        return tuple((float(lo), float(hi)) for lo, hi in zip(low - pad, high + pad))
    if numpy.ndim(bounds) == 1:
        return (tuple(bounds), tuple(bounds))
    return tuple(tuple(b) for b in bounds)


def _points(samples, where: str) -> numpy.ndarray:
    points = backend.to_numpy(samples)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"{where}: samples of shape {points.shape}; expected (N, 2)")
    return points


def _density_grid(log_density, bounds, grid_size: int) -> numpy.ndarray:
    """p(x, y) on a grid_size x grid_size grid over ``bounds`` (row 0 at the bottom), from a function
    giving log-densities of (M, 2) points, or from a (grid, grid) array of log-densities."""
    if not callable(log_density):
        return numpy.exp(backend.to_numpy(log_density))
    (x0, x1), (y0, y1) = bounds
    xx, yy = numpy.meshgrid(numpy.linspace(x0, x1, grid_size), numpy.linspace(y0, y1, grid_size))
    log_p = _call(log_density, numpy.stack([xx.ravel(), yy.ravel()], axis=1))
    return numpy.exp(log_p.reshape(grid_size, grid_size))


# ---------------------------------------------------------------------------------------- images


def image_grid(images, path, nrow: int | None = None, title: str | None = None, value_range=(0.0, 1.0)) -> str:
    """A grid of images, ``nrow`` per row (about square by default).

    Args:
        images: (N, H, W), (N, C, H, W) or (N, H*W).
    """
    x = _as_images(images, value_range, "image_grid")
    canvas = _tile(x, nrow or math.ceil(math.sqrt(len(x))))
    fig = _image_figure(canvas)
    _show(fig.add_subplot(), canvas)
    return save_figure(fig, path, title)


def reconstructions(originals, reconstructed, path, nrow: int | None = None, title: str | None = None,
                    value_range=(0.0, 1.0)) -> str:
    """Originals (left) beside their reconstructions (right), in the same grid positions."""
    x = _as_images(originals, value_range, "reconstructions")
    y = _as_images(reconstructed, value_range, "reconstructions")
    if x.shape != y.shape:
        raise ValueError(f"reconstructions: originals {x.shape} and reconstructions {y.shape} differ in shape")
    nrow = nrow or math.ceil(math.sqrt(len(x)))
    canvases = _tile(x, nrow), _tile(y, nrow)
    fig = _image_figure(canvases[0], panels=2)
    for ax, canvas, name in zip(fig.subplots(1, 2), canvases, ("original", "reconstruction")):
        _show(ax, canvas)
        ax.set_title(name)
    return save_figure(fig, path, title)


def nearest_training(samples, train, path, count: int = 16, nrow: int = 8, title: str | None = None) -> str:
    """The first ``count`` samples (upper row of each pair of rows) above their nearest training images
    (lower row), each neighbour labelled with its Euclidean distance in pixels (see
    :func:`scratchgen.metrics.nearest_training_images`): a model that copies its training set shows
    twins at distance 0 (Bozkurt et al. 2018 ask every sampler for this picture).

    Args:
        samples: (N, ...) images in [0, 1], in the same form as ``train`` (binary beside binary).
        train: (M, ...) the training images, in [0, 1].
        count: samples shown. nrow: pairs per row.
    """
    shown = samples[:count]
    distances, indices = nearest_training_images(shown, train)
    x = _as_images(shown, (0.0, 1.0), "nearest_training")
    y = _as_images(backend.to_numpy(train)[indices], (0.0, 1.0), "nearest_training")
    groups = math.ceil(len(x) / nrow)
    pad, (height, width) = 2, x.shape[1:3]
    fig = Figure(figsize=(max(2.5, nrow * (width + pad) / _PIXELS_PER_INCH),
                          groups * 2.6 * (height + pad) / _PIXELS_PER_INCH), layout="constrained")
    for g, ax in enumerate(fig.subplots(groups, 1, squeeze=False)[:, 0]):
        part = slice(g * nrow, (g + 1) * nrow)
        blank = numpy.full((nrow - len(x[part]),) + x.shape[1:], 0.5, numpy.float32)  # a short last group
        canvas = _tile(numpy.concatenate([x[part], blank, y[part], blank]), nrow, pad)
        _show(ax, canvas)
        # The distances as tick labels under the neighbours, the rows' names on the left: both are laid out
        # by Matplotlib, clear of the next group.
        centres = pad + (width + pad) * numpy.arange(len(x[part])) + width / 2
        ax.set_xticks(centres, [f"{d:.1f}" for d in distances[part]], fontsize="x-small")
        ax.set_yticks([pad + height / 2, 2 * pad + 1.5 * height], ["sample", "nearest\ntraining"], fontsize="small")
        ax.tick_params(length=0)
    title = title or (f"{len(x)} samples above their nearest training images (Euclidean distance below; "
                      f"median {numpy.median(distances):.1f})")
    return save_figure(fig, path, title)


def interpolation_strip(rows, path, title: str | None = None, value_range=(0.0, 1.0)) -> str:
    """Rows of images, each a walk from one code to another decoded step by step (left to right).

    Args:
        rows: (R, K, H, W) (or (R, K, 1, H, W), (R, K, H*W)), or a list of R arrays of K images.
    """
    rows = [backend.to_numpy(row) for row in rows]
    steps = len(rows[0])
    x = _as_images(numpy.concatenate(rows), value_range, "interpolation_strip")
    canvas = _tile(x, steps)
    fig = _image_figure(canvas)
    _show(fig.add_subplot(), canvas)
    return save_figure(fig, path, title)


def samples_over_training(snapshots, path, title: str | None = "samples through training", label: str = "epoch",
                          value_range=(0.0, 1.0)) -> str:
    """One row per snapshot, labelled on the left: a generator learning over time.

    Args:
        snapshots: a list of (epoch or step, images); use the same fixed noise for every snapshot so
            that each column follows one latent code through training.
        label: what the number counts, written before it ("epoch 5").
    """
    canvases = [(_tile(_as_images(images, value_range, "samples_over_training"), len(images)), f"{label} {when}")
                for when, images in snapshots]
    fig = _image_figure(canvases[0][0], rows=len(canvases))
    axes = fig.subplots(len(canvases), 1, squeeze=False)[:, 0]
    for ax, (canvas, text) in zip(axes, canvases):
        _show(ax, canvas, text)
    return save_figure(fig, path, title)


def manifold(decoder_fn, path, grid: int = 15, bounds=(-3.0, 3.0), title: str | None = None,
             value_range=(0.0, 1.0)) -> str:
    """Images decoded from an evenly spaced grid of 2-D latent codes: the learned manifold.

    Column j has z₁ = the j-th of ``grid`` values across ``bounds``; row i has z₂ decreasing down the
    picture, so the layout matches a scatter plot of the codes, and the axes are in z: each tick sits
    at the centre of the image decoded from that value.

    Args:
        decoder_fn: maps codes (grid², 2) float32 to images (grid², ...) in ``value_range``.
        bounds: (low, high) for both coordinates, or ((z1 low, z1 high), (z2 low, z2 high)).
    """
    (x0, x1), (y0, y1) = _bounds(bounds)
    z1, z2 = numpy.meshgrid(numpy.linspace(x0, x1, grid), numpy.linspace(y1, y0, grid))
    images = _as_images(_call(decoder_fn, numpy.stack([z1.ravel(), z2.ravel()], axis=1)), value_range, "manifold")
    pad = 2
    canvas = _tile(images, grid, pad)
    # The canvas in z units: image centres are (size + pad) pixels apart, one grid step; the outer edge lies
    # (pad + size / 2) pixels beyond the first and last centres.
    (height, width), steps = images.shape[1:3], max(grid - 1, 1)
    margin_x = (pad + width / 2) / (width + pad) * (x1 - x0) / steps
    margin_y = (pad + height / 2) / (height + pad) * (y1 - y0) / steps
    fig = Figure(figsize=(max(3.0, canvas.shape[1] / _PIXELS_PER_INCH), max(3.0, canvas.shape[0] / _PIXELS_PER_INCH)))
    ax = fig.add_subplot()
    ax.imshow(canvas, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest",
              extent=(x0 - margin_x, x1 + margin_x, y0 - margin_y, y1 + margin_y))
    ax.set_xlabel("$z_1$")
    ax.set_ylabel("$z_2$", rotation=0)
    if title:  # on the axes, not the figure: a figure title floats above a square image with a band between
        ax.set_title(title)
    return save_figure(fig, path)


# --------------------------------------------------------------------------------- curves and points


def loss_curves(history, path, keys=None, title: str | None = None, logy: bool = False, xlabel: str = "epoch") -> str:
    """One curve per metric against the epoch.

    Args:
        history: a :class:`~scratchgen.train.History`, its ``as_dict()``/list of records, or a dict of
            ``{name: [values]}`` (plotted against 1, 2, ...).
        keys: the metrics to draw; all of them by default.
        logy: a logarithmic y axis, for losses that fall by orders of magnitude.
    """
    curves = _curves(history)
    keys = list(curves) if keys is None else list(keys)
    missing = [k for k in keys if k not in curves]
    if missing:
        raise KeyError(f"loss_curves: no metric {missing}; the history has {list(curves)}")
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for key in keys:
        xs, ys = curves[key]
        ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=key)
    ax.set_xlabel(xlabel)
    ax.set_yscale("log" if logy else "linear")
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, path, title)


def curve_panels(panels, path, xlabel: str = "iteration", logy=(), title: str | None = None) -> str:
    """Panels of curves side by side, each with its own y axis: several runs compared on several measures.

    Args:
        panels: {panel title: {curve name: (xs, ys)}}; a curve keeps its colour from panel to panel when
            every panel lists the curves in the same order.
        logy: the titles of the panels to draw with a logarithmic y axis.
    """
    fig = Figure(figsize=(5 * len(panels), 4))
    for ax, (name, curves) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels.items()):
        for i, (label, (xs, ys)) in enumerate(curves.items()):
            ax.plot(xs, ys, linewidth=1, color=f"C{i % 10}", label=label)
        ax.set_title(name)
        ax.set_xlabel(xlabel)
        ax.set_yscale("log" if name in logy else "linear")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize="small")
    return save_figure(fig, path, title)


def _curves(history) -> dict:
    """{name: (xs, ys)} from a History, a list of records, or a dict of columns."""
    if isinstance(history, dict):
        epochs = history.get("epoch")
        columns = {}
        for name, values in history.items():
            xs = epochs if epochs is not None else range(1, len(values) + 1)
            pairs = [(x, v) for x, v in zip(xs, values) if v is not None]
            columns[name] = ([x for x, _ in pairs], [v for _, v in pairs])
        columns.pop("epoch", None)
        return columns
    if not isinstance(history, History):
        history = History.from_records(history)
    return {name: history.column(name) for name in history.metrics()}


def scatter_over_density(samples, path, log_density=None, bounds=None, grid_size: int = 200,
                         title: str | None = None, modes=None) -> str:
    """2-D samples as dots over a heat map of the true density (if given).

    Args:
        samples: (N, 2).
        log_density: a function from points (M, 2) to log p (M,), or a (grid_size, grid_size) array of
            log p over ``bounds`` (row 0 at the bottom), or None for dots alone.
        bounds: (low, high) or ((x0, x1), (y0, y1)); by default the samples' extent plus 10%.
        modes: (K, 2) centres of the true modes, drawn as open circles (a mixture's Gaussians are often
            narrower than a pixel of the heat map); None for none.
    """
    points = _points(samples, "scatter_over_density")
    bounds = _bounds(bounds, points)
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    if log_density is not None:
        _heatmap(ax, _density_grid(log_density, bounds, grid_size), bounds)
    ax.scatter(points[:, 0], points[:, 1], s=4, c="tab:red", alpha=0.6, linewidths=0)
    _draw_modes(ax, modes)
    ax.set_xlim(bounds[0])
    ax.set_ylim(bounds[1])
    ax.set_aspect("equal")
    return save_figure(fig, path, title)


def _draw_modes(ax, modes, size: float = 60) -> None:
    """Open black circles at the (K, 2) mode centres, above the samples; nothing if modes is None."""
    if modes is not None:
        centres = backend.to_numpy(modes)
        ax.scatter(centres[:, 0], centres[:, 1], s=size, facecolors="none", edgecolors="black", linewidths=0.8,
                   zorder=3)


def density_comparison(true_log_density, learned_log_density, path, bounds, samples=None, grid_size: int = 150,
                       titles=("true density", "learned density"), title: str | None = None) -> str:
    """The true density (left) beside a model's (right), optionally with the model's samples.

    Each panel has its own colour scale: a sharp true density's peaks would otherwise wash out a
    broader learned one. Compare where the mass is, not the shades.

    Args:
        true_log_density, learned_log_density: functions from points (M, 2) to log p (M,), or arrays of
            log p on the grid, as in :func:`scatter_over_density`.
        bounds: (low, high) or ((x0, x1), (y0, y1)).
        samples: (N, 2) samples of the model, drawn over its panel.
    """
    bounds = _bounds(bounds)
    grids = [_density_grid(d, bounds, grid_size) for d in (true_log_density, learned_log_density)]
    fig = Figure(figsize=(10, 5))
    for ax, density, name in zip(fig.subplots(1, 2), grids, titles):
        _heatmap(ax, density, bounds)
        ax.set_title(name)
        ax.set_aspect("equal")
    if samples is not None:
        points = _points(samples, "density_comparison")
        fig.axes[1].scatter(points[:, 0], points[:, 1], s=4, c="tab:red", alpha=0.6, linewidths=0)
        fig.axes[1].set_xlim(bounds[0])
        fig.axes[1].set_ylim(bounds[1])
    return save_figure(fig, path, title)


def scatter_over_training(snapshots, path, log_density=None, bounds=None, grid_size: int = 150, columns: int = 5,
                          label: str = "epoch", title: str | None = "samples through training", modes=None) -> str:
    """One panel of 2-D samples per snapshot, over the true density, ``columns`` panels per row, sharing
    their axes (ticks on the outer panels).

    Args:
        snapshots: a list of (epoch or step, samples (N, 2)).
        log_density, bounds, grid_size, modes: as in :func:`scatter_over_density`; the bounds, if not
            given, are those of the last snapshot's samples, shared by every panel.
        label: what the number counts, written above each panel ("epoch 5").
    """
    clouds = [(when, _points(samples, "scatter_over_training")) for when, samples in snapshots]
    bounds = _bounds(bounds, clouds[-1][1])
    density = None if log_density is None else _density_grid(log_density, bounds, grid_size)
    columns = min(columns, len(clouds))
    rows = math.ceil(len(clouds) / columns)
    fig = Figure(figsize=(2.6 * columns, 2.6 * rows))
    axes = fig.subplots(rows, columns, squeeze=False, sharex=True, sharey=True).ravel()
    for ax, (when, points) in zip(axes, clouds):
        if density is not None:
            _heatmap(ax, density, bounds)
        ax.scatter(points[:, 0], points[:, 1], s=2, c="tab:red", alpha=0.5, linewidths=0)
        _draw_modes(ax, modes, size=25)
        ax.set_xlim(bounds[0])
        ax.set_ylim(bounds[1])
        ax.set_aspect("equal")
        ax.tick_params(labelsize="x-small")
        ax.locator_params(nbins=4, steps=[1, 2, 5, 10])  # round ticks inside the edges, clear of the next panel's
        ax.set_title(f"{label} {when}", fontsize="small")
    for ax in axes[len(clouds):]:
        ax.set_axis_off()
    for ax in axes[len(clouds) - columns:len(clouds)]:  # the lowest panel of each column
        ax.xaxis.set_tick_params(labelbottom=True)
    return save_figure(fig, path, title)


def toy_density_frame(points, mixture=None, sampler=None, seed: int = 0):
    """What a 2-D toy's density pictures are drawn against: square bounds around ``points`` (their spread,
    widened by a fifth), and the true log density, exact for a Gaussian mixture, else a histogram of 400,000
    fresh samples from ``sampler(n, rng=seed)``.

    Returns:
        (bounds ((x_low, x_high), (y_low, y_high)), the true log density (a function or a grid), its title).
    """
    low, high = points.min(axis=0), points.max(axis=0)
    centre, half = (low + high) / 2, 0.6 * (high - low).max()
    bounds = tuple((float(c - half), float(c + half)) for c in centre)
    if mixture is not None:
        return bounds, mixture.log_prob, "true density"
    # No closed form: a fine histogram of many samples stands in for it.
    return bounds, histogram_log_density(sampler(400_000, rng=seed), bounds), "true density (histogram)"


def histogram_log_density(points, bounds, grid_size: int = 150) -> numpy.ndarray:
    """log p on the (grid_size, grid_size) grid the pictures above draw densities on, from a 2-D histogram
    of many points: a stand-in for a true density that has no closed form (two moons, a swiss roll).

    Args:
        points: (n, 2), as many as can be afforded (400,000 draw a smooth picture).
        bounds: (low, high) or ((x0, x1), (y0, y1)).

    Returns:
        (grid_size, grid_size) log-densities, row 0 at the bottom (-inf where no point fell), to pass as
        ``log_density`` to :func:`scatter_over_density` or :func:`density_comparison` with the same bounds.
    """
    points = _points(points, "histogram_log_density")
    (x0, x1), (y0, y1) = _bounds(bounds)
    # Bins centred on the grid points that the pictures evaluate (linspace from edge to edge).
    step_x, step_y = (x1 - x0) / (grid_size - 1), (y1 - y0) / (grid_size - 1)
    counts, _, _ = numpy.histogram2d(points[:, 1], points[:, 0], bins=grid_size,
                                     range=((y0 - step_y / 2, y1 + step_y / 2), (x0 - step_x / 2, x1 + step_x / 2)))
    with numpy.errstate(divide="ignore"):
        return numpy.log(counts / (len(points) * step_x * step_y))


def _heatmap(ax, density: numpy.ndarray, bounds) -> None:
    (x0, x1), (y0, y1) = bounds
    ax.imshow(density, origin="lower", extent=(x0, x1, y0, y1), cmap="Blues", vmin=0.0,
              aspect="auto", interpolation="bilinear")


def latent_scatter(codes, labels, path, title: str | None = None) -> str:
    """Latent codes as dots coloured by class; codes of more than 2 dimensions are projected onto
    their first two principal components.

    Args:
        codes: (N, D) with D ≥ 2, e.g. an encoder's means.
        labels: (N,) integer classes, or None for one colour.
    """
    z = backend.to_numpy(codes).astype(numpy.float64)
    if z.ndim != 2 or z.shape[1] < 2:
        raise ValueError(f"latent_scatter: codes of shape {z.shape}; expected (N, D) with D >= 2")
    axis_names = ("z1", "z2")
    if z.shape[1] > 2:
        centred = z - z.mean(axis=0)
        z = centred @ numpy.linalg.svd(centred, full_matrices=False)[2][:2].T
        axis_names = ("principal component 1", "principal component 2")
    fig = Figure(figsize=(6, 5))
    ax = fig.add_subplot()
    if labels is None:
        ax.scatter(z[:, 0], z[:, 1], s=4, alpha=0.6, linewidths=0)
    else:
        labels = backend.to_numpy(labels)
        for i, label in enumerate(numpy.unique(labels)):
            chosen = labels == label
            ax.scatter(z[chosen, 0], z[chosen, 1], s=4, alpha=0.6, linewidths=0, color=f"C{i % 10}", label=str(label))
        ax.legend(markerscale=3, fontsize="small", loc="best")
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    return save_figure(fig, path, title)

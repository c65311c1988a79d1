"""Grader of assignment 2: conv2d forward and backward by im2col.

    python -m pytest coursework/02_conv                          # grades conv2d.py in this folder
    python -m pytest coursework/02_conv --solution my_conv2d.py   # grades another file

The checks follow the order of the work: im2col against windows cut out by explicit loops; col2im as
im2col's adjoint; the forward against the library's ``scratchgen.nn.functional.conv2d``; the backward by
gradcheck and against the library's gradients; and a convolution that learns an edge detector.

The checks make their data with NumPy, on the host; your im2col and col2im compute with ``xp`` on the
active backend (NumPy, or CuPy on a GPU). So the grader moves its arrays there with ``asarray`` before
calling them, and brings what they return back with ``to_numpy`` to compare.
"""

import numpy as np

import scratchgen as sg
from scratchgen import optim
from scratchgen.backend import asarray, to_numpy
from scratchgen.nn import functional as F

STARTER = "conv2d.py"
REQUIRED = ("im2col", "col2im", "Conv2d", "conv2d")

# (N, C, H, W), (O, kh, kw), stride, padding: square and non-square, with and without stride and padding.
GEOMETRIES = [((2, 3, 5, 4), (2, 3, 2), 1, 0), ((2, 2, 6, 6), (3, 3, 3), 2, 1), ((1, 2, 4, 5), (2, 2, 2), 1, 2)]


def _rng(seed=0):
    return np.random.default_rng(seed)


def _windows_by_loops(x, kh, kw, stride, padding):
    """im2col the slow, obvious way: one window at a time."""
    n, c, h, w = x.shape
    padded = np.zeros((n, c, h + 2 * padding, w + 2 * padding))
    padded[:, :, padding:padding + h, padding:padding + w] = x
    oh, ow = (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1
    rows = [padded[b, :, stride * r:stride * r + kh, stride * s:stride * s + kw].reshape(-1)
            for b in range(n) for r in range(oh) for s in range(ow)]
    return np.array(rows), (oh, ow)


def test_im2col_rows_are_the_windows(solution):
    for x_shape, (_, kh, kw), stride, padding in GEOMETRIES:
        x = _rng().standard_normal(x_shape)
        expected, (oh, ow) = _windows_by_loops(x, kh, kw, stride, padding)
        got = to_numpy(solution.im2col(asarray(x), kh, kw, stride, padding))
        where = f"x {x_shape}, kernel {kh}x{kw}, stride {stride}, padding {padding}"
        assert got.shape == expected.shape, (f"im2col({where}) has shape {got.shape}, expected (N·OH·OW, C·kh·kw) "
                                             f"= {expected.shape}")
        bad = np.argwhere(~np.isclose(got, expected))
        if len(bad):
            row, col = bad[0]
            n, rest = divmod(row, oh * ow)
            c, tap = divmod(col, kh * kw)
            raise AssertionError(
                f"im2col({where}): row {row} is window (n={n}, oh={rest // ow}, ow={rest % ow}) and column {col} "
                f"is (c={c}, i={tap // kw}, j={tap % kw}); it should hold x_pad[{n}, {c}, {stride}·{rest // ow} + "
                f"{tap // kw}, {stride}·{rest % ow} + {tap % kw}] = {expected[row, col]:.4g} but holds "
                f"{got[row, col]:.4g}. {len(bad)} entries differ.")


def test_col2im_is_the_adjoint_of_im2col(solution):
    for x_shape, (_, kh, kw), stride, padding in GEOMETRIES:
        x = _rng(1).standard_normal(x_shape)
        cols = to_numpy(solution.im2col(asarray(x), kh, kw, stride, padding))
        c = _rng(2).standard_normal(cols.shape)
        back = to_numpy(solution.col2im(asarray(c), x_shape, kh, kw, stride, padding))
        assert back.shape == x_shape, f"col2im returned shape {back.shape}, expected the image's shape {x_shape}"
        lhs, rhs = float((cols * c).sum()), float((x * back).sum())
        assert np.isclose(lhs, rhs, rtol=1e-9, atol=1e-9), (
            f"col2im is not the adjoint of im2col (kernel {kh}x{kw}, stride {stride}, padding {padding}): "
            f"<im2col(x), c> = {lhs:.6g} but <x, col2im(c)> = {rhs:.6g}. Every entry of c must be added (+=, not =) "
            f"onto exactly the pixel that im2col copied into its place; entries from the padding are dropped.")


def test_forward_matches_the_library(solution):
    for x_shape, (o, kh, kw), stride, padding in GEOMETRIES:
        rng = _rng(3)
        x, w, b = (sg.tensor(rng.standard_normal(s)) for s in (x_shape, (o, x_shape[1], kh, kw), (o,)))
        got = solution.conv2d(x, w, b, stride=stride, padding=padding)
        expected = F.conv2d(x, w, b, stride=stride, padding=padding).numpy()
        assert got.shape == expected.shape, (f"conv2d of x {x_shape} with a {kh}x{kw} kernel, stride {stride}, "
                                             f"padding {padding}: output {got.shape}, expected (N, O, OH, OW) = "
                                             f"{expected.shape}")
        error = np.abs(got.numpy() - expected)
        worst = tuple(int(i) for i in np.unravel_index(error.argmax(), error.shape))
        assert error.max() < 1e-9, (
            f"conv2d (kernel {kh}x{kw}, stride {stride}, padding {padding}) differs from scratchgen.nn.functional."
            f"conv2d at output element {worst}: yours {got.numpy()[worst]:.6g}, the library's {expected[worst]:.6g}. "
            f"Check the order of the reshape back to (N, OH, OW, O) and the transpose to (N, O, OH, OW).")


def _leaves(x_shape, o, kh, kw, seed=4):
    rng = _rng(seed)
    shapes = (x_shape, (o, x_shape[1], kh, kw), (o,))
    return [sg.tensor(rng.standard_normal(s), requires_grad=True) for s in shapes]


def test_backward_by_gradcheck(solution):
    for x_shape, (o, kh, kw), stride, padding in GEOMETRIES[1:]:
        inputs = _leaves(x_shape, o, kh, kw)
        try:
            sg.gradcheck(lambda x, w, b: solution.conv2d(x, w, b, stride=stride, padding=padding), inputs)
        except sg.GradcheckError as err:
            names = "input 0 is x, input 1 the weight, input 2 the bias"
            raise AssertionError(f"kernel {kh}x{kw}, stride {stride}, padding {padding}: {err} ({names})") from err


def test_backward_matches_the_library(solution):
    hints = {
        "x": "grad_x = col2im(G · W₂) with W₂ = weight.reshape(O, C·kh·kw), the very matrix of the forward",
        "weight": "grad_weight = (Gᵀ · cols) reshaped to (O, C, kh, kw)",
        "bias": "grad_bias sums G over every axis but the output channel's",
    }
    for x_shape, (o, kh, kw), stride, padding in GEOMETRIES:
        yours, library = _leaves(x_shape, o, kh, kw), _leaves(x_shape, o, kh, kw)
        direction = sg.tensor(_rng(5).standard_normal(F.conv2d(*library, stride=stride, padding=padding).shape))
        (solution.conv2d(*yours, stride=stride, padding=padding) * direction).sum().backward()
        (F.conv2d(*library, stride=stride, padding=padding) * direction).sum().backward()
        for name, mine, theirs in zip(hints, yours, library):
            assert mine.grad is not None, f"backward returned no gradient for {name}"
            mine_grad, their_grad = to_numpy(mine.grad), to_numpy(theirs.grad)  # to the host, to compare
            assert mine_grad.shape == their_grad.shape, (
                f"the gradient of {name} has shape {mine_grad.shape}, expected {their_grad.shape}")
            assert np.allclose(mine_grad, their_grad, rtol=1e-8, atol=1e-9), (
                f"kernel {kh}x{kw}, stride {stride}, padding {padding}: your gradient of {name} differs from the "
                f"library's by up to {np.abs(mine_grad - their_grad).max():.3g}. Hint: {hints[name]}.")


def test_a_convolution_learns_an_edge_detector(solution):
    sobel = np.array([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], dtype=np.float32)[None, None]
    images = sg.tensor(_rng(6).standard_normal((8, 1, 10, 10)).astype(np.float32))
    target = F.conv2d(images, sg.tensor(sobel), sg.zeros(1), padding=1).numpy()
    weight = sg.tensor(np.zeros((1, 1, 3, 3), dtype=np.float32), requires_grad=True)
    bias = sg.tensor(np.zeros(1, dtype=np.float32), requires_grad=True)
    opt = optim.Adam([weight, bias], lr=0.1)
    for _ in range(150):
        opt.zero_grad()
        loss = F.mse_loss(solution.conv2d(images, weight, bias, stride=1, padding=1), target)
        loss.backward()
        opt.step()
    error = np.abs(weight.numpy() - sobel).max()
    assert error < 0.05, (f"fitting a 3x3 kernel to a Sobel filter's outputs for 150 Adam steps with your conv2d "
                          f"left it {error:.3g} away from the Sobel kernel (loss {loss.item():.3g}); a correct "
                          f"convolution recovers it to within 0.05")

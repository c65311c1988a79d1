"""Grader of assignment 5: MADE's masks from degrees, and PixelCNN's type-A and type-B masks.

    python -m pytest coursework/05_masks                        # grades masks.py in this folder
    python -m pytest coursework/05_masks --solution my_masks.py  # grades another file

The checks that matter most measure the network, not the masks: autograd computes the Jacobian of a
masked network's outputs with respect to its inputs, which must be exactly zero wherever the ordering
forbids a dependence; and a MADE with your masks must learn a Markov chain's density without ever
beating its entropy (a model that "beats" it is peeking at the variable it predicts).

Your masks are NumPy arrays, on the host; the networks run on the active backend (NumPy, or CuPy on a
GPU), so the grader brings their gradients, and the library's masks, to the host with ``to_numpy``.
"""

import numpy as np

import scratchgen as sg
from scratchgen import nn, optim
from scratchgen.backend import to_numpy
from scratchgen.models.made import made_masks as library_made_masks
from scratchgen.nn import functional as F
from scratchgen.nn.masked import conv_mask

STARTER = "masks.py"
REQUIRED = ("made_degrees", "made_masks", "pixelcnn_mask")


def _degrees(solution, ordering, hidden, seed=0):
    return [np.asarray(d) for d in solution.made_degrees(np.asarray(ordering), hidden, np.random.default_rng(seed))]


# ------------------------------------------------------------------------------------------------ MADE


def test_input_degrees_follow_the_ordering(solution):
    degrees = _degrees(solution, [2, 0, 3, 1], (5,))
    assert len(degrees) == 2, (f"made_degrees with one hidden layer should return 2 arrays (inputs, hidden), "
                               f"got {len(degrees)}")
    assert degrees[0].tolist() == [2, 4, 1, 3], (
        f"with the ordering [2, 0, 3, 1] (variable 2 first, then 0, 3, 1) the input degrees are [2, 4, 1, 3]: "
        f"input d has degree (its position in the ordering) + 1. Got {degrees[0].tolist()}")


def test_hidden_degrees_obey_the_degree_rule(solution):
    seen = set()
    for seed in range(40):
        degrees = _degrees(solution, np.random.default_rng(seed).permutation(6), (16, 16), seed)
        lengths = [len(d) for d in degrees]
        assert lengths == [6, 16, 16], f"degree arrays of lengths {lengths}, expected [6, 16, 16]"
        for layer, (below, here) in enumerate(zip(degrees[:-1], degrees[1:]), 1):
            low, high = int(below.min()), 5
            assert here.min() >= low and here.max() <= high, (
                f"hidden layer {layer} has degrees from {here.min()} to {here.max()}; they must lie in "
                f"{low}..{high} = min(degrees below)..D-1, or some units would have no input or no output")
        seen.update(degrees[1].tolist())
    assert seen == {1, 2, 3, 4, 5}, (f"over 40 draws the first hidden layer's degrees took only {sorted(seen)}: "
                                     f"draw from all of 1..D-1")


def test_made_masks_match_the_library(solution):
    degrees = _degrees(solution, np.random.default_rng(1).permutation(5), (7, 6), 1)
    got, expected = solution.made_masks(degrees), library_made_masks(degrees)
    assert len(got) == len(expected), f"made_masks returned {len(got)} masks for 2 hidden layers, expected 3"
    for i, (mine, theirs) in enumerate(zip(got, expected)):
        layer = "the output layer" if i == len(expected) - 1 else f"hidden layer {i + 1}"
        assert np.shape(mine) == theirs.shape, (f"the mask of {layer} has shape {np.shape(mine)}, expected "
                                                f"(out, in) = {theirs.shape}")
        wrong = int((np.asarray(mine) != theirs).sum())
        assert not wrong, (f"the mask of {layer} differs from scratchgen.models.made.made_masks in {wrong} entries; "
                           f"hidden units connect to degrees ≤ their own (≥), outputs to hidden degrees strictly "
                           f"below theirs (>)")


def _made(masks):
    layers = []
    for i, mask in enumerate(masks):
        out_features, in_features = np.shape(mask)
        layers.append(nn.MaskedLinear(in_features, out_features, mask=np.asarray(mask, dtype=np.float32)))
        if i < len(masks) - 1:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def test_a_network_with_your_masks_is_autoregressive(solution):
    ordering = np.random.default_rng(3).permutation(6)
    degrees = _degrees(solution, ordering, (24, 24), 3)
    net = _made(solution.made_masks(degrees))
    x = sg.tensor(np.random.default_rng(4).standard_normal((5, 6)).astype(np.float32), requires_grad=True)
    for d in range(6):
        x.grad = None
        net(x)[:, d].sum().backward()
        sees = np.abs(to_numpy(x.grad)).sum(axis=0) > 0  # which inputs output d depends on
        forbidden = [int(j) for j in np.flatnonzero(sees & (degrees[0] >= degrees[0][d]))]
        assert not forbidden, (
            f"output {d} (position {degrees[0][d]} in the ordering) depends on inputs {forbidden}, at positions "
            f"{[int(degrees[0][j]) for j in forbidden]}: p(x_{d} | ...) may only see the variables before it")
    first = int(np.flatnonzero(degrees[0] == 2)[0])  # the second variable can and should see the first
    x.grad = None
    net(x)[:, first].sum().backward()
    assert np.abs(to_numpy(x.grad)).sum() > 0, (f"output {first}, second in the ordering, sees no input at all: "
                                                f"the masks cut too much")


def test_a_made_with_your_masks_learns_a_markov_chain(solution):
    # x_0 ~ Bernoulli(½), each next bit flips the previous one with probability 0.1: entropy 2.97 nats.
    rng = np.random.default_rng(0)
    first = rng.random((1000, 1)) < 0.5
    flips = np.cumsum(rng.random((1000, 7)) < 0.1, axis=1) % 2
    data = np.concatenate([first, first ^ flips.astype(bool)], axis=1).astype(np.float32)
    net = _made(solution.made_masks(_degrees(solution, rng.permutation(8), (32,), 0)))
    opt = optim.Adam(net.parameters(), lr=1e-2)

    def nll(x):
        return F.binary_cross_entropy_with_logits(net(x), x, reduction="none").sum(axis=1).mean()

    for _ in range(300):
        loss = nll(sg.tensor(data[rng.integers(0, 1000, 100)]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    final = nll(sg.tensor(data)).item()
    assert final > 2.75, (f"the negative log-likelihood fell to {final:.3f} nats, below the data's entropy of 2.97: no "
                          f"true density model can do that. Some output sees the very input it predicts.")
    assert final < 3.3, (f"the negative log-likelihood is {final:.3f} nats after 300 Adam steps, far above the data's "
                         f"entropy of 2.97 (a correct MADE reaches about 3.0): do the masks cut allowed connections?")


# -------------------------------------------------------------------------------------------- PixelCNN


def test_pixelcnn_masks_match_the_library(solution):
    for k in (3, 5, 7):
        for kind in "AB":
            got = np.asarray(solution.pixelcnn_mask(k, kind))
            expected = to_numpy(conv_mask(kind, (k, k))[0, 0])
            assert got.shape == (k, k), f"pixelcnn_mask({k}, {kind!r}) has shape {got.shape}, expected ({k}, {k})"
            centre = " and the centre" if kind == "B" else ""
            assert np.array_equal(got, expected), (
                f"pixelcnn_mask({k}, {kind!r}) is\n{got.astype(int)}\nbut should be\n{expected.astype(int)}\n"
                f"(rows above the centre; in the centre row, the taps left of it{centre}). "
                f"{_mask_mistake(got, kind)}")


def _mask_mistake(mask, kind) -> str:
    """What a wrong k×k mask lets through, in words: the mistake to name, or '' if it lets nothing through.

    Row r, column s of the mask weighs the input pixel at offset (r - c, s - c) from the output pixel, c
    being the centre: rows index the vertical offset, so a tap below the centre row reads a later row.
    """
    k = len(mask)
    c = k // 2
    expected = to_numpy(conv_mask(kind, (k, k))[0, 0])
    if not np.array_equal(mask, expected) and np.array_equal(np.transpose(mask), expected):
        return (f"Your type-{kind} mask is the right one transposed (rows and columns swapped): its centre is "
                f"right, but its left columns reach below the centre row, so a pixel sees the pixels below it "
                f"(and to its left), which come later in raster order. Rows are the vertical offset: keep the "
                f"rows above the centre, and only the left part of the centre row.")
    if kind == "A" and mask[c, c] != 0:
        return "The type-A mask must leave the centre out: the first layer may not see the pixel it predicts."
    later = [(int(r) - c, int(s) - c) for r, s in np.argwhere(np.asarray(mask) != 0) if r > c or (r == c and s > c)]
    if later:
        return (f"Your type-{kind} mask keeps taps at offsets {later} (rows down, columns right of the centre), "
                f"which come after the centre in raster order.")
    return ""


def test_a_pixelcnn_stack_never_sees_the_pixel_it_predicts(solution):
    # Layer 1 of type A, then two of type B: output pixel (r, c) may depend only on the input pixels before
    # (r, c) in raster order, left to right and top to bottom, never on (r, c) itself or any later one.
    rng = np.random.default_rng(5)
    masks = [np.asarray(solution.pixelcnn_mask(3, kind), dtype=np.float32) for kind in "ABB"]
    weights = [sg.tensor(rng.standard_normal(shape).astype(np.float32) * mask)
               for shape, mask in zip([(4, 1, 3, 3), (4, 4, 3, 3), (1, 4, 3, 3)], masks)]
    x = sg.tensor(rng.standard_normal((1, 1, 7, 7)).astype(np.float32), requires_grad=True)
    order = np.arange(49).reshape(7, 7)  # raster position of each pixel
    for r, c in [(0, 0), (3, 3), (3, 0), (6, 6), (2, 5)]:
        h = x
        for i, w in enumerate(weights):
            h = F.conv2d(h, w, None, padding=1)
            h = h.relu() if i < 2 else h
        x.grad = None
        h[0, 0, r, c].backward()
        sees = np.abs(to_numpy(x.grad)[0, 0]) > 0
        bad = [tuple(int(v) for v in b) for b in np.argwhere(sees & (order >= order[r, c]))]
        why = next((_mask_mistake(m, kind) for m, kind in zip(masks, "ABB") if _mask_mistake(m, kind)),
                   "Check the masks' taps against the raster order.")
        assert not bad, (f"output pixel ({r}, {c}) depends on input pixels {bad}, which come at or after it in "
                         f"raster order. {why}")

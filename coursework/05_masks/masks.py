"""Assignment 5: the masks that make a network autoregressive, for MADE and for PixelCNN.

Read ``coursework/05_masks/README.md`` first. Fill in the three gaps marked YOUR CODE HERE, then grade
your work from the repository's root with

    python -m pytest coursework/05_masks

Work on host NumPy arrays: masks are built once, before training, and handed to
``scratchgen.nn.MaskedLinear`` (MADE) or multiplied into a convolution's weight (PixelCNN).
"""

import numpy as np  # noqa: F401  (you will need it)


def made_degrees(ordering, hidden_sizes, rng):
    """The degree of every unit, MADE's section 4.

    Args:
        ordering: a permutation of 0..D-1; ordering[i] is the variable modelled i-th.
        hidden_sizes: the number of units of each hidden layer, e.g. (32,) or (64, 64).
        rng: a NumPy Generator (``np.random.default_rng(seed)``) to draw the hidden degrees from.

    Returns:
        A list of int arrays: [the D input degrees, the degrees of hidden layer 1, ..., of hidden layer L].
        Input d has degree (position of d in the ordering) + 1, so the first variable modelled has 1.
    """
    # YOUR CODE HERE: the input degrees from the ordering; then, for each hidden layer, degrees drawn
    # uniformly from the integers min(previous layer's degrees) .. D-1 (rng.integers).
    raise NotImplementedError("your code here: made_degrees")


def made_masks(degrees):
    """The 0/1 mask (out_features, in_features) of every layer, from the degrees.

    Args:
        degrees: what made_degrees returns, [inputs (D,), hidden 1 (H1,), ..., hidden L (HL,)].

    Returns:
        A list of L + 1 float32 arrays: the masks of hidden layers 1..L, of shapes (H1, D), (H2, H1), ...,
        then that of the output layer, (D, HL).
    """
    # YOUR CODE HERE: one comparison per layer, broadcasting a column of the layer's degrees against a row
    # of the degrees below. Mind ≥ for the hidden layers and > for the output layer.
    raise NotImplementedError("your code here: made_masks")


def pixelcnn_mask(kernel_size, mask_type):
    """The PixelCNN mask of a kernel_size × kernel_size convolution, for raster order.

    Args:
        kernel_size: an odd int k.
        mask_type: "A" (the first layer: the centre pixel excluded) or "B" (later layers: included).

    Returns:
        A float32 array (k, k): 1 for the taps a convolution may use, 0 for the others.
    """
    # YOUR CODE HERE: rows above the centre; in the centre row, the taps left of the centre (and the
    # centre itself for type "B"); nothing below.
    raise NotImplementedError("your code here: pixelcnn_mask")

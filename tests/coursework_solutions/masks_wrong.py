"""A planted wrong answer to assignment 5, with two classic mistakes: the output layer connects hidden
units of degree *equal* to the output's (≥ instead of >), so output d sees input d; and the type-A mask
keeps the centre tap, so the first layer sees the pixel it predicts. The degrees are right."""

import numpy as np


def made_degrees(ordering, hidden_sizes, rng):
    d = len(ordering)
    inputs = np.empty(d, dtype=np.int64)
    inputs[np.asarray(ordering)] = np.arange(1, d + 1)
    degrees = [inputs]
    for size in hidden_sizes:
        degrees.append(rng.integers(degrees[-1].min(), d, size=size))
    return degrees


def made_masks(degrees):
    masks = [(later[:, None] >= earlier[None, :]) for earlier, later in zip(degrees[:-1], degrees[1:])]
    masks.append(degrees[0][:, None] >= degrees[-1][None, :])  # BUG: should be >
    return [m.astype(np.float32) for m in masks]


def pixelcnn_mask(kernel_size, mask_type):
    mask = np.zeros((kernel_size, kernel_size), dtype=np.float32)
    centre = kernel_size // 2
    mask[:centre, :] = 1
    mask[centre, :centre + 1] = 1  # BUG: for type A the centre must stay 0
    return mask

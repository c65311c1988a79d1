"""A planted wrong answer to assignment 5: the PixelCNN masks transposed (rows and columns swapped, an
easy slip when a mask is written column by column). The type-A centre is still 0, yet the mask reaches
below the centre row: a pixel sees the pixels below and to its left. MADE's degrees and masks are right."""

import numpy as np

from scratchgen.models.made import made_degrees, made_masks  # noqa: F401  (the right MADE parts)


def pixelcnn_mask(kernel_size, mask_type):
    mask = np.zeros((kernel_size, kernel_size), dtype=np.float32)
    centre = kernel_size // 2
    mask[:, :centre] = 1  # BUG: columns left of the centre, where the rows above it were meant
    mask[:centre, centre] = 1  # BUG: the centre column above, where the centre row's left part was meant
    if mask_type == "B":
        mask[centre, centre] = 1
    return mask

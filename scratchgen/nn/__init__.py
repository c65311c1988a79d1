"""Neural-network layers (modules), their functional forms, losses and initialisers.

Every layer checks its settings when it is built and its input when it is called, and a wrong one stops
there with a message that names the layer and the value (``Conv2d: stride must be an int or a pair of
ints, at least 1, got 0``); the checks are written once, in :mod:`scratchgen.nn._checks`.

**The dtype rule.** Layers compute in float32 (the library's default) or float64 (for gradcheck), and
in the dtype of their parameters:

* a layer with parameters or float buffers (Linear, the convolutions, the norms, the masked layers)
  takes an input of exactly its parameters' dtype, float32 unless you converted them;
* a layer without them (activations, pooling, upsampling, dropout, the shape helpers) takes float32 or
  float64, and returns the same dtype;
* anything else, float16 and integers included, is a TypeError that names the layer, the input's dtype
  and its parameters' dtype, and says how to convert: ``x.astype('float32')``.

Nothing is converted silently: a float16 input is not quietly computed, and returned, as float32, and a
float64 input to a float32 layer, whose backward would have to give float64 gradients to float32
parameters, is refused before the forward rather than after it. To compute in float64, convert the
parameters and float buffers (``p.data = p.data.astype(numpy.float64)``), as the gradcheck tests do.
"""

from scratchgen.nn import functional, init  # noqa: F401
from scratchgen.nn.layers import (  # noqa: F401
    Dropout, Flatten, Identity, LeakyReLU, Linear, ReLU, Sigmoid, SiLU, Softplus, Tanh, Unflatten,
)
from scratchgen.nn.module import Module, ModuleList, Parameter, Sequential  # noqa: F401
from scratchgen.nn.conv import AvgPool2d, Conv2d, ConvTranspose2d, MaxPool2d, Upsample  # noqa: F401
from scratchgen.nn.norm import BatchNorm1d, BatchNorm2d, GroupNorm  # noqa: F401
from scratchgen.nn.masked import MaskedConv2d, MaskedLinear  # noqa: F401

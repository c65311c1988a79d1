"""Neural-network layers (modules), their functional forms, losses and initialisers."""

from scratchgen.nn import functional, init  # noqa: F401
from scratchgen.nn.layers import (  # noqa: F401
    Dropout, Flatten, Identity, LeakyReLU, Linear, ReLU, Sigmoid, Softplus, Tanh, Unflatten,
)
from scratchgen.nn.module import Module, ModuleList, Parameter, Sequential  # noqa: F401
from scratchgen.nn.conv import AvgPool2d, Conv2d, ConvTranspose2d, MaxPool2d, Upsample  # noqa: F401
from scratchgen.nn.norm import BatchNorm1d, BatchNorm2d  # noqa: F401
from scratchgen.nn.masked import MaskedConv2d, MaskedLinear  # noqa: F401

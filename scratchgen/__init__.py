"""scratchgen: generative modelling from scratch, on a small autograd of our own.

The layers of the library, each built only on those above it:

* :mod:`scratchgen.backend`: NumPy or CuPy arrays, the random generator;
* :mod:`scratchgen.tensor`, :mod:`scratchgen.autograd`, :mod:`scratchgen.ops`: tensors, the reverse-mode
  engine (:func:`grad`, differentiable again with ``create_graph=True``) and the differentiable ops;
  :mod:`scratchgen.gradcheck` (:func:`gradcheck`, :func:`gradgradcheck`) to test them;
* :mod:`scratchgen.nn` and :mod:`scratchgen.optim`: layers, losses, initialisers and optimisers;
* :mod:`scratchgen.data`: the embedded MNIST subset, downloads, toy distributions, a data loader;
* :mod:`scratchgen.checkpoint` (:func:`save`, :func:`load`), :mod:`scratchgen.train` (progress bar,
  history, early stopping), :mod:`scratchgen.plot` (pictures, with Matplotlib) and
  :mod:`scratchgen.experiment` (the demos' shared command line): the harness around training.
"""

from scratchgen import backend
from scratchgen.autograd import enable_grad, grad, is_grad_enabled, no_grad
from scratchgen.backend import get_backend, manual_seed, set_backend, use_backend
from scratchgen.gradcheck import GradcheckError, gradcheck, gradgradcheck
from scratchgen.ops import concatenate, stack, where
from scratchgen.tensor import Tensor, ones, ones_like, rand, randn, tensor, zeros, zeros_like
from scratchgen import nn, optim  # noqa: E402  (they build on the names above)
from scratchgen import data  # noqa: E402
from scratchgen.checkpoint import CheckpointError, load, save  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Tensor", "tensor", "zeros", "ones", "randn", "rand", "zeros_like", "ones_like",
    "concatenate", "stack", "where", "grad", "no_grad", "enable_grad", "is_grad_enabled",
    "gradcheck", "gradgradcheck", "GradcheckError", "set_backend", "get_backend", "use_backend", "manual_seed",
    "backend", "nn", "optim", "data", "save", "load", "CheckpointError",
]

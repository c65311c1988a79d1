"""Assignment 8: RealNVP's affine coupling layer, forward, inverse and log-determinant (Dinh et al. 2017).

Read ``coursework/08_coupling/README.md`` first. Fill in the four gaps marked YOUR CODE HERE, then grade
your work from the repository's root with

    python -m pytest coursework/08_coupling

Points are Tensors (N, D), one example per row. Write everything with Tensor ops (indexing, *, +, .exp(),
.sum(axis=1), sg.concatenate): a flow is trained through its forward, so it must differentiate.
"""

import scratchgen as sg  # noqa: F401  (sg.concatenate)
from scratchgen.models.flow import Bijection, mlp


class Coupling(Bijection):
    """An affine coupling: one half of x chooses an affine map of the other half.

        u_a = x_a,   u_b = x_b ⊙ exp(s) + t,   s = tanh(s_net(x_a)),  t = t_net(x_a),
        log |det ∂u/∂x| = Σ_j s_j   (one number per example).

    Args:
        features: D, at least 2. The kept half x_a is the first ⌊D/2⌋ coordinates and the moved half
            x_b the rest; with ``flip`` the other way round: x_a is the last D − ⌊D/2⌋ coordinates and x_b
            the first ⌊D/2⌋.
        flip: keep the second half and move the first (successive couplings alternate it).
        hidden_sizes: the hidden layers (ReLU) of each of the two networks s_net and t_net.
    """

    def __init__(self, features, flip=False, hidden_sizes=(64, 64)):
        super().__init__()
        if features < 2:
            raise ValueError(f"Coupling: needs at least 2 features to split, got {features}")
        self.features, self.flip, self.half = features, flip, features // 2
        kept, moved = (features - self.half, self.half) if flip else (self.half, features - self.half)
        self.s_net = mlp(kept, moved, hidden_sizes)
        self.t_net = mlp(kept, moved, hidden_sizes)

    def scale_and_shift(self, kept):
        """s and t from the kept half, each (N, moved features). tanh keeps every scale exp(s) in [1/e, e]."""
        return self.s_net(kept).tanh(), self.t_net(kept)

    def split(self, x):
        """x (N, D) -> (kept, moved): x_a and x_b, as the class docstring defines them."""
        # YOUR CODE HERE: two lines. x[:, :self.half] is the first ⌊D/2⌋ coordinates, x[:, self.half:] the rest.
        raise NotImplementedError("your code here: Coupling.split")

    def join(self, kept, moved):
        """The inverse of split: (kept, moved) -> (N, D), each coordinate back in its place."""
        # YOUR CODE HERE: one or two lines, with sg.concatenate([...], axis=1).
        raise NotImplementedError("your code here: Coupling.join")

    def forward(self, x):
        """x (N, D) -> (u (N, D), log |det ∂u/∂x| (N,))."""
        # YOUR CODE HERE: about 4 lines, with split, scale_and_shift and join.
        raise NotImplementedError("your code here: Coupling.forward")

    def inverse(self, u):
        """u (N, D) -> x (N, D), the x with forward(x)[0] = u."""
        # YOUR CODE HERE: about 4 lines. u_a = x_a, so s and t can be computed from u's kept half.
        raise NotImplementedError("your code here: Coupling.inverse")

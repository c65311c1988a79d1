"""Matrix products: ``a @ b`` (batched, with broadcasting of the batch axes) and the fused affine map.

For C = A·B, dL/dA = dL/dC · Bᵀ and dL/dB = Aᵀ · dL/dC. A 1-D operand is treated as a row (left) or
column (right) vector, as NumPy does, and its axis is removed again from the gradient.
"""

from __future__ import annotations

from scratchgen.autograd import Function


def _swap_last(t):
    """The Tensor ``t`` with its last two axes swapped: the transpose of every matrix in a batch."""
    axes = list(range(t.ndim))
    axes[-2], axes[-1] = axes[-1], axes[-2]
    return t.transpose(axes)


class MatMul(Function):
    """d(A·B) = dA·B + A·dB, so grad_A = G·Bᵀ and grad_B = Aᵀ·G (batch axes summed by the engine)."""

    saved_inputs = None
    saves_output = False

    def forward(self, a, b):
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError("matmul needs arrays of at least one dimension; use * for scalars")
        if a.shape[-1] != b.shape[-2 if b.ndim > 1 else 0]:
            raise ValueError(
                f"inner dimensions differ: {a.shape[-1]} (last axis of the left operand) and "
                f"{b.shape[-2 if b.ndim > 1 else 0]} (first matrix axis of the right operand)"
            )
        return a @ b

    def backward(self, grad):
        a, b = self.inputs
        a2 = a.reshape(1, -1) if a.ndim == 1 else a  # (k,) -> (1, k)
        b2 = b.reshape(-1, 1) if b.ndim == 1 else b  # (k,) -> (k, 1)
        g = grad
        if b.ndim == 1:
            g = g.reshape(g.shape + (1,))  # first, so that a vector·vector product's 0-d gradient becomes (1, 1)
        if a.ndim == 1:
            g = g.reshape(g.shape[:-1] + (1,) + g.shape[-1:])
        need_a, need_b = self.needs_input_grad
        grad_a = g @ _swap_last(b2) if need_a else None
        grad_b = _swap_last(a2) @ g if need_b else None
        # Drop the axis added to a 1-D operand; the engine then sums the broadcast batch axes.
        if need_a and a.ndim == 1:
            grad_a = grad_a.reshape(grad_a.shape[:-2] + grad_a.shape[-1:])
        if need_b and b.ndim == 1:
            grad_b = grad_b.reshape(grad_b.shape[:-1])
        return grad_a, grad_b


class Affine(Function):
    """y = x·Wᵀ + b with W of shape (out, in): grad_x = G·W, grad_W = Gᵀ·x, grad_b = Σ_rows G.

    The op behind :class:`scratchgen.nn.Linear`. One op instead of matmul, transpose and add: fewer graph
    nodes, and no gradient is computed for an input that does not need one (the data fed to the first
    layer).
    """

    saved_inputs = (0, 1)
    saves_output = False

    def forward(self, x, weight, bias=None):
        if weight.ndim != 2:
            raise ValueError(f"the weight must be a matrix (out_features, in_features), got shape {weight.shape}")
        if x.shape[-1] != weight.shape[1]:
            raise ValueError(
                f"input has {x.shape[-1]} features in its last axis but the weight {weight.shape} "
                f"expects {weight.shape[1]}"
            )
        out = x @ weight.T
        if bias is not None:
            out += bias
        return out

    def backward(self, grad):
        x, weight = self.inputs[:2]
        need_x, need_w = self.needs_input_grad[:2]
        g2 = grad.reshape(-1, grad.shape[-1])  # the batch axes as rows
        grad_x = grad @ weight if need_x else None
        grad_w = g2.T @ x.reshape(-1, x.shape[-1]) if need_w else None
        if len(self.inputs) == 2:
            return grad_x, grad_w
        return grad_x, grad_w, (g2.sum(axis=0) if self.needs_input_grad[2] else None)

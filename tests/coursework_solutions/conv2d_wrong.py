"""A planted wrong answer to assignment 2: a complete im2col convolution whose backward uses the weight
"transposed" as a 4-D array (O and C swapped) instead of the matrix W₂ transposed: grad_x is wrong
whenever O and C both exceed 1, while the forward, grad_weight and grad_bias are right."""

from scratchgen.autograd import Function, once_differentiable
from scratchgen.backend import xp


def output_size(h, w, kh, kw, stride, padding):
    return (h + 2 * padding - kh) // stride + 1, (w + 2 * padding - kw) // stride + 1


def pad(x, padding):
    n, c, h, w = x.shape
    out = xp.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=x.dtype)
    out[:, :, padding:padding + h, padding:padding + w] = x
    return out


def im2col(x, kh, kw, stride, padding):
    n, c, h, w = x.shape
    oh, ow = output_size(h, w, kh, kw, stride, padding)
    frame = pad(x, padding)
    cols = xp.empty((n, oh, ow, c, kh, kw), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            window = frame[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride]  # (N, C, OH, OW)
            cols[:, :, :, :, i, j] = window.transpose(0, 2, 3, 1)
    return cols.reshape(n * oh * ow, c * kh * kw)


def col2im(cols, x_shape, kh, kw, stride, padding):
    n, c, h, w = x_shape
    oh, ow = output_size(h, w, kh, kw, stride, padding)
    cols = cols.reshape(n, oh, ow, c, kh, kw)
    frame = xp.zeros((n, c, h + 2 * padding, w + 2 * padding), dtype=cols.dtype)
    for i in range(kh):
        for j in range(kw):
            tap = cols[:, :, :, :, i, j].transpose(0, 3, 1, 2)  # (N, C, OH, OW)
            frame[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += tap
    return frame[:, :, padding:padding + h, padding:padding + w]


class Conv2d(Function):
    def forward(self, x, weight, bias, stride=1, padding=0):
        n, _, h, w = x.shape
        o, c, kh, kw = weight.shape
        oh, ow = output_size(h, w, kh, kw, stride, padding)
        self.cols = im2col(x, kh, kw, stride, padding)
        self.x_shape, self.weight, self.stride, self.padding = x.shape, weight, stride, padding
        out = self.cols @ weight.reshape(o, -1).T + bias
        return out.reshape(n, oh, ow, o).transpose(0, 3, 1, 2)

    @once_differentiable
    def backward(self, grad):
        o, c, kh, kw = self.weight.shape
        g = grad.transpose(0, 2, 3, 1).reshape(-1, o)
        grad_weight = (g.T @ self.cols).reshape(self.weight.shape)
        grad_bias = g.sum(axis=0)
        wrong = self.weight.transpose(1, 0, 2, 3).reshape(o, -1)  # BUG: should be self.weight.reshape(o, -1)
        grad_x = col2im(g @ wrong, self.x_shape, kh, kw, self.stride, self.padding)
        return grad_x, grad_weight, grad_bias


def conv2d(x, weight, bias, stride=1, padding=0):
    return Conv2d.apply(x, weight, bias, stride=stride, padding=padding)

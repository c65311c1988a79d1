"""A planted wrong answer to assignment 8: the inverse multiplies by exp(s) where it must divide by it,
(u_b − t)·exp(s) instead of (u_b − t)·exp(−s). The forward and its log-determinant are right, so the
density, and training, are right too: only sampling (which runs the inverse) is wrong."""

import scratchgen as sg
from scratchgen.models.flow import Bijection, mlp


class Coupling(Bijection):
    def __init__(self, features, flip=False, hidden_sizes=(64, 64)):
        super().__init__()
        self.features, self.flip, self.half = features, flip, features // 2
        kept, moved = (features - self.half, self.half) if flip else (self.half, features - self.half)
        self.s_net = mlp(kept, moved, hidden_sizes)
        self.t_net = mlp(kept, moved, hidden_sizes)

    def scale_and_shift(self, kept):
        return self.s_net(kept).tanh(), self.t_net(kept)

    def split(self, x):
        first, second = x[:, :self.half], x[:, self.half:]
        return (second, first) if self.flip else (first, second)

    def join(self, kept, moved):
        return sg.concatenate([moved, kept] if self.flip else [kept, moved], axis=1)

    def forward(self, x):
        kept, moved = self.split(x)
        s, t = self.scale_and_shift(kept)
        return self.join(kept, moved * s.exp() + t), s.sum(axis=1)

    def inverse(self, u):
        kept, moved = self.split(u)
        s, t = self.scale_and_shift(kept)
        return self.join(kept, (moved - t) * s.exp())  # BUG: exp(s), not exp(−s)

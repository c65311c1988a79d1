"""Reference answer to assignment 8, by the library: scratchgen.models.flow.AffineCoupling."""

from scratchgen.models.flow import AffineCoupling


class Coupling(AffineCoupling):
    def __init__(self, features, flip=False, hidden_sizes=(64, 64)):
        super().__init__(features, flip, hidden_sizes)

"""The models of the lecture, each in its own short file, composed from :mod:`scratchgen.nn` layers."""

from scratchgen.models.classifier import MLPClassifier  # noqa: F401

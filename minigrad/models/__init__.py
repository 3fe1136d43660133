"""Models the chapters share."""
from minigrad.models.mlp import MLPClassifier

__all__ = ["MLPClassifier"]

"""Models the chapters share."""
from minigrad.models.mlp import MLPClassifier
from minigrad.models.sbn import SigmoidBeliefNet

__all__ = ["MLPClassifier", "SigmoidBeliefNet"]

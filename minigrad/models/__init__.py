"""Models the chapters share."""
from minigrad.models.lenet import LeNet5
from minigrad.models.mlp import MLPClassifier
from minigrad.models.sbn import SigmoidBeliefNet

__all__ = ["LeNet5", "MLPClassifier", "SigmoidBeliefNet"]

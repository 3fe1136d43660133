"""Models the chapters share."""
from minigrad.models.lenet import LeNet5
from minigrad.models.mlp import MLPClassifier

__all__ = ["LeNet5", "MLPClassifier"]

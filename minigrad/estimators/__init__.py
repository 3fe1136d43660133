"""Gradient estimators for discrete choices; see the submodules."""

"""Gradient estimators for discrete choices, one family per module.

- :mod:`~minigrad.estimators.base`: the interface (estimators as functions of explicit
  inputs, ``surrogate``), the neuron protocol and the annealing schedule;
- :mod:`~minigrad.estimators.binary`: straight-through estimators for binary units;
- :mod:`~minigrad.estimators.nary`: n-ary neurons (ternary, staircase);
- :mod:`~minigrad.estimators.onehot`: one-hot neurons, ST softmax, Gumbel-softmax;
- :mod:`~minigrad.estimators.score_function`: REINFORCE and its baselines;
- :mod:`~minigrad.estimators.sbn_estimators`: NVIL, MuProp, leave-one-out, Concrete for SBNs;
- :mod:`~minigrad.estimators.antithetic`: ARM and DisARM;
- :mod:`~minigrad.estimators.black_box`: evolution strategies for a loss with no gradient;
- :mod:`~minigrad.estimators.catalogue`: every estimator in one table, measured on one problem;
- :mod:`~minigrad.estimators.map`: how the estimators relate (the map) and which to use when;
- :mod:`~minigrad.estimators.exact`: the exact expectation and gradient by enumeration;
- :mod:`~minigrad.estimators.diagnostics`: bias z-scores, variance, EMA log-variance;
- :mod:`~minigrad.estimators.checks`: the argument checks they share.
"""

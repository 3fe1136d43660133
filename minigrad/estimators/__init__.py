"""Gradient estimators for discrete choices, one family per module.

- :mod:`~minigrad.estimators.base`: the interface (estimators as functions of explicit
  inputs, ``surrogate``), the neuron protocol and the annealing schedule;
- :mod:`~minigrad.estimators.binary`: straight-through estimators for binary units;
- :mod:`~minigrad.estimators.nary`: n-ary neurons (ternary, staircase);
- :mod:`~minigrad.estimators.onehot`: one-hot neurons, ST softmax, Gumbel-softmax;
- :mod:`~minigrad.estimators.score_function`: REINFORCE, leave-one-out, NVIL, MuProp;
- :mod:`~minigrad.estimators.controls`: every baseline and control variate, as Modules;
- :mod:`~minigrad.estimators.antithetic`: ARM and DisARM;
- :mod:`~minigrad.estimators.black_box`: evolution strategies for a loss with no gradient;
- :mod:`~minigrad.estimators.relaxed`: Concrete, REBAR, RELAX;
- :mod:`~minigrad.estimators.catalogue`: the contract and the one spec table, measured;
- :mod:`~minigrad.estimators.map`: how the estimators relate (the map) and which to use when;
- :mod:`~minigrad.estimators.categorical`: RLOO, VIMCO, IndeCateR, ARSM, categorical REBAR/RELAX;
- :mod:`~minigrad.estimators.exact`: the exact expectation and gradient by enumeration;
- :mod:`~minigrad.estimators.diagnostics`: bias z-scores, variance, EMA log-variance;
- :mod:`~minigrad.estimators.checks`: the argument checks they share.
"""

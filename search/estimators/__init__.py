"""Accuracy estimators: one interface, cached per architecture.

    est = get_estimator("short-train", space, data="digits", steps=60)
    acc = est.estimate(arch)                     # in [0, 1]
    cached = CachedEstimator(est, run_dir / "accuracy_cache.jsonl")

Registered: short-train (a few hundred SGD steps on the data, validation top-1), synflow and naswot
(zero-cost proxies: a score from one forward/backward pass at initialisation, mapped to (0, 1) by a
calibration on a fixed set of random architectures - a ranking signal, not an accuracy), supernet (SPOS weight
sharing), ofa (a once-for-all supernet), and two MLP predictors over the architecture encoding: ofa-mlp (fitted
on the ofa supernet's reads) and train-mlp (fitted on short trainings).
"""
from __future__ import annotations

from hwnas.search.estimators.base import (CachedEstimator, Estimator, estimator_class, get_estimator,
                                          list_estimators, register_estimator)
from hwnas.registry import import_modules

import_modules(__name__, __path__)  # every module here registers its estimators: a new one is a new file

__all__ = ["CachedEstimator", "Estimator", "estimator_class", "get_estimator", "list_estimators",
           "register_estimator"]

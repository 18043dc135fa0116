"""Loading estimators saved by an older skptm."""

from __future__ import annotations

import inspect


def fill_missing_parameters(estimator) -> None:
    """Give ``estimator`` the ``__init__`` default of every parameter its
    state lacks: a pickle or skops file saved before a parameter existed
    then loads, and behaves as it did."""
    signature = inspect.signature(type(estimator).__init__)
    for name, parameter in signature.parameters.items():
        if name != "self" and parameter.default is not inspect.Parameter.empty and name not in estimator.__dict__:
            setattr(estimator, name, parameter.default)

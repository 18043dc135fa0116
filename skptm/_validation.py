"""Parameter checks that scikit-learn's constraints cannot express.

Each estimator's ``_parameter_constraints`` checks the type and range of a
parameter. :func:`check_parameter_values` looks inside the values that pass
them: the pair of ``input_size``, the entries of ``layer``,
``hidden_units``, ``callbacks`` and ``class_weight``, and a backbone name in
the registry. Both estimator bases run it in ``_validate_params``, right
after scikit-learn's own checks, so that an invalid value is reported before
a network is built or a file is read, with scikit-learn's
:class:`~sklearn.utils._param_validation.InvalidParameterError` (a
``ValueError`` and a ``TypeError``).

Left to later, because only the network or the data can tell: whether a
layer name (``layer``, ``unfreeze``) exists in the backbone (reported when
the network is built, with the closest names), and whether ``class_weight``'s
keys are classes of ``y``.
"""

from __future__ import annotations

import math
from numbers import Integral, Real

import numpy as np
from sklearn.utils._param_validation import Interval, InvalidParameterError

#: ``n_jobs`` as joblib means it: a positive count, or -1 for all cores, -2
#: for all but one, ...; ``0`` means nothing.
N_JOBS = [
    Interval(Integral, None, -1, closed="right"),
    Interval(Integral, 1, None, closed="left"),
    None,
]


def _positive_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 1


def _image_size(value) -> bool:
    if isinstance(value, (tuple, list)):
        return len(value) == 2 and all(_positive_int(side) for side in value)
    return not isinstance(value, bool)  # an int or None, checked by the constraints


def check_image_size(value, name="input_size") -> None:
    """A ``ValueError`` unless ``value`` is ``None``, an int >= 1 or a pair of them."""
    if value is not None and not (_positive_int(value) or (isinstance(value, (tuple, list)) and _image_size(value))):
        raise ValueError(
            f"{name} must be an int >= 1, a (height, width) pair of ints >= 1 or None. Received: {name}={value!r}"
        )


def _layer_names(value) -> bool:
    if isinstance(value, str):
        return value != ""
    if isinstance(value, (tuple, list)):
        names_ok = all(isinstance(name, str) and name for name in value)
        return len(value) > 0 and names_ok and len(set(value)) == len(value)
    return True


def _layer_sizes(value) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_positive_int(units) for units in value)
    return True


def _unfreeze(value) -> bool:
    return value != ""


def _callbacks(value) -> bool:
    if isinstance(value, list) and value:
        import keras

        return all(isinstance(callback, keras.callbacks.Callback) for callback in value)
    return True


def _class_weights(value) -> bool:
    if isinstance(value, dict):
        return all(isinstance(weight, Real) and math.isfinite(weight) and weight >= 0 for weight in value.values())
    return True


def _tta(value) -> bool:
    from ._tta import parse_tta

    try:
        parse_tta(value)
    except ValueError:
        return False
    return True


#: parameter -> (check of a value its constraints accepted, what a valid value is)
_VALUE_CHECKS = {
    "input_size": (_image_size, "an int >= 1, a (height, width) pair of ints >= 1 or None"),
    "layer": (_layer_names, "a layer name, a non-empty list or tuple of different layer names or None"),
    "hidden_units": (_layer_sizes, "a tuple or list of ints >= 1 (the hidden layers' sizes; () for none)"),
    "unfreeze": (_unfreeze, 'an int >= 0, "all" or the name of a backbone layer'),
    "callbacks": (_callbacks, "a list of keras.callbacks.Callback instances or None"),
    "class_weight": (_class_weights, "a dict {class: finite weight >= 0}, 'balanced' or None"),
    "tta": (_tta, "None, 'flip', 'light' or a non-empty list of views (transforms joined by '+')"),
}


def check_parameter_values(estimator) -> None:
    """Raise ``InvalidParameterError`` for a value its constraints cannot refuse.

    Runs after ``estimator``'s ``_parameter_constraints`` have passed.
    """
    params = estimator.get_params(deep=False)
    for name, (is_valid, valid) in _VALUE_CHECKS.items():
        if name in params and not is_valid(params[name]):
            raise InvalidParameterError(
                f"The {name!r} parameter of {type(estimator).__name__} must be {valid}. Got {params[name]!r} instead."
            )
    backbone = params.get("backbone")
    if isinstance(backbone, str):
        from ._backbones import get_backbone_spec

        try:
            get_backbone_spec(backbone)
        except ValueError as exc:  # the message names the closest known names
            raise InvalidParameterError(str(exc)) from None


def unlabelled(y, *, blank_strings=False) -> list:
    """Indices of the labels of 1-D ``y`` that are missing: ``None``, NaN,
    ``pandas.NA`` (and, with ``blank_strings``, strings of only spaces)."""
    labels = np.asarray(y, dtype=object)
    if labels.ndim != 1:
        return []
    return [index for index, label in enumerate(labels.tolist()) if is_missing_label(label, blank_strings)]


def is_missing_label(label, blank_strings=False) -> bool:
    """Whether ``label`` is missing (see :func:`unlabelled`)."""
    if isinstance(label, str):
        return blank_strings and not label.strip()
    if isinstance(label, float):
        return label != label  # NaN
    return label is None or type(label).__name__ == "NAType"  # pandas.NA


def listing(items, limit=5) -> str:
    """``a, b, c, d, e, and 3 more``.

    Examples
    --------
    >>> listing(list("abcdefgh"))
    'a, b, c, d, e, and 3 more'
    """
    return ", ".join(map(str, items[:limit])) + (f", and {len(items) - limit} more" if len(items) > limit else "")

"""The types of option values: each converts the text typed, or raises
``argparse.ArgumentTypeError`` (a usage error, exit code 2) saying what was expected."""

from __future__ import annotations

import argparse
import re

#: The choice standing for ``None`` (``--weights none``, ``--pooling none``).
NONE = "none"


def weights(value):
    """``--weights``: ``imagenet``, ``none`` or a path."""
    return None if value.lower() == NONE else value


def input_size(value):
    """``--input-size``: ``224``, or ``224x192`` for height x width."""
    parts = re.split(r"[x,]", value.lower())
    try:
        sizes = [int(part) for part in parts]
    except ValueError:
        sizes = []
    if len(sizes) not in (1, 2) or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"expected a size such as 224 or 224x192 (height x width), got {value!r}")
    return sizes[0] if len(sizes) == 1 else tuple(sizes)


def at_least(minimum):
    """A type taking integers from ``minimum`` up."""

    def convert(value):
        try:
            number = int(value)
        except ValueError:
            number = minimum - 1
        if number < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer of at least {minimum}, got {value!r}")
        return number

    return convert


positive_int = at_least(1)
non_negative_int = at_least(0)


def fraction(value):
    """A float strictly between 0 and 1."""
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not 0.0 < number < 1.0:
        raise argparse.ArgumentTypeError(f"expected a fraction between 0 and 1, such as 0.2, got {value!r}")
    return number


def positive_number(value):
    """A float above 0 (``--time-budget``)."""
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:  # NaN included
        raise argparse.ArgumentTypeError(f"expected a positive number, such as 600, got {value!r}")
    return number


def unfreeze_depth(value):
    """``--unfreeze``: a count of layers, ``all``, or a layer name."""
    return int(value) if value.isdigit() else value
